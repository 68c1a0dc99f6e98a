// mw/broker/core.hpp — the broker as a state machine.
//
// BrokerCore is fed whole messages as the ROUTER receives them, and the
// clock; it answers through a Transport. It owns the routing logic: worker
// registration and expiry, credit-based dispatch, pipelines, retries with
// backoff, dead jobs and status. It never blocks and never reads a clock
// itself, so tests drive it with a fake clock and no sockets.
//
//   MemoryJobQueue queue;
//   RecordingTransport transport;                 // tests; BrokerServer in production
//   BrokerCore core(BrokerConfig{}, queue, transport, /*first_id=*/1);
//   core.handle(frames, now_ms);                  // frames[0] is the routing id
//   core.tick(now_ms);                            // at or after next_deadline_ms()
//
// Guarantees: a job leaves the broker only through DONE or death; a worker
// that is lost (DISCONNECT, silence, unreachable) or holds a job past its
// lease has those jobs put back at the front of their queues. With a
// durable store every job is journaled before ACCEPTED is sent, and
// recover() serves them again after a restart. Malformed input gets an
// ERROR reply and changes nothing else.
//
// Thread safety: none. One thread owns a core.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "mw/broker/config.hpp"
#include "mw/broker/entity_service.hpp"
#include "mw/broker/finished_flows.hpp"
#include "mw/broker/job_journal.hpp"
#include "mw/broker/job_queue.hpp"
#include "mw/broker/rate_meter.hpp"
#include "mw/broker/schedule_table.hpp"
#include "mw/broker/transport.hpp"
#include "mw/broker/worker_registry.hpp"
#include "mw/log.hpp"
#include "mw/wire.hpp"

namespace mw::broker {

// What a reply that waits for the turn's commit becomes if the commit fails.
struct CommitFailure {
  std::uint64_t call_request_id = 0;    // a REPLY: becomes REPLY 500 for this request
  std::uint64_t accepted_flow = 0;      // an ACCEPTED: the flow is cancelled …
  std::uint64_t submit_request_id = 0;  // … and ERROR 500 answers this request
};

class BrokerCore {
 public:
  // How long an ACCEPTED to a waiting submitter may wait to travel with
  // its flow's RESULT (docs/PROTOCOL.md §6.1).
  static constexpr std::uint32_t kAcceptedHoldMs = 2;
  // A job's values go out on $mw.progress at most this often, the newest
  // one that waited (docs/PROTOCOL.md §5.18), whatever its worker sends.
  static constexpr std::int64_t kProgressPublishEveryMs = 100;

  // `queue` and `transport` must outlive the core. Job ids start at
  // `first_id` and increase by one.
  BrokerCore(BrokerConfig config, JobQueue& queue, Transport& transport, std::uint64_t first_id);

  BrokerCore(const BrokerCore&) = delete;
  BrokerCore& operator=(const BrokerCore&) = delete;

  // Serves CALL (entity endpoints) from `entities` on `store`, stamps and
  // writes back entities that jobs carry, writes dead-job records to the
  // sync endpoint and, when the store is durable, journals every job in it.
  // Both must outlive the core. Without this, CALL is answered
  // NotImplemented and jobs live in memory only.
  void attach_entities(Store& store, EntityService& entities);

  // Reads the journal of a durable store back: every job a previous broker
  // accepted and did not finish is queued again (or waits for its due
  // time), and loads the periodic schedules. Call once, after
  // attach_entities() and before handling input. Returns how many jobs
  // were recovered.
  std::size_t recover(std::int64_t now_ms);

  // The wall clock for entity timestamps (ms since the epoch). Tests fix it.
  void set_wall_clock(std::function<std::int64_t()> wall_clock) { wall_clock_ = std::move(wall_clock); }

  // Ends a loop turn: commits the store's transaction (group commit), then
  // sends the replies that waited for it and publishes the stored events.
  // Call after every batch of handle()/tick().
  void end_turn();

  // Handles one message: frames[0] is the sender's routing id, the rest are
  // as the peer sent them. Frames are moved from (payloads travel on). A
  // BATCH is handled as its messages, one after another.
  void handle(std::span<zmq::message_t> frames, std::int64_t now_ms);

  // The transport could not deliver messages it had accepted for `peer` (a
  // batch it sent later): the JOBs among them, by id, go back to the front
  // of their queue, and the worker is paused (WouldBlock) or dropped
  // (Unreachable), as when a JOB sent at once fails.
  void on_undelivered(const std::string& peer, SendResult why, std::span<const std::uint64_t> job_ids);

  // Runs what is due at `now_ms`: delayed retries, heartbeats, expiry of
  // silent peers. Safe to call early or often.
  void tick(std::int64_t now_ms);

  // When tick() next has work to do.
  std::int64_t next_deadline_ms() const noexcept;

  // Tells every known peer DISCONNECT (broker going away).
  void say_goodbye();

  wire::Stats stats(std::int64_t now_ms);

  // Counters tests and status rely on.
  struct Counters {
    std::uint64_t submitted = 0;
    std::uint64_t flows_done = 0;
    std::uint64_t failed = 0;
    std::uint64_t dead = 0;
    std::uint64_t retried = 0;
    std::uint64_t requeued = 0;
    std::uint64_t stale_replies = 0;  // DONE/FAIL for a job the sender no longer holds
    std::uint64_t bad_messages = 0;
    std::uint64_t lease_expired = 0;  // jobs taken back from a worker that held them too long
    std::uint64_t recovered = 0;      // jobs read back from the journal at start
    std::uint64_t cancelled = 0;      // flows whose SUBMIT could not be committed (ERROR 500)
    std::uint64_t flows_cancelled = 0;  // flows cancelled on request (remove on $flows)
    std::uint64_t duplicates = 0;     // SUBMITs answered with an unfinished flow of the same key
    std::uint64_t scheduled = 0;      // flows started by a schedule
    std::uint64_t schedule_skipped = 0;  // runs skipped: the previous run was unfinished, or the broker full
    std::uint64_t refused_full = 0;      // SUBMITs refused with 507: --max-waiting reached
  };
  const Counters& counters() const noexcept { return counters_; }

  std::size_t in_flight() const noexcept;
  std::size_t delayed() const noexcept { return delayed_.size(); }
  const FinishedFlows& finished_flows() const noexcept { return finished_; }
  const WorkerRegistry& workers() const noexcept { return workers_; }

 private:
  struct Peer {
    std::int64_t last_seen_ms = 0;
    bool said_hello = false;
  };
  void on_batch(std::span<zmq::message_t> frames, std::int64_t now_ms);
  // Removes job `job_id` from what `worker` holds; nullopt if it holds none.
  std::optional<Job> take_held(WorkerEntry& worker, std::uint64_t job_id);
  std::vector<wire::BatchItem> batch_items_;  // the BATCH being handled
  void forget_peer(const std::string& peer);
  struct TypeCounters {
    std::uint64_t done = 0, failed = 0, dead = 0;
    std::uint64_t refused = 0;  // SUBMITs refused by the type's own waiting limit
    std::uint64_t delayed = 0;  // jobs in delayed_ now (STATUS must not scan a million of them)
    RateMeter done_rate;
  };
  using KeyMap = std::unordered_map<std::string, std::uint64_t, WorkerRegistry::Hash, std::equal_to<>>;
  struct Timer {
    std::int64_t due_ms;
    std::uint64_t job_id;
    bool operator>(const Timer& o) const noexcept { return due_ms > o.due_ms; }
  };
  // A held-back PROGRESS value to publish when due (if still held then).
  struct ProgressDue {
    std::int64_t due_ms;
    std::string worker;
    std::uint64_t job_id;
    bool operator>(const ProgressDue& o) const noexcept { return due_ms > o.due_ms; }
  };

  // Command handlers; `peer` is the routing id.
  void on_hello(const std::string& peer, const zmq::message_t& header);
  void on_ready(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms);
  void on_done(const std::string& peer, const zmq::message_t& header, zmq::message_t& result, std::int64_t now_ms);
  void on_fail(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms);
  void on_submit(const std::string& peer, const zmq::message_t& header, zmq::message_t& payload, std::int64_t now_ms);
  void on_status(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms);
  void on_call(const std::string& peer, const zmq::message_t& header, const zmq::message_t& body);
  // WAIT (flows.cpp): the flow's RESULT now if it ended and is kept, else
  // when it ends if it is unfinished here, else ERROR 404.
  void on_wait(const std::string& peer, const zmq::message_t& header);
  void on_progress(const std::string& peer, const zmq::message_t& header, const zmq::message_t& value);
  // $mw.progress for a held job's newest value, now.
  void publish_progress(const Job& job, WorkerEntry::Progress& progress);
  // The held-back values now due (from tick()).
  void publish_due_progress(std::int64_t now_ms);
  // A run of `job` on `worker` ends: its value goes, published first if it
  // was held back, so the last value a worker sent is always published.
  void end_progress(WorkerEntry& worker, const Job& job);
  // `peer` hears flow `flow_id`'s RESULT when it ends (once, however often asked).
  void add_waiter(std::uint64_t flow_id, const std::string& peer);
  // An entity call through EntityService::call (hooks and all); nullopt
  // when it was answered already (the $mark endpoint).
  std::optional<std::string> run_call(const std::string& peer, const wire::Call& call, Method method,
                                      std::string_view body, std::int64_t now_wall);
  // The $flows endpoint (flows.cpp): get and find show unfinished flows,
  // remove cancels one. Returns the REPLY's result, msgpack.
  std::string call_flows(const HookContext& call);
  // Where flow `flow_id` is now, as a $flows record; nullopt when it is
  // not unfinished here. `worker` is set for a job in flight.
  std::optional<Json> flow_record(std::uint64_t flow_id, bool with_payload) const;
  Json flow_record(const QueuedJob& job, std::string_view state, const WorkerEntry* worker, bool with_payload) const;
  Json find_flows(const Json& query) const;
  // Whether flow `flow_id` has a live job here (O(jobs waiting), as get).
  bool flow_unfinished(std::uint64_t flow_id) const;
  Json finished_flow_record(const FinishedFlow& flow) const;
  Json delayed_flow_record(const Job& job, bool with_payload) const;  // with its due_at
  Json cancel_flow_on_request(std::uint64_t flow_id);
  // Resolves SUBMIT's entity option ("endpoint/id", "id" or "auto") against
  // the payload; throws mw::Error(BadRequest) when it cannot.
  std::string resolve_entity(std::string_view option, const zmq::message_t& payload) const;
  void stamp_entity(const Job& job);
  void on_heartbeat(const std::string& peer);
  void on_disconnect(const std::string& peer, std::int64_t now_ms);

  // Takes the job a worker reports on, if it really holds it; `worker` is
  // the sender's registry entry (nullptr when it is not a worker).
  std::optional<Job> take_in_flight(const std::string& peer, WorkerEntry* worker, std::uint64_t job_id,
                                    std::uint32_t attempt);

  void enqueue(Job job, std::int64_t now_ms);
  // A job that is ready to run: to a free worker of its type at once if
  // none of its type waits, else to the back of its queue.
  void route(Job job, std::int64_t now_ms);
  // A later stage of a flow went to a type no worker has served since the
  // broker started: says so, once per type (a --next typo waits forever).
  void warn_unserved_stage(const Job& job);
  // Sends a job to a worker; on failure puts it back at the front of its
  // queue and pauses (or marks for dropping) the worker. True when sent.
  bool give(WorkerEntry& worker, Job job);
  void dispatch(std::string_view type);
  // Whether a job of `type` may be given to a worker now (--type-rate);
  // if not, dispatch(type) runs again when its window has room.
  bool rate_allows(std::string_view type);
  void dispatch_for_worker(const std::string& worker_id, std::int64_t now_ms);
  void finish_flow(Job& job, zmq::message_t& result, std::int64_t now_ms);
  void retry_or_bury(Job job, std::string_view error, bool retryable, std::int64_t now_ms);
  void bury(Job& job, std::string_view error, std::int64_t now_ms);
  void write_dead_record(const Job& job, std::string_view error);
  // Writes a dead record into the turn's transaction; one the store could
  // not take is kept to be written again next turn (save_dead_records).
  void save_dead_record(Json record);
  // At the start of a turn's commit: the records a failed write or commit
  // undid are written again, until a commit keeps them.
  void rewrite_dead_records();
  // Drops the oldest records waiting to be written again beyond kMaxUnsavedDeadRecords.
  void bound_unsaved_dead_records();
  // RESULT to the flow's submitter if it waits, and to the others that
  // wait for it (a later SUBMIT of its key, a WAIT); after the commit when
  // one is open. Keeps the outcome in finished_.
  void send_results(const Job& job, std::string_view outcome, std::string_view error, zmq::message_t& payload);
  // Why a new flow with a payload of `payload_bytes` may not be accepted
  // now (config max_waiting_*), as the ERROR 507 text; nullopt when it may.
  // What --max-waiting counts: jobs queued or delayed, and their payload bytes.
  std::uint64_t waiting_jobs() const noexcept { return queue_.size() + delayed_.size(); }
  std::uint64_t waiting_bytes() const noexcept { return queue_.payload_bytes() + delayed_bytes_; }
  struct Refusal {
    std::string why;             // the ERROR 507 text
    bool by_type_limit = false;  // the type's own limit, not the broker's
  };
  std::optional<Refusal> too_full_for(std::string_view type, std::size_t payload_bytes) const;
  // The jobs of `type` that wait (queued or delayed), against its limit.
  std::uint64_t waiting_of(std::string_view type) const;
  std::uint64_t max_waiting_of(std::string_view type) const;
  void log_full(const std::string& what, std::int64_t now_ms);  // rate-limited
  // Removes a delayed job; nullopt when `id` is not delayed.
  std::optional<Job> take_delayed(std::uint64_t id);
  // Parks a job until `due_ms` (steady clock).
  void delay(Job job, std::int64_t due_ms);
  // Takes back the jobs held past their lease (at most every 250 ms).
  void expire_leases(std::int64_t now_ms);
  // A job of a cancelled flow is dropped wherever it turns up; true if dropped.
  bool drop_if_cancelled(const Job& job);
  void cancel_flow(std::uint64_t flow_id);
  void release_key(const Job& job);
  // A new flow's first job, counted and keyed (not yet journaled or queued).
  Job new_flow(std::string_view type, zmq::message_t payload, std::uint32_t max_attempts, std::int32_t priority,
               std::uint64_t lease_ms, std::string_view key, std::string entity, std::int64_t now_ms);
  // Periodic jobs: reloads the table from the store; submits what is due.
  void load_schedules();
  void run_schedules(std::int64_t now_ms);
  std::uint32_t max_attempts_for(std::string_view type) const;
  std::uint64_t lease_for(const Job& job) const;
  bool journaling() const noexcept { return journal_ && journal_->enabled(); }
  // `graceful`: the worker said DISCONNECT after finishing what it started,
  // so the jobs it held were never started and keep their attempts.
  void drop_worker(const std::string& worker_id, std::string_view why, std::int64_t now_ms, bool graceful = false);
  // Drops the workers a send found unreachable. Deferred to here so that no
  // worker disappears while dispatch() is iterating.
  void drop_pending(std::int64_t now_ms);
  void send_heartbeats_and_expire(std::int64_t now_ms);
  // end_turn() but for the bookkeeping of the turn: commits, publishes and
  // sends what waited for the commit.
  void end_turn_commit();

  void reply_error(const std::string& peer, ErrorCode code, std::string_view message, std::uint64_t request_id = 0);
  SendResult send(const std::string& peer, Command command, zmq::message_t header, zmq::message_t* payload = nullptr);
  // Sends now, or after end_turn()'s commit when this turn has written to
  // the store (a reply must never announce a write that may not land).
  // A failed commit turns a deferred REPLY to a CALL into an error REPLY
  // (call_request_id), and a deferred ACCEPTED into ERROR 500 with the flow
  // cancelled (accepted_flow, submit_request_id).
  // `hold_ms`: the message may wait that long for company (Transport::send_lazy).
  void send_after_commit(const std::string& peer, Command command, zmq::message_t header, zmq::message_t* payload,
                         CommitFailure on_failure = {}, std::uint32_t hold_ms = 0);
  // The same with the header as bytes (wire::encode_view; Transport::send_bytes).
  void send_after_commit(const std::string& peer, Command command, std::string_view header, zmq::message_t* payload);
  // Whether a reply sent now would have to wait for end_turn()'s commit.
  bool replies_wait_for_commit() const noexcept;
  // $mw.heartbeat: {"broker": instance, "last_seq": newest stored event,
  // "durable": the store keeps events across restarts, "interval_ms": H}.
  void publish_heartbeat();
  // The data of $mw.worker.ready and $mw.worker.gone: who the worker is,
  // and for gone (`requeued` set) how many of its jobs went back to their queues.
  zmq::message_t worker_event_data(const WorkerEntry& worker, std::optional<std::size_t> requeued) const;
  void publish_event(std::string_view topic, std::uint64_t flow_id, std::string_view type, std::string_view error,
                     const zmq::message_t* data);
  void note_bad_message(const std::string& peer, std::string_view reason, const zmq::message_t* sample,
                        std::int64_t now_ms);

  std::int64_t retry_delay_ms(std::uint32_t attempts);
  TypeCounters& type_counters(std::string_view type);

  BrokerConfig config_;
  JobQueue& queue_;
  Transport& transport_;
  std::uint64_t next_id_;
  std::int64_t started_ms_ = -1;
  std::int64_t next_heartbeat_ms_ = 0;
  std::int64_t next_lease_scan_ms_ = 0;
  std::int64_t next_schedule_ms_ = 0;
  bool schedules_dirty_ = false;
  ScheduleTable schedules_;
  std::int64_t now_ms_ = 0;  // the latest time handle()/tick() were given (dispatch stamps leases with it)

  WorkerRegistry workers_;
  std::unordered_map<std::string, Peer, WorkerRegistry::Hash, std::equal_to<>> peers_;
  std::unordered_map<std::uint64_t, Job> delayed_;
  // Dead records written in this turn's transaction, and those to write
  // again (their write or their turn's commit failed): nothing the store
  // has not kept is forgotten, up to kMaxUnsavedDeadRecords.
  std::vector<Json> dead_records_this_turn_, dead_records_to_rewrite_;
  static constexpr std::size_t kMaxUnsavedDeadRecords = 10'000;
  std::uint64_t delayed_bytes_ = 0;  // payload bytes of delayed_
  // Tells this broker's run from others on the same address (listeners
  // see a restart): the first job id, which is unique per start.
  std::uint64_t instance_ = 0;
  // Every stored event up to this seq has been published (after its turn's
  // commit): a heartbeat says it, so a listener knows where it stands.
  std::uint64_t published_seq_ = 0;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::priority_queue<ProgressDue, std::vector<ProgressDue>, std::greater<>> progress_due_;
  std::unordered_map<std::string, TypeCounters, WorkerRegistry::Hash, std::equal_to<>> type_counters_;
  // The last entry type_counters() found (every DONE asks for its type's):
  // a node pointer, forgotten when an entry is erased.
  std::pair<const std::string, TypeCounters>* recent_counters_ = nullptr;

  Counters counters_;
  RateMeter submit_rate_;
  RateMeter done_rate_;
  std::vector<std::string> pending_drops_;
  KeyMap keys_;  // idempotency key → its unfinished flow
  std::unordered_multimap<std::uint64_t, std::string> extra_waiters_;  // flow → duplicate submitters that wait
  std::unordered_set<std::uint64_t> cancelled_flows_;
  FinishedFlows finished_;  // outcomes of ended flows, for WAIT and $flows get
  TypeRates rates_;         // config_.type_rates
  // Rate-limited types whose queue waits for room in its window: when to dispatch them again.
  std::map<std::string, std::int64_t, std::less<>> rate_wakeups_;
  // Flows read back from the journal and not ended yet: the WAITs of their
  // submitters, re-attaching after the restart, need no scan of the queues.
  std::unordered_set<std::uint64_t> recovered_flows_;
  std::vector<std::uint64_t> cancelled_this_turn_;  // by $flows remove, until end_turn()
  // Types some worker has registered for since the broker started, and the
  // types warn_unserved_stage has warned of (sets of names, at most a few per worker).
  std::set<std::string, std::less<>> served_types_, warned_unserved_types_;

  struct Deferred {
    std::string peer;
    Command command;
    zmq::message_t header;
    zmq::message_t payload;
    bool has_payload = false;
    CommitFailure on_failure;
    std::uint32_t hold_ms = 0;
  };
  Store* store_ = nullptr;
  EntityService* entities_ = nullptr;
  std::vector<Deferred> deferred_;
  std::unique_ptr<JobJournal> journal_;
  std::function<std::int64_t()> wall_clock_;
  std::int64_t next_trim_ms_ = 0;
  LogLimiter bad_input_log_{5, 1000};
  LogLimiter dead_log_{5, 1000};
  LogLimiter full_log_{1, 10'000};
  std::uint64_t jitter_state_ = 0x9e3779b97f4a7c15ULL;
};

}  // namespace mw::broker
