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
// that is lost (DISCONNECT, silence, unreachable) has its jobs in flight put
// back at the front of their queues. Malformed input gets an ERROR reply
// and changes nothing else.
//
// Thread safety: none. One thread owns a core.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "mw/broker/config.hpp"
#include "mw/broker/entity_service.hpp"
#include "mw/broker/job_queue.hpp"
#include "mw/broker/rate_meter.hpp"
#include "mw/broker/transport.hpp"
#include "mw/broker/worker_registry.hpp"
#include "mw/log.hpp"
#include "mw/wire.hpp"

namespace mw::broker {

class BrokerCore {
 public:
  // `queue` and `transport` must outlive the core. Job ids start at
  // `first_id` and increase by one.
  BrokerCore(BrokerConfig config, JobQueue& queue, Transport& transport, std::uint64_t first_id);

  BrokerCore(const BrokerCore&) = delete;
  BrokerCore& operator=(const BrokerCore&) = delete;

  // Serves CALL (entity endpoints) from `entities` on `store`, and stamps
  // and writes back entities that jobs carry. Both must outlive the core.
  // Without this, CALL is answered NotImplemented.
  void attach_entities(Store& store, EntityService& entities);

  // The wall clock for entity timestamps (ms since the epoch). Tests fix it.
  void set_wall_clock(std::function<std::int64_t()> wall_clock) { wall_clock_ = std::move(wall_clock); }

  // Ends a loop turn: commits the store's transaction (group commit), then
  // sends the replies that waited for it and publishes the stored events.
  // Call after every batch of handle()/tick().
  void end_turn();

  // Handles one message: frames[0] is the sender's routing id, the rest are
  // as the peer sent them. Frames are moved from (payloads travel on).
  void handle(std::span<zmq::message_t> frames, std::int64_t now_ms);

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
  };
  const Counters& counters() const noexcept { return counters_; }

  std::size_t in_flight() const noexcept;
  std::size_t delayed() const noexcept { return delayed_.size(); }
  const WorkerRegistry& workers() const noexcept { return workers_; }

 private:
  struct Peer {
    std::int64_t last_seen_ms = 0;
    bool said_hello = false;
  };
  struct TypeCounters {
    std::uint64_t done = 0, failed = 0, dead = 0;
    RateMeter done_rate;
  };
  struct Timer {
    std::int64_t due_ms;
    std::uint64_t job_id;
    bool operator>(const Timer& o) const noexcept { return due_ms > o.due_ms; }
  };

  // Command handlers; `peer` is the routing id.
  void on_hello(const std::string& peer, const zmq::message_t& header);
  void on_ready(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms);
  void on_done(const std::string& peer, const zmq::message_t& header, zmq::message_t& result, std::int64_t now_ms);
  void on_fail(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms);
  void on_submit(const std::string& peer, const zmq::message_t& header, zmq::message_t& payload, std::int64_t now_ms);
  void on_status(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms);
  void on_call(const std::string& peer, const zmq::message_t& header, const zmq::message_t& body);
  // Resolves SUBMIT's entity option ("endpoint/id", "id" or "auto") against
  // the payload; throws mw::Error(BadRequest) when it cannot.
  std::string resolve_entity(std::string_view option, const zmq::message_t& payload) const;
  void stamp_entity(const Job& job);
  void on_heartbeat(const std::string& peer);
  void on_disconnect(const std::string& peer, std::int64_t now_ms);

  // Takes the job a worker reports on, if it really holds it; `worker` is
  // the sender's registry entry (nullptr when it is not a worker).
  std::optional<Job> take_in_flight(const std::string& peer, WorkerEntry* worker, std::uint64_t job_id);

  void enqueue(Job job, std::int64_t now_ms);
  void dispatch(std::string_view type);
  void dispatch_for_worker(const std::string& worker_id, std::int64_t now_ms);
  void finish_flow(Job& job, zmq::message_t& result, std::int64_t now_ms);
  void retry_or_bury(Job job, std::string_view error, bool retryable, std::int64_t now_ms);
  void bury(Job& job, std::string_view error, std::int64_t now_ms);
  // `graceful`: the worker said DISCONNECT after finishing what it started,
  // so the jobs it held were never started and keep their attempts.
  void drop_worker(const std::string& worker_id, std::string_view why, std::int64_t now_ms, bool graceful = false);
  // Drops the workers a send found unreachable. Deferred to here so that no
  // worker disappears while dispatch() is iterating.
  void drop_pending(std::int64_t now_ms);
  void send_heartbeats_and_expire(std::int64_t now_ms);

  void reply_error(const std::string& peer, ErrorCode code, std::string_view message, std::uint64_t request_id = 0);
  SendResult send(const std::string& peer, Command command, zmq::message_t header, zmq::message_t* payload = nullptr);
  // Sends now, or after end_turn()'s commit when this turn has written to
  // the store (a reply must never announce a write that may not land).
  void send_after_commit(const std::string& peer, Command command, zmq::message_t header, zmq::message_t* payload,
                         std::uint64_t call_request_id = 0);
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

  WorkerRegistry workers_;
  std::unordered_map<std::string, Peer, WorkerRegistry::Hash, std::equal_to<>> peers_;
  std::unordered_map<std::uint64_t, Job> delayed_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::unordered_map<std::string, TypeCounters, WorkerRegistry::Hash, std::equal_to<>> type_counters_;

  Counters counters_;
  RateMeter submit_rate_;
  RateMeter done_rate_;
  std::vector<std::string> pending_drops_;

  struct Deferred {
    std::string peer;
    Command command;
    zmq::message_t header;
    zmq::message_t payload;
    bool has_payload = false;
    std::uint64_t call_request_id = 0;  // REPLYs: turned into an error if the commit fails
  };
  Store* store_ = nullptr;
  EntityService* entities_ = nullptr;
  std::vector<Deferred> deferred_;
  std::function<std::int64_t()> wall_clock_;
  std::int64_t next_trim_ms_ = 0;
  LogLimiter bad_input_log_{5, 1000};
  LogLimiter dead_log_{5, 1000};
  std::uint64_t jitter_state_ = 0x9e3779b97f4a7c15ULL;
};

}  // namespace mw::broker
