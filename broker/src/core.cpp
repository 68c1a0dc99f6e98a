#include "mw/broker/core.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <limits>
#include <utility>

#include <unistd.h>

#include "mw/payload.hpp"
#include "mw/version.hpp"

namespace mw::broker {
namespace {

// The same job may be held again as a later attempt (its lease expired and
// it came back to the same worker): an answer (DONE, FAIL, PROGRESS) that
// quotes another attempt is the old run's, late. 0: not said (an older peer).
bool answers_another_run(const Job& held, std::uint32_t attempt) noexcept {
  return attempt != 0 && attempt != held.attempts;
}

constexpr std::string_view kLogComponent = "broker";

// Routing ids are binary; status and logs show them as hex.
std::string printable_id(std::string_view id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(id.size() * 2);
  for (unsigned char c : id) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

// Resident set size from /proc (Linux); 0 where unavailable.
std::uint64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

BrokerCore::BrokerCore(BrokerConfig config, JobQueue& queue, Transport& transport, std::uint64_t first_id)
    : config_(std::move(config)),
      queue_(queue),
      transport_(transport),
      next_id_(first_id),
      instance_(first_id),
      finished_(config_.keep_results, config_.keep_results_bytes),
      rates_(config_.type_rates) {
  wall_clock_ = [] {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  };
}

void BrokerCore::attach_entities(Store& store, EntityService& entities) {
  store_ = &store;
  entities_ = &entities;
  published_seq_ = store.last_event_seq();
  journal_ = std::make_unique<JobJournal>(store, config_.keep_results, config_.keep_results_bytes);
}

std::size_t BrokerCore::recover(std::int64_t now_ms) {
  now_ms_ = now_ms;
  load_schedules();
  if (!journaling()) return 0;
  // The outcomes kept before the restart, oldest first, as if they had just
  // ended (so the newest stay when both limits hold fewer).
  // A damaged table costs the kept outcomes, not the start.
  try {
  store_->load_outcomes(config_.keep_results, config_.keep_results_bytes, [&](FinishedFlow&& ended) {
    // Ids go on from the highest this store has seen, even for a flow
    // whose outcome it keeps (the clock may have gone back).
    next_id_ = std::max(next_id_, ended.flow_id + 1);
    if (finished_.fits(ended.bytes())) finished_.add(std::move(ended));
  });
  } catch (const std::exception& e) {
    log(LogLevel::error, kLogComponent, std::string("cannot read the kept outcomes of ended flows back: ") + e.what() +
                                            "; mw result knows only flows that end from now on");
  }
  const std::int64_t wall_now = wall_clock_();
  std::size_t recovered = 0;
  std::vector<std::string> types;
  store_->load_jobs([&](StoredJob&& stored) {
    Job job;
    job.id = stored.id;
    job.flow_id = stored.flow_id;
    job.type = std::move(stored.type);
    job.attempts = stored.attempts;
    job.max_attempts = stored.max_attempts;
    job.priority = std::clamp<std::int32_t>(stored.priority, -kMaxPriority, kMaxPriority);  // the queue packs it in 16 bits
    job.stage = std::min(stored.stage, BrokerConfig::kMaxStagesLimit);  // a damaged row must not overflow the queue's field
    job.lease_ms = stored.lease_ms;
    job.submitted_at = stored.submitted_at;
    job.key = std::move(stored.key);
    job.entity = std::move(stored.entity);
    job.payload.rebuild(stored.payload.data(), stored.payload.size());
    next_id_ = std::max(next_id_, job.id + 1);
    if (!job.key.empty()) keys_.emplace(job.key, job.flow_id);
    recovered_flows_.insert(job.flow_id);
    ++recovered;
    if (stored.due_at > wall_now) {
      delay(std::move(job), now_ms + (stored.due_at - wall_now));
    } else {
      types.push_back(job.type);
      // Its wait goes on (status's oldest age): since its due time, or for
      // a flow's first stage since its SUBMIT. A later stage's start is
      // not stored: it counts from now.
      const std::int64_t runnable_since =
          stored.due_at > 0 ? stored.due_at : (job.id == job.flow_id ? job.submitted_at : wall_now);
      enqueue(std::move(job), now_ms - std::clamp<std::int64_t>(wall_now - runnable_since, 0, now_ms));
    }
  });
  counters_.recovered += recovered;
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());
  for (const auto& type : types) dispatch(type);
  if (recovered)
    log(LogLevel::info, kLogComponent,
        "recovered " + std::to_string(recovered) + " unfinished job(s) from " + store_->description());
  return recovered;
}

// ---- input ----------------------------------------------------------------

void BrokerCore::handle(std::span<zmq::message_t> frames, std::int64_t now_ms) {
  now_ms_ = now_ms;
  if (started_ms_ < 0) {
    started_ms_ = now_ms;
    next_heartbeat_ms_ = now_ms + config_.heartbeat_ms;
  }
  if (frames.empty()) return;
  const std::string peer(frames[0].data<char>(), frames[0].size());
  if (frames.size() < 2) {
    note_bad_message(peer, "message has no tag frame", nullptr, now_ms);
    reply_error(peer, ErrorCode::BadProtocol, "message has no tag frame: expected MW1<command>");
    return;
  }
  auto [peer_it, is_new] = peers_.try_emplace(peer);
  peer_it->second.last_seen_ms = now_ms;
  bool resumed = false;  // a paused worker that speaks again has room: send it what waited
  if (auto* w = workers_.find(peer)) resumed = std::exchange(w->paused, false);

  try {
    const Command command = wire::decode_tag(frames[1]);
    const std::size_t expected = wire::frame_count(command);
    if (command != Command::Batch && frames.size() - 1 != expected) {
      const std::string reason = std::string(command_name(command)) + " carries " +
                                 std::to_string(expected) + " frame(s), got " + std::to_string(frames.size() - 1);
      note_bad_message(peer, reason, nullptr, now_ms);
      reply_error(peer, ErrorCode::BadRequest, reason);
      if (resumed) dispatch_for_worker(peer, now_ms);
      return;
    }
    switch (command) {
      // Each message of a batch is handled as a message of its own.
      case Command::Batch: on_batch(frames, now_ms); break;
      case Command::Hello: on_hello(peer, frames[2]); break;
      case Command::Ready: on_ready(peer, frames[2], now_ms); break;
      case Command::Done: on_done(peer, frames[2], frames[3], now_ms); break;
      case Command::Fail: on_fail(peer, frames[2], now_ms); break;
      case Command::Submit: on_submit(peer, frames[2], frames[3], now_ms); break;
      case Command::Status: on_status(peer, frames[2], now_ms); break;
      case Command::Heartbeat: on_heartbeat(peer); break;
      case Command::Disconnect: on_disconnect(peer, now_ms); break;
      case Command::Call: on_call(peer, frames[2], frames[3]); break;
      case Command::Wait: on_wait(peer, frames[2]); break;
      case Command::Progress: on_progress(peer, frames[2], frames[3]); break;
      case Command::Welcome:
      case Command::Job:
      case Command::Accepted:
      case Command::Result:
      case Command::Reply:
      case Command::Stats:
      case Command::Cancel:
      case Command::Error: {
        const std::string reason = std::string(command_name(command)) + " is sent by the broker, not to it";
        note_bad_message(peer, reason, nullptr, now_ms);
        reply_error(peer, ErrorCode::BadRequest, reason);
        break;
      }
    }
  } catch (const wire::DecodeError& e) {
    note_bad_message(peer, e.what(), frames.size() > 2 ? &frames[2] : &frames[1], now_ms);
    // Answer with the request id when it could be read, so a client with
    // many requests in flight knows which one failed.
    reply_error(peer, e.code(), e.what(), frames.size() > 2 ? wire::peek_request_id(frames[2]) : 0);
  } catch (const std::exception& e) {
    // Nothing a peer sends may take the broker down; handlers decode before
    // they change state, so an exception here leaves the state as it was.
    note_bad_message(peer, e.what(), nullptr, now_ms);
    reply_error(peer, ErrorCode::Internal, "internal error while handling the message");
  }
  if (resumed) dispatch_for_worker(peer, now_ms);
  drop_pending(now_ms);
}

void BrokerCore::on_batch(std::span<zmq::message_t> frames, std::int64_t now_ms) {
  // frames: [routing id][BATCH tag][index][payload…]. Entries cannot be
  // BATCHes themselves, so this never runs inside itself and batch_items_
  // stays put while its messages are handled.
  const std::string peer(frames[0].data<char>(), frames[0].size());
  try {
    if (frames.size() < 3) throw wire::DecodeError(ErrorCode::BadRequest, "BATCH without its index frame");
    wire::decode_batch(frames[2], frames.size() - 3, batch_items_);
  } catch (const wire::DecodeError& e) {
    note_bad_message(peer, e.what(), frames.size() > 2 ? &frames[2] : nullptr, now_ms);
    reply_error(peer, e.code(), e.what());
    return;
  }
  // Each message's header is a constant frame pointing into the index
  // frame, which stays where it is until the batch is done.
  std::size_t next_payload = 3;
  std::array<zmq::message_t, 4> message;
  for (const auto& item : batch_items_) {
    message[0].copy(frames[0]);
    message[1] = wire::encode_tag(item.command);
    message[2] = zmq::message_t(const_cast<char*>(item.header.data()), item.header.size(), nullptr);
    const bool has_payload = wire::frame_count(item.command) == 3;
    // An inline payload is copied out: a job keeps its payload after the
    // index frame is gone.
    if (item.inline_payload)
      message[3] = zmq::message_t(item.payload.data(), item.payload.size());
    else if (has_payload)
      message[3] = std::move(frames[next_payload++]);
    handle(std::span<zmq::message_t>(message.data(), has_payload ? 4 : 3), now_ms);
  }
  batch_items_.clear();
}

void BrokerCore::forget_peer(const std::string& peer) {
  peers_.erase(peer);
  transport_.forget(peer);
  // A client that asked with WAIT (or a duplicate SUBMIT with wait) and is
  // gone waits no more: its entries must not pile up under a flow that
  // may never end.
  std::erase_if(extra_waiters_, [&](const auto& entry) { return entry.second == peer; });
}

void BrokerCore::on_undelivered(const std::string& peer, SendResult why, std::span<const std::uint64_t> job_ids) {
  WorkerEntry* worker = workers_.find(peer);
  if (!worker) return;  // ACCEPTED, RESULT, REPLY…: lost as a failed direct send is
  // The JOBs that never left go back first, their attempt not counted, as
  // when a direct send fails; back in reverse, so the first of them is
  // first again.
  std::vector<std::string> types;
  for (auto id = job_ids.rbegin(); id != job_ids.rend(); ++id) {
    auto job = take_held(*worker, *id);
    if (!job) continue;
    if (rates_.any()) rates_.refund(job->type);  // it never started
    if (drop_if_cancelled(*job)) continue;
    --job->attempts;
    if (std::find(types.begin(), types.end(), job->type) == types.end()) types.push_back(job->type);
    queue_.push_front(std::move(*job));
  }
  if (why == SendResult::Unreachable) {
    // What it did receive is requeued with the worker (ahead of the jobs
    // above, which were dispatched after it), and its types dispatched.
    pending_drops_.push_back(peer);
    drop_pending(now_ms_);
    return;
  }
  worker->paused = true;  // no more jobs for it until it speaks again or is dropped
  for (const auto& type : types) dispatch(type);  // other workers of the type may have room
}

void BrokerCore::on_hello(const std::string& peer, const zmq::message_t& header) {
  const auto hello = wire::decode_hello(header);
  if (hello.version != kProtocolVersion) {
    reply_error(peer, ErrorCode::BadProtocol,
                "protocol version " + std::to_string(hello.version) + " is not served; this broker speaks MW/1");
    return;
  }
  peers_[peer].said_hello = true;
  transport_.set_batch_limit(peer, hello.batch, hello.inline_payloads);
  wire::Welcome welcome;
  welcome.batch = kMaxBatchEntries;
  welcome.inline_payloads = true;
  welcome.pub_address = config_.pub_address;
  welcome.heartbeat_ms = config_.heartbeat_ms;
  welcome.broker_version = kVersion;
  welcome.max_message_bytes = config_.max_message_bytes;
  welcome.progress = true;
  send(peer, Command::Welcome, wire::encode(welcome));
}

void BrokerCore::on_ready(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms) {
  const auto ready = wire::decode_ready(header);
  WorkerEntry entry;
  entry.id = peer;
  for (auto t : ready.types) entry.types.emplace_back(t);
  entry.next = ready.next;
  entry.host = ready.host;
  entry.pid = ready.pid;
  entry.credit = ready.credit;
  entry.takes_cancel = ready.cancel;
  peers_[peer].said_hello = true;
  const WorkerEntry& stored = workers_.upsert(std::move(entry));
  served_types_.insert(stored.types.begin(), stored.types.end());
  log(LogLevel::info, kLogComponent,
      "worker " + printable_id(peer) + " ready for " + joined_types(stored.types) +
          (stored.next.empty() ? "" : " -> " + stored.next) + " (host " + stored.host + ", pid " +
          std::to_string(stored.pid) + ", credit " + std::to_string(stored.credit) + ")");
  if (transport_.has_subscribers("$mw.worker.ready")) {
    zmq::message_t data = worker_event_data(stored, std::nullopt);
    publish_event("$mw.worker.ready", 0, joined_types(stored.types), "", &data);
  }
  dispatch_for_worker(peer, now_ms);
}

void BrokerCore::on_submit(const std::string& peer, const zmq::message_t& header, zmq::message_t& payload,
                           std::int64_t now_ms) {
  const auto submit = wire::decode_submit(header);
  if (payload.size() == 0) {
    reply_error(peer, ErrorCode::BadRequest, "SUBMIT payload frame is empty: send one msgpack value (nil is 0xc0)",
                submit.request_id);
    return;
  }
  std::string entity;
  if (!submit.entity.empty()) {
    if (!entities_) {
      reply_error(peer, ErrorCode::NotImplemented, "SUBMIT with an entity: this broker has no entity store",
                  submit.request_id);
      return;
    }
    try {
      entity = resolve_entity(submit.entity, payload);
    } catch (const Error& e) {
      reply_error(peer, e.code(), e.what(), submit.request_id);
      return;
    }
  }
  if (!submit.key.empty()) {
    if (const auto it = keys_.find(submit.key); it != keys_.end()) {
      // Idempotent submit: the first flow with this key is unfinished.
      ++counters_.duplicates;
      if (submit.wait) add_waiter(it->second, peer);
      send_after_commit(peer, Command::Accepted, wire::encode(wire::Accepted{submit.request_id, it->second}), nullptr);
      return;
    }
  }
  // A new flow only: what is already in the broker (next stages, retries)
  // is never refused, and a duplicate above adds nothing.
  if (auto full = too_full_for(submit.type, payload.size())) {
    ++counters_.refused_full;
    // A type at its own limit has jobs waiting: a flood of refused SUBMITs
    // of made-up types adds no counters.
    if (full->by_type_limit) ++type_counters(submit.type).refused;
    log_full(full->why, now_ms);
    reply_error(peer, ErrorCode::Full, full->why, submit.request_id);
    return;
  }
  Job job = new_flow(submit.type, std::move(payload), submit.max_attempts, submit.priority, submit.lease_ms, submit.key,
                     std::move(entity), now_ms);
  if (submit.wait) job.reply_to = peer;
  const std::int64_t due_at = submit.delay_ms ? job.submitted_at + static_cast<std::int64_t>(submit.delay_ms) : 0;
  if (journaling()) journal_->add(job, due_at);
  // With a durable store ACCEPTED waits for the commit that holds the job.
  // A submitter that waits for the RESULT is not waiting on the ACCEPTED:
  // it may be held back briefly, to travel with the RESULT of a quick flow
  // instead of waking the submitter on its own.
  send_after_commit(peer, Command::Accepted, wire::encode(wire::Accepted{submit.request_id, job.flow_id}), nullptr,
                    CommitFailure{0, job.flow_id, submit.request_id}, submit.wait ? kAcceptedHoldMs : 0);
  if (submit.delay_ms) {
    delay(std::move(job), now_ms + static_cast<std::int64_t>(submit.delay_ms));
    return;
  }
  route(std::move(job), now_ms);
}

Job BrokerCore::new_flow(std::string_view type, zmq::message_t payload, std::uint32_t max_attempts,
                         std::int32_t priority, std::uint64_t lease_ms, std::string_view key, std::string entity,
                         std::int64_t now_ms) {
  Job job;
  job.id = next_id_++;
  job.flow_id = job.id;
  job.type = type;
  job.entity = std::move(entity);
  job.max_attempts = max_attempts ? max_attempts : max_attempts_for(type);
  job.priority = priority;
  job.lease_ms = lease_ms;
  job.key = key;
  job.submitted_at = wall_clock_();
  job.payload = std::move(payload);
  if (!job.key.empty()) keys_.emplace(job.key, job.flow_id);
  ++counters_.submitted;
  submit_rate_.add(now_ms);
  return job;
}

void BrokerCore::load_schedules() {
  schedules_dirty_ = false;
  if (!entities_) return;
  try {
    TranslatedQuery all;
    all.limit = std::numeric_limits<std::int32_t>::max();
    auto found = store_->find(config_.schedule_endpoint, all);
    for (const auto& problem : schedules_.load(found.docs)) log(LogLevel::warn, kLogComponent, problem);
  } catch (const std::exception& e) {
    log(LogLevel::error, kLogComponent, "cannot load the schedules: " + std::string(e.what()));
  }
  next_schedule_ms_ = now_ms_;  // look at once
}

void BrokerCore::run_schedules(std::int64_t now_ms) {
  if (schedules_dirty_) load_schedules();
  if (schedules_.size() == 0 || now_ms < next_schedule_ms_) return;
  const std::int64_t wall = wall_clock_();
  for (Schedule* s : schedules_.due(wall)) {
    // The key keeps runs from overlapping: while the previous run's flow
    // is unfinished, this run is skipped.
    const std::string key = "$schedule:" + s->name;
    Json changes = Json::object();
    changes["next_at"] = s->next_at;
    std::optional<Job> job;
    if (keys_.contains(key)) {
      ++counters_.schedule_skipped;
      changes["skipped"] = ++s->skipped;
    } else if (auto full = too_full_for(s->type, s->payload.size())) {
      // Counted as skipped: the next run is on time, not a burst.
      ++counters_.schedule_skipped;
      changes["skipped"] = ++s->skipped;
      log_full("schedule " + s->name + ": run skipped: " + full->why, now_ms);
    } else {
      zmq::message_t payload(s->payload.data(), s->payload.size());
      job = new_flow(s->type, std::move(payload), s->max_attempts, s->priority, 0, key, "", now_ms);
      ++counters_.scheduled;
      changes["runs"] = ++s->runs;
      changes["last_run_at"] = wall;
      changes["last_flow"] = job->flow_id;
    }
    try {
      // The run and its job commit together.
      if (job && journaling()) journal_->add(*job, 0);
      entities_->in_unit([&] {
        if (!entities_->write_back(config_.schedule_endpoint, s->name, changes, wall)) schedules_dirty_ = true;
      });
    } catch (const std::exception& e) {
      log(LogLevel::warn, kLogComponent, "schedule " + s->name + ": cannot record its run: " + e.what());
    }
    if (job) route(std::move(*job), now_ms);
  }
  const auto next = schedules_.next_due();
  next_schedule_ms_ = now_ms + (next ? std::clamp<std::int64_t>(*next - wall, 0, 1000) : 1000);
}

void BrokerCore::on_done(const std::string& peer, const zmq::message_t& header, zmq::message_t& result,
                         std::int64_t now_ms) {
  const auto done = wire::decode_done(header);
  WorkerEntry* worker = workers_.find(peer);
  auto job = take_in_flight(peer, worker, done.job_id, done.attempt);
  if (!job) {
    // A stale answer may have freed a slot held since a lease expired.
    if (worker) dispatch_for_worker(peer, now_ms);
    return;
  }
  if (drop_if_cancelled(*job)) {
    dispatch_for_worker(peer, now_ms);
    return;
  }
  // An empty frame is not msgpack; the broker does not decode results, but
  // it never passes on a frame that cannot be one.
  if (result.size() == 0) result.rebuild("\xc0", 1);
  ++worker->done;
  auto& tc = type_counters(job->type);
  ++tc.done;
  tc.done_rate.add(now_ms);

  const std::string_view next = done.next ? *done.next : std::string_view(worker->next);
  if (next.empty()) {
    if (journaling()) journal_->remove(job->flow_id);
    finish_flow(*job, result, now_ms);
  } else {
    // The next stage is this job made over: it keeps the flow's id, options,
    // submitter, entity and key, and reuses the strings' memory (a type
    // name is seldom short enough to fit in the string itself).
    Job& stage = *job;
    stage.id = next_id_++;
    stage.type.assign(next);  // next does not point into job->type
    stage.attempts = 0;
    stage.stage = job->stage + 1;
    stage.payload = std::move(result);
    stage.enqueued_ms = 0;
    stage.dispatched_ms = 0;
    stage.due_ms = 0;
    if (stage.stage >= config_.max_stages) {
      // A loop (a --next or nextWorkerType that leads back) would never end.
      bury(stage,
           "stage limit: the flow had run " + std::to_string(config_.max_stages) + " stage(s) (mw-broker --max-stages " +
               std::to_string(config_.max_stages) + "), so its next, " + stage.type +
               ", was not run; raise the limit for a longer pipeline, or look for a --next or nextWorkerType "
               "that leads back to an earlier stage",
           now_ms);
    } else {
      // The flow's journal row now holds the next stage (one write, not a
      // delete and an insert).
      if (journaling()) journal_->update(stage, 0);
      route(std::move(stage), now_ms);
    }
  }
  dispatch_for_worker(peer, now_ms);
}

void BrokerCore::on_fail(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms) {
  const auto fail = wire::decode_fail(header);
  auto job = take_in_flight(peer, workers_.find(peer), fail.job_id, fail.attempt);
  if (!job) {
    if (workers_.find(peer)) dispatch_for_worker(peer, now_ms);
    return;
  }
  if (drop_if_cancelled(*job)) {
    dispatch_for_worker(peer, now_ms);
    return;
  }
  ++counters_.failed;
  ++type_counters(job->type).failed;
  retry_or_bury(std::move(*job), fail.error, fail.retryable, now_ms);
  dispatch_for_worker(peer, now_ms);
}

void BrokerCore::on_status(const std::string& peer, const zmq::message_t& header, std::int64_t now_ms) {
  auto stats_reply = stats(now_ms);
  stats_reply.request_id = wire::decode_status(header).request_id;
  send(peer, Command::Stats, wire::encode(stats_reply));
}

void BrokerCore::on_heartbeat(const std::string& peer) {
  // A heartbeat from a peer we never met means it knew a broker that has
  // since restarted: tell it to start over so it registers again.
  const auto it = peers_.find(peer);
  if (it == peers_.end() || !it->second.said_hello) send(peer, Command::Disconnect, zmq::message_t());
}

void BrokerCore::on_disconnect(const std::string& peer, std::int64_t now_ms) {
  // A worker that says DISCONNECT has finished (and reported) every job it
  // started: what it still holds it never started, so those deliveries do
  // not count as attempts.
  if (workers_.find(peer)) drop_worker(peer, "said DISCONNECT", now_ms, /*graceful=*/true);
  forget_peer(peer);
}

// ---- jobs -----------------------------------------------------------------

void BrokerCore::on_progress(const std::string& peer, const zmq::message_t& header, const zmq::message_t& value) {
  const auto progress = wire::decode_progress(header);
  if (value.size() > kMaxProgressBytes)
    throw wire::DecodeError(ErrorCode::TooLarge, "PROGRESS: the value is " + std::to_string(value.size()) +
                                                     " bytes; at most " + std::to_string(kMaxProgressBytes));
  // Only for a job this worker holds: a late one (the job ended, or was
  // taken back) says nothing about the job's current run.
  WorkerEntry* worker = workers_.find(peer);
  if (!worker) return;
  const Job* job = worker->held(progress.job_id);
  if (!job) return;
  if (answers_another_run(*job, progress.attempt)) return;
  // A cancelled flow's job runs on only until its worker answers: its
  // outcome is told, and nothing is said of it after that.
  if (!cancelled_flows_.empty() && cancelled_flows_.contains(job->flow_id)) return;
  // An empty frame is not msgpack: it says nil, as a DONE's would.
  const std::string_view bytes = value.size() ? std::string_view(value.data<char>(), value.size()) : "\xc0";
  WorkerEntry::Progress& held = worker->progress[job->id];
  held.value.assign(bytes);
  if (!transport_.has_subscribers("$mw.progress")) {
    held.unpublished = false;  // nobody to tell, now or later
    return;
  }
  // A worker may send many a second (a foreign one: the mw library sends
  // at most every 100 ms): listeners get the newest at most that often.
  if (now_ms_ - held.published_ms >= kProgressPublishEveryMs) {
    publish_progress(*job, held);
  } else if (!std::exchange(held.unpublished, true)) {
    progress_due_.push(ProgressDue{held.published_ms + kProgressPublishEveryMs, peer, job->id});
  }
}

void BrokerCore::publish_progress(const Job& job, WorkerEntry::Progress& progress) {
  const zmq::message_t data(progress.value.data(), progress.value.size());
  publish_event("$mw.progress", job.flow_id, job.type, "", &data);
  progress.published_ms = now_ms_;
  progress.unpublished = false;
}

void BrokerCore::publish_due_progress(std::int64_t now_ms) {
  while (!progress_due_.empty() && progress_due_.top().due_ms <= now_ms) {
    const ProgressDue due = progress_due_.top();
    progress_due_.pop();
    // Gone with its run, or published since (at the run's end): nothing to do.
    WorkerEntry* worker = workers_.find(due.worker);
    if (!worker) continue;
    const auto held = worker->progress.find(due.job_id);
    if (held == worker->progress.end() || !held->second.unpublished) continue;
    // Published since this entry was made (a value came just as it fell
    // due): the entry made after that publish covers the value.
    if (now_ms - held->second.published_ms < kProgressPublishEveryMs) continue;
    if (const Job* job = worker->held(due.job_id)) publish_progress(*job, held->second);
  }
}

void BrokerCore::end_progress(WorkerEntry& worker, const Job& job) {
  const auto held = worker.progress.find(job.id);
  if (held == worker.progress.end()) return;
  if (held->second.unpublished) publish_progress(job, held->second);
  worker.progress.erase(held);
}

std::optional<Job> BrokerCore::take_held(WorkerEntry& worker, std::uint64_t job_id) {
  auto& held = worker.jobs;
  // Jobs mostly finish in the order they were given: look from the front.
  // erase, not swap-with-back: drop_worker() relies on dispatch order.
  for (auto it = held.begin(); it != held.end(); ++it) {
    if (it->id != job_id) continue;
    if (!worker.progress.empty()) end_progress(worker, *it);  // this run is over
    Job job = std::move(*it);
    held.erase(it);
    return job;
  }
  return std::nullopt;
}

std::optional<Job> BrokerCore::take_in_flight(const std::string& peer, WorkerEntry* worker, std::uint64_t job_id,
                                              std::uint32_t attempt) {
  const auto other_run = [&] {
    const Job* held = worker->held(job_id);
    return held && answers_another_run(*held, attempt);
  };
  if (worker && !other_run()) {
    if (auto job = take_held(*worker, job_id)) return job;
  }
  // A late answer for a job that was requeued (its worker was presumed
  // dead or its lease expired) or that a previous broker gave out:
  // at-least-once means the job runs again elsewhere, so this answer is
  // dropped. The worker is done with it: its slot is free again.
  ++counters_.stale_replies;
  if (worker)
    worker->answered_expired(job_id);
  else
    send(peer, Command::Disconnect, zmq::message_t());
  return std::nullopt;
}

std::size_t BrokerCore::in_flight() const noexcept {
  std::size_t n = 0;
  for (const WorkerEntry* w : workers_.all()) n += w->jobs.size();
  return n;
}

void BrokerCore::enqueue(Job job, std::int64_t now_ms) {
  job.enqueued_ms = now_ms;
  queue_.push_back(std::move(job));
}

void BrokerCore::route(Job job, std::int64_t now_ms) {
  job.enqueued_ms = now_ms;
  WorkerEntry* worker = workers_.least_loaded(job.type);
  if (!worker) {
    if (job.stage > 0 && !served_types_.contains(job.type)) warn_unserved_stage(job);
    queue_.push_back(std::move(job));
    return;
  }
  // Nothing of its type waits and a worker has room: hand it over at once,
  // without packing it for the queue (the common case under load).
  if (queue_.depth(job.type) == 0) {
    if (rates_.any() && !rate_allows(job.type)) {
      queue_.push_back(std::move(job));
      return;
    }
    give(*worker, std::move(job));
    return;
  }
  // Older jobs of its type wait (rare with a free worker): keep the order.
  std::string type = job.type;
  queue_.push_back(std::move(job));
  dispatch(type);
}

void BrokerCore::warn_unserved_stage(const Job& job) {
  if (!warned_unserved_types_.insert(job.type).second) return;
  log(LogLevel::warn, kLogComponent,
      "flow " + std::to_string(job.flow_id) + " went on to type '" + job.type +
          "', which no worker has served since the broker started; its jobs wait for one. If that is not "
          "meant (a typo in a worker's --next or a result's nextWorkerType?), mw flows " + job.type +
          " lists them and mw cancel ends them");
}

bool BrokerCore::give(WorkerEntry& worker, Job job) {
  ++job.attempts;
  job.dispatched_ms = now_ms_;
  // The worker's entry keeps its reference to the payload until DONE: zmq
  // shares the buffer (reference count), it does not copy it.
  zmq::message_t payload;
  payload.copy(job.payload);
  const auto result = transport_.send_bytes(
      worker.id, Command::Job, wire::encode_view(wire::JobHeader{job.id, job.type, job.attempts, job.flow_id, job.entity}),
      &payload, 0);
  if (result == SendResult::Sent) {
    if (!job.entity.empty()) stamp_entity(job);
    worker.jobs.push_back(std::move(job));
    return true;
  }
  worker.paused = true;  // no more jobs for it until it speaks again or is dropped
  if (result == SendResult::Unreachable) pending_drops_.push_back(worker.id);
  if (rates_.any()) rates_.refund(job.type);  // it never started
  if (drop_if_cancelled(job)) return false;
  --job.attempts;
  queue_.push_front(std::move(job));
  return false;
}

bool BrokerCore::rate_allows(std::string_view type) {
  if (rates_.try_take(type, now_ms_)) return true;
  if (const auto due = rates_.next_room_ms(type, now_ms_)) {
    auto [it, inserted] = rate_wakeups_.try_emplace(std::string(type), *due);
    if (!inserted) it->second = std::min(it->second, *due);
  }
  return false;
}

void BrokerCore::dispatch(std::string_view type) {
  const bool limited = rates_.any() && rates_.limit(type);
  while (WorkerEntry* worker = workers_.least_loaded(type)) {
    if (limited && (queue_.depth(type) == 0 || !rate_allows(type))) return;
    auto job = queue_.pop(type);
    if (!job) return;
    if (drop_if_cancelled(*job)) continue;
    give(*worker, std::move(*job));
  }
}

void BrokerCore::dispatch_for_worker(const std::string& worker_id, std::int64_t now_ms) {
  // Index loop and re-lookup: dispatch() never removes workers, but keep
  // this robust to registry changes all the same.
  for (std::size_t i = 0;; ++i) {
    WorkerEntry* worker = workers_.find(worker_id);
    if (!worker || i >= worker->types.size() || !worker->has_free_credit()) break;
    dispatch(worker->types[i]);
  }
  drop_pending(now_ms);
}

void BrokerCore::finish_flow(Job& job, zmq::message_t& result, std::int64_t now_ms) {
  ++counters_.flows_done;
  release_key(job);
  done_rate_.add(now_ms);
  if (!job.entity.empty() && entities_) {
    // The result lands on the entity in this turn's transaction; the RESULT
    // below waits for its commit.
    const auto slash = job.entity.find('/');
    try {
      const Json value = Payload::adopt(std::string(result.data<char>(), result.size())).to_ordered_json();
      entities_->in_unit([&] {
        if (!entities_->write_back(job.entity.substr(0, slash), job.entity.substr(slash + 1), value, wall_clock_()))
          log(LogLevel::warn, kLogComponent, "flow " + std::to_string(job.flow_id) + ": entity " + job.entity +
                                                 " no longer exists; its result was not written back");
      });
    } catch (const std::exception& e) {
      log(LogLevel::warn, kLogComponent, "flow " + std::to_string(job.flow_id) + ": cannot write the result back to " +
                                             job.entity + ": " + e.what());
    }
  }
  if (transport_.has_subscribers("$mw.flow.done")) publish_event("$mw.flow.done", job.flow_id, job.type, "", &result);
  send_results(job, kOutcomeDone, "", result);
}

void BrokerCore::send_results(const Job& job, std::string_view outcome, std::string_view error,
                              zmq::message_t& payload) {
  if (!recovered_flows_.empty()) recovered_flows_.erase(job.flow_id);
  if (finished_.fits(payload.size() + error.size())) {
    FinishedFlow& kept =
        finished_.add(job.flow_id, outcome, error, std::string_view(payload.data<char>(), payload.size()));
    kept.last_type.assign(job.type);
    kept.attempts = job.attempts;
    kept.submitted_at = job.submitted_at;
    kept.finished_at = wall_clock_();
    kept.entity.assign(job.entity);
    kept.key.assign(job.key);
    if (journaling()) journal_->finished(kept);
  }
  // Submitters of the same key that asked to wait, and WAITs, hear the end too.
  if (!extra_waiters_.empty()) {
    auto [first, last] = extra_waiters_.equal_range(job.flow_id);
    for (auto it = first; it != last; ++it) {
      if (it->second == job.reply_to) continue;  // it hears it below, once
      zmq::message_t copy;
      copy.copy(payload);
      send_after_commit(it->second, Command::Result,
                        wire::encode(wire::Result{job.flow_id, outcome, error, job.type, job.attempts}), &copy);
    }
    extra_waiters_.erase(job.flow_id);
  }
  if (!job.reply_to.empty()) {
    send_after_commit(job.reply_to, Command::Result,
                      wire::encode_view(wire::Result{job.flow_id, outcome, error, job.type, job.attempts}), &payload);
  }
}

void BrokerCore::retry_or_bury(Job job, std::string_view error, bool retryable, std::int64_t now_ms) {
  if (retryable && job.attempts < job.max_attempts) {
    ++counters_.retried;
    const std::int64_t wait_ms = retry_delay_ms(job.attempts);
    if (journaling()) journal_->update(job, wall_clock_() + wait_ms);
    delay(std::move(job), now_ms + wait_ms);
    return;
  }
  bury(job, error, now_ms);
}

void BrokerCore::delay(Job job, std::int64_t due_ms) {
  const std::uint64_t id = job.id;
  job.due_ms = due_ms;
  timers_.push(Timer{due_ms, id});
  delayed_bytes_ += job.payload.size();
  ++type_counters(job.type).delayed;
  auto [it, inserted] = delayed_.try_emplace(id);
  if (!inserted) {
    delayed_bytes_ -= it->second.payload.size();
    --type_counters(it->second.type).delayed;
  }
  it->second = std::move(job);
}

void BrokerCore::log_full(const std::string& what, std::int64_t now_ms) {
  std::uint64_t suppressed = 0;
  if (full_log_.allow(now_ms, suppressed))
    log(LogLevel::warn, kLogComponent,
        what + (suppressed ? " (" + std::to_string(suppressed) + " more refused since the last line)" : ""));
}

std::optional<Job> BrokerCore::take_delayed(std::uint64_t id) {
  auto node = delayed_.extract(id);
  if (node.empty()) return std::nullopt;
  delayed_bytes_ -= node.mapped().payload.size();
  const auto counters = type_counters_.find(node.mapped().type);
  // A type known only for its delayed jobs (cancelled, say) is forgotten
  // with the last of them, as a queue's type is: names are not kept forever.
  if (--counters->second.delayed == 0 && counters->second.done == 0 && counters->second.failed == 0 &&
      counters->second.dead == 0) {
    recent_counters_ = nullptr;
    type_counters_.erase(counters);
  }
  return std::move(node.mapped());
}

std::uint64_t BrokerCore::waiting_of(std::string_view type) const {
  const auto counters = type_counters_.find(type);
  return queue_.depth(type) + (counters == type_counters_.end() ? 0 : counters->second.delayed);
}

std::uint64_t BrokerCore::max_waiting_of(std::string_view type) const {
  if (!config_.type_max_waiting.empty())
    if (const auto it = config_.type_max_waiting.find(type); it != config_.type_max_waiting.end()) return it->second;
  return config_.max_waiting_per_type;
}

std::optional<BrokerCore::Refusal> BrokerCore::too_full_for(std::string_view type, std::size_t payload_bytes) const {
  const std::uint64_t jobs = waiting_jobs();
  const std::uint64_t bytes = waiting_bytes();
  if (config_.max_waiting_jobs && jobs >= config_.max_waiting_jobs)
    return Refusal{"the broker is full: " + std::to_string(jobs) + " job(s) wait for a worker or their time (--max-waiting " +
                   std::to_string(config_.max_waiting_jobs) + "); submit again once workers have caught up"};
  if (const std::uint64_t limit = max_waiting_of(type))  // two lookups at most, and only with a limit set
    if (const std::uint64_t waiting = waiting_of(type); waiting >= limit)
      return Refusal{"type " + std::string(type) + " is full: " + std::to_string(waiting) +
                         " job(s) of it wait for a worker or their time (" +
                         (config_.type_max_waiting.contains(type) ? "--type-max-waiting " + std::string(type) + "="
                                                                   : std::string("--max-waiting-per-type ")) +
                         std::to_string(limit) + "); submit again once " +
                         (workers_.count(type) ? "its workers have caught up" : "a worker serves it (none does now)"),
                     true};
  // With nothing waiting, any payload the broker took in is let through: a
  // limit below one message must not refuse it forever.
  if (config_.max_waiting_bytes && bytes > 0 && bytes + payload_bytes > config_.max_waiting_bytes)
    return Refusal{"the broker is full: the jobs waiting hold " + std::to_string(bytes >> 20) +
                   " MiB of payload (--max-waiting-mb " + std::to_string(config_.max_waiting_bytes >> 20) +
                   "); submit again once workers have caught up"};
  return std::nullopt;
}

std::uint32_t BrokerCore::max_attempts_for(std::string_view type) const {
  if (!config_.type_max_attempts.empty())
    if (const auto it = config_.type_max_attempts.find(type); it != config_.type_max_attempts.end()) return it->second;
  return config_.default_max_attempts;
}

std::uint64_t BrokerCore::lease_for(const Job& job) const {
  if (job.lease_ms) return job.lease_ms;
  if (!config_.type_lease_ms.empty())
    if (const auto it = config_.type_lease_ms.find(job.type); it != config_.type_lease_ms.end()) return it->second;
  return config_.lease_ms;
}

void BrokerCore::release_key(const Job& job) {
  if (job.key.empty()) return;
  if (const auto it = keys_.find(job.key); it != keys_.end() && it->second == job.flow_id) keys_.erase(it);
}

bool BrokerCore::drop_if_cancelled(const Job& job) {
  if (cancelled_flows_.empty() || !cancelled_flows_.contains(job.flow_id)) return false;
  // A flow has one live job at a time: once it is dropped the flow is gone.
  cancelled_flows_.erase(job.flow_id);
  if (journaling()) journal_->remove(job.flow_id);
  release_key(job);
  return true;
}

void BrokerCore::cancel_flow(std::uint64_t flow_id) {
  ++counters_.cancelled;
  // Its journal entry, never committed, must not be written by a later
  // turn either.
  if (journaling()) journal_->remove(flow_id);
  for (auto it = keys_.begin(); it != keys_.end(); ++it) {
    if (it->second != flow_id) continue;
    keys_.erase(it);
    break;
  }
  extra_waiters_.erase(flow_id);
  finished_.forget(flow_id);  // it may have ended in this turn: it never was accepted
  if (journaling()) journal_->forget_outcome(flow_id);
  // Gone already: cancelled on request in this same turn (nothing would
  // ever turn up to erase it from cancelled_flows_).
  if (std::find(cancelled_this_turn_.begin(), cancelled_this_turn_.end(), flow_id) != cancelled_this_turn_.end())
    return;
  // Dropped where it waits now, or when it next turns up (queued or in flight).
  if (take_delayed(flow_id)) return;
  cancelled_flows_.insert(flow_id);
}

void BrokerCore::expire_leases(std::int64_t now_ms) {
  if (now_ms < next_lease_scan_ms_) return;
  next_lease_scan_ms_ = now_ms + 250;
  std::vector<std::string> holders;
  for (const WorkerEntry* w : workers_.all())
    for (const Job& job : w->jobs)
      if (now_ms - job.dispatched_ms >= static_cast<std::int64_t>(lease_for(job))) {
        holders.push_back(w->id);
        break;
      }
  for (const auto& id : holders) {
    WorkerEntry* worker = workers_.find(id);
    if (!worker) continue;
    std::vector<Job> expired;
    for (auto it = worker->jobs.begin(); it != worker->jobs.end();) {
      if (now_ms - it->dispatched_ms >= static_cast<std::int64_t>(lease_for(*it))) {
        if (!worker->progress.empty()) end_progress(*worker, *it);
        worker->expired.push_back({it->id, it->flow_id});
        expired.push_back(std::move(*it));
        it = worker->jobs.erase(it);
      } else {
        ++it;
      }
    }
    // Requeue in reverse so that the oldest ends up first.
    for (auto it = expired.rbegin(); it != expired.rend(); ++it) {
      Job& job = *it;
      if (drop_if_cancelled(job)) continue;  // its flow ended: nothing to take back
      ++counters_.lease_expired;
      log(LogLevel::warn, kLogComponent,
          "job " + std::to_string(job.id) + " (" + job.type + ") held by worker " + printable_id(id) + " for over " +
              std::to_string(lease_for(job)) + " ms: lease expired, taken back");
      if (job.attempts >= job.max_attempts) {
        bury(job, "lease expired on the last of " + std::to_string(job.attempts) + " attempt(s)", now_ms);
        continue;
      }
      ++counters_.requeued;
      std::string type = job.type;
      queue_.push_front(std::move(job));
      dispatch(type);
    }
  }
}

void BrokerCore::bury(Job& job, std::string_view error, std::int64_t now_ms) {
  if (drop_if_cancelled(job)) return;  // refused at SUBMIT: it never counted as accepted
  ++counters_.dead;
  release_key(job);
  if (journaling()) journal_->remove(job.flow_id);
  write_dead_record(job, error);
  ++type_counters(job.type).dead;
  std::uint64_t suppressed = 0;
  if (dead_log_.allow(now_ms, suppressed)) {
    log(LogLevel::warn, kLogComponent,
        "job " + std::to_string(job.id) + " (flow " + std::to_string(job.flow_id) + ", type " + job.type +
            ") is dead after " + std::to_string(job.attempts) + " attempt(s): " + std::string(error) +
            (suppressed ? " (" + std::to_string(suppressed) + " similar lines suppressed)" : ""));
  }
  if (transport_.has_subscribers("$mw.job.dead")) publish_event("$mw.job.dead", job.flow_id, job.type, error, &job.payload);
  zmq::message_t input;
  input.copy(job.payload);
  send_results(job, kOutcomeDead, error, input);
}

void BrokerCore::write_dead_record(const Job& job, std::string_view error) {
  if (!entities_) return;
  const std::int64_t now = wall_clock_();
  Json record = Json::object();
  record["id"] = "dead-" + std::to_string(job.id);
  record["kind"] = "dead";
  record["type"] = job.type;
  record["flow"] = job.flow_id;
  record["job"] = job.id;
  Payload::put_json(record, "payload", {job.payload.data<char>(), job.payload.size()});
  record["error"] = std::string(error);
  record["attempts"] = job.attempts;
  if (!job.entity.empty()) record["entity"] = job.entity;
  record["submitted_at"] = job.submitted_at;
  record["died_at"] = now;
  record["retried"] = false;
  // A FAIL's error text and a payload's strings come off the wire unchecked:
  // bytes that are not UTF-8 are replaced, or the store could never take
  // the record (its JSON text would not be written).
  record = Json::parse(record.dump(-1, ' ', false, Json::error_handler_t::replace));
  save_dead_record(std::move(record));
}

void BrokerCore::save_dead_record(Json record) {
  const std::string id = record["id"].get<std::string>();
  try {
    store_->begin();
    if (!entities_->create_record(config_.sync_endpoint, record, wall_clock_())) {
      log(LogLevel::warn, kLogComponent, "dead record " + id + " exists already");
      return;
    }
    dead_records_this_turn_.push_back(std::move(record));
  } catch (const std::exception& e) {
    // The store's trouble (disk full, I/O): the record waits for the next
    // turn, within the same bound as those a failed commit undid.
    std::uint64_t suppressed = 0;
    if (dead_log_.allow(wall_clock_(), suppressed))
      log(LogLevel::error, kLogComponent,
          "cannot write dead record " + id + " to " + config_.sync_endpoint + " (written again next turn): " +
              e.what() + (suppressed ? " (" + std::to_string(suppressed) + " similar lines suppressed)" : ""));
    dead_records_to_rewrite_.push_back(std::move(record));
    bound_unsaved_dead_records();
  }
}

void BrokerCore::bound_unsaved_dead_records() {
  if (dead_records_to_rewrite_.size() <= kMaxUnsavedDeadRecords) return;
  const std::size_t dropped = dead_records_to_rewrite_.size() - kMaxUnsavedDeadRecords;
  log(LogLevel::error, kLogComponent,
      "the store has refused writes for long: " + std::to_string(dropped) +
          " dead record(s) dropped (their flows' RESULTs and $mw.job.dead events were sent)");
  dead_records_to_rewrite_.erase(dead_records_to_rewrite_.begin(),
                                 dead_records_to_rewrite_.begin() + static_cast<std::ptrdiff_t>(dropped));
}

void BrokerCore::rewrite_dead_records() {
  if (dead_records_to_rewrite_.empty() || !entities_) return;
  auto again = std::move(dead_records_to_rewrite_);
  dead_records_to_rewrite_.clear();
  for (auto& record : again) save_dead_record(std::move(record));
}

void BrokerCore::drop_worker(const std::string& worker_id, std::string_view why, std::int64_t now_ms, bool graceful) {
  auto worker = workers_.remove(worker_id);
  if (!worker) return;
  std::size_t requeued = 0;
  // Put back in reverse so the job dispatched first is first again.
  for (auto it = worker->jobs.rbegin(); it != worker->jobs.rend(); ++it) {
    if (!worker->progress.empty()) end_progress(*worker, *it);  // its run ends here
    Job job = std::move(*it);
    if (drop_if_cancelled(job)) continue;  // its flow ended while the worker held it
    if (graceful) {
      --job.attempts;
    } else if (job.attempts >= job.max_attempts) {
      // Out of attempts, the last one lost with its worker: a job that keeps
      // killing its workers must stop being fed to them.
      bury(job, "gave up after " + std::to_string(job.attempts) + " attempt(s); the last was lost with its worker (" +
                    std::string(why) + ")", now_ms);
      continue;
    }
    ++counters_.requeued;
    ++requeued;
    queue_.push_front(std::move(job));
  }
  log(LogLevel::info, kLogComponent,
      "worker " + printable_id(worker_id) + " (" + joined_types(worker->types) + ", pid " + std::to_string(worker->pid) +
          ") dropped: " + std::string(why) + "; " + std::to_string(requeued) + " job(s) requeued");
  if (transport_.has_subscribers("$mw.worker.gone")) {
    zmq::message_t data = worker_event_data(*worker, requeued);
    publish_event("$mw.worker.gone", 0, joined_types(worker->types), why, &data);
  }
  for (const auto& type : worker->types) dispatch(type);
}

void BrokerCore::drop_pending(std::int64_t now_ms) {
  while (!pending_drops_.empty()) {
    std::string id = std::move(pending_drops_.back());
    pending_drops_.pop_back();
    drop_worker(id, "unreachable", now_ms);
    forget_peer(id);
  }
}

std::int64_t BrokerCore::retry_delay_ms(std::uint32_t attempts) {
  const std::uint32_t shift = std::min<std::uint32_t>(attempts > 0 ? attempts - 1 : 0, 30);
  const std::uint64_t base = std::min<std::uint64_t>(std::uint64_t{config_.retry_base_ms} << shift, config_.retry_max_ms);
  // xorshift64: cheap jitter, no need for a seeded engine here.
  jitter_state_ ^= jitter_state_ << 13;
  jitter_state_ ^= jitter_state_ >> 7;
  jitter_state_ ^= jitter_state_ << 17;
  const std::uint64_t quarter = base / 4;
  const std::uint64_t jitter = quarter ? jitter_state_ % (2 * quarter + 1) : 0;
  return static_cast<std::int64_t>(base - quarter + jitter);
}

// ---- timers ---------------------------------------------------------------

void BrokerCore::tick(std::int64_t now_ms) {
  now_ms_ = now_ms;
  if (started_ms_ < 0) {
    started_ms_ = now_ms;
    next_heartbeat_ms_ = now_ms + config_.heartbeat_ms;
  }
  while (!timers_.empty() && timers_.top().due_ms <= now_ms) {
    const auto id = timers_.top().job_id;
    timers_.pop();
    auto job = take_delayed(id);
    if (!job) continue;
    if (drop_if_cancelled(*job)) continue;
    route(std::move(*job), now_ms);
  }
  if (!rate_wakeups_.empty()) {
    std::vector<std::string> due;
    for (auto it = rate_wakeups_.begin(); it != rate_wakeups_.end();) {
      if (it->second > now_ms) {
        ++it;
        continue;
      }
      due.push_back(it->first);
      it = rate_wakeups_.erase(it);
    }
    for (const auto& type : due) dispatch(type);
  }
  expire_leases(now_ms);
  if (!progress_due_.empty()) publish_due_progress(now_ms);
  run_schedules(now_ms);
  if (now_ms >= next_heartbeat_ms_) {
    send_heartbeats_and_expire(now_ms);
    next_heartbeat_ms_ = now_ms + config_.heartbeat_ms;
  }
  drop_pending(now_ms);
}

std::int64_t BrokerCore::next_deadline_ms() const noexcept {
  std::int64_t next = std::min(next_heartbeat_ms_, next_lease_scan_ms_);
  if (schedules_.size() || schedules_dirty_) next = std::min(next, next_schedule_ms_);
  if (!timers_.empty()) next = std::min(next, timers_.top().due_ms);
  if (!progress_due_.empty()) next = std::min(next, progress_due_.top().due_ms);
  for (const auto& [type, due] : rate_wakeups_) next = std::min(next, due);
  return next;
}

void BrokerCore::send_heartbeats_and_expire(std::int64_t now_ms) {
  const std::int64_t silent_since = now_ms - static_cast<std::int64_t>(config_.heartbeat_ms) * config_.liveness;
  std::vector<std::string> expired;
  for (const auto& [id, peer] : peers_) {
    if (peer.last_seen_ms < silent_since) {
      expired.push_back(id);
    } else if (peer.said_hello) {
      if (transport_.send(id, Command::Heartbeat, nullptr, nullptr) == SendResult::Unreachable) expired.push_back(id);
    }
  }
  if (transport_.has_subscribers(kHeartbeatTopic)) publish_heartbeat();
  for (const auto& id : expired) {
    if (workers_.find(id)) drop_worker(id, "missed heartbeats or unreachable", now_ms);
    forget_peer(id);
  }
}

void BrokerCore::say_goodbye() {
  for (const auto& [id, peer] : peers_)
    if (peer.said_hello) transport_.send(id, Command::Disconnect, nullptr, nullptr);
}

// ---- entities -------------------------------------------------------------

void BrokerCore::on_call(const std::string& peer, const zmq::message_t& header, const zmq::message_t& body) {
  const auto call = wire::decode_call(header);
  auto reply_failure = [&](ErrorCode code, const std::string& message) {
    send_after_commit(peer, Command::Reply,
                      wire::encode(wire::Reply{call.request_id, static_cast<std::uint16_t>(code), message}), nullptr);
  };
  const auto method = parse_method(call.method);
  if (!method) {
    reply_failure(ErrorCode::BadRequest, "unknown method '" + std::string(call.method) +
                                             "': use create, get, find, update, patch or remove");
    return;
  }
  if (!entities_ && call.endpoint != kFlowsEndpoint) {
    reply_failure(ErrorCode::NotImplemented, "this broker has no entity store");
    return;
  }
  const std::string_view body_bytes(body.data<char>(), body.size());
  const std::int64_t now_wall = wall_clock_();
  try {
    std::optional<std::string> result;
    if (*method == Method::Create && call.endpoint != kMarkEndpoint && call.endpoint != kFlowsEndpoint) {
      store_->begin();
      result = entities_->create_direct(call.endpoint, body_bytes, now_wall);
    }
    if (!result) result = run_call(peer, call, *method, body_bytes, now_wall);
    if (!result) return;  // answered already ($mark)
    if (call.endpoint == config_.schedule_endpoint && *method != Method::Get && *method != Method::Find)
      schedules_dirty_ = true;
    zmq::message_t result_frame(result->data(), result->size());
    // A cancel has happened in memory whatever the commit does (its journal
    // delete is written again next turn): its REPLY is not turned into "did
    // not happen".
    const bool undone_by_failed_commit = call.endpoint != kFlowsEndpoint;
    send_after_commit(peer, Command::Reply, wire::encode(wire::Reply{call.request_id, 0, ""}), &result_frame,
                      undone_by_failed_commit ? CommitFailure{call.request_id, 0, 0} : CommitFailure{});
  } catch (const Error& e) {
    reply_failure(e.code(), e.what());
  } catch (const std::exception& e) {
    reply_failure(ErrorCode::Internal, std::string("internal error: ") + e.what());
  }
}

std::optional<std::string> BrokerCore::run_call(const std::string& peer, const wire::Call& call, Method method,
                                                std::string_view body, std::int64_t now_wall) {
  HookContext context;
  context.endpoint = call.endpoint;
  context.method = method;
  if (call.id) context.id = std::string(*call.id);
  context.now_ms = now_wall;
  {
    Json request = Payload::ordered_json_of(body);
    if (request.is_object()) {
      if (auto it = request.find("data"); it != request.end()) context.data = std::move(*it);
      if (auto it = request.find("query"); it != request.end()) context.query = std::move(*it);
    } else if (!request.is_null()) {
      throw Error("CALL body must be a map {data, query} or nil", ErrorCode::BadRequest);
    }
    if (call.endpoint == kMarkEndpoint) {
      // A listener's marker: once it sees this on PUB, every subscription it
      // made before is live (see Listener), so its snapshot misses nothing.
      const auto topic = context.data.is_object() ? context.data.value("topic", std::string()) : std::string();
      if (topic.rfind(kMarkTopicPrefix, 0) != 0 || topic.size() > 256)
        throw Error("$mark needs data {\"topic\": \"$mw.mark.<token>\"}", ErrorCode::BadRequest);
      publish_event(topic, 0, "", "", nullptr);
      send(peer, Command::Reply, wire::encode(wire::Reply{call.request_id, 0, ""}));
      return std::nullopt;
    }
    if (call.endpoint == kFlowsEndpoint) return call_flows(context);  // not the store's: no hooks
  }
  store_->begin();
  return entities_->call(std::move(context));
}

std::string BrokerCore::resolve_entity(std::string_view option, const zmq::message_t& payload) const {
  if (const auto slash = option.find('/'); slash != std::string_view::npos) {
    const auto endpoint = option.substr(0, slash), id = option.substr(slash + 1);
    EntityService::check_endpoint_name(endpoint);
    if (id.empty()) throw Error("entity '" + std::string(option) + "' has no id", ErrorCode::BadRequest);
    return std::string(option);
  }
  // micro-workers 0.1.24: the endpoint is the key of the payload's nested
  // object, e.g. {"order": {"id": "o1", …}} → order/o1.
  const Json value = Payload::adopt(std::string(payload.data<char>(), payload.size())).to_ordered_json();
  if (value.is_object()) {
    for (const auto& [key, nested] : value.items()) {
      if (!nested.is_object()) continue;
      EntityService::check_endpoint_name(key);
      if (option != "auto") return key + "/" + std::string(option);
      const auto id = nested.find("id");
      if (id != nested.end() && (id->is_string() || id->is_number_integer()))
        return key + "/" + (id->is_string() ? id->get<std::string>() : std::to_string(id->get<std::int64_t>()));
      break;
    }
  }
  throw Error("entity '" + std::string(option) +
                  "': not ENDPOINT/ID, and the payload has no {\"<endpoint>\": {\"id\": …}} to take the endpoint" +
                  (option == "auto" ? " and id" : "") + " from",
              ErrorCode::BadRequest);
}

void BrokerCore::stamp_entity(const Job& job) {
  const auto slash = job.entity.find('/');
  try {
    entities_->in_unit([&] {
      entities_->stamp_worked_on(job.entity.substr(0, slash), job.entity.substr(slash + 1), wall_clock_());
    });
  } catch (const std::exception& e) {
    log(LogLevel::warn, kLogComponent, "job " + std::to_string(job.id) + ": cannot stamp " + job.entity + ": " + e.what());
  }
}

void BrokerCore::end_turn() {
  end_turn_commit();
  cancelled_this_turn_.clear();
}

void BrokerCore::end_turn_commit() {
  if (!store_) return;
  bool trimmed_outcomes = false;
  if (wall_clock_() >= next_trim_ms_ && entities_) {
    next_trim_ms_ = wall_clock_() + 1000;
    try {
      store_->begin();
      entities_->trim_events(wall_clock_());
      // Outcomes the kept ones no longer reach (a --keep-results of 0: all).
      if (journaling() && journal_->take_outcomes_since_trim()) {
        trimmed_outcomes = true;
        store_->trim_outcomes(config_.keep_results, config_.keep_results_bytes);
      }
    } catch (const std::exception& e) {
      if (trimmed_outcomes) journal_->trim_again();
      log(LogLevel::warn, kLogComponent, std::string("cannot trim old events and kept outcomes: ") + e.what());
    }
  }
  rewrite_dead_records();
  const bool writes = store_->in_transaction() || (journal_ && journal_->pending());
  if (!writes && deferred_.empty()) return;
  bool committed = true;
  try {
    if (writes) {
      if (journal_) journal_->flush();
      store_->commit();
    }
  } catch (const std::exception& e) {
    committed = false;
    store_->rollback();
    log(LogLevel::error, kLogComponent,
        std::string("store commit failed; this turn's submits are refused and its other writes retried: ") + e.what());
  }
  if (committed) {
    dead_records_this_turn_.clear();
  } else {
    if (trimmed_outcomes) journal_->trim_again();
    // Undone with the turn: written again with the next one.
    for (auto& record : dead_records_this_turn_) dead_records_to_rewrite_.push_back(std::move(record));
    dead_records_this_turn_.clear();
    bound_unsaved_dead_records();
  }
  if (committed) {
    if (journal_) journal_->committed();
    for (auto& event : entities_->pending_events()) {
      if (!transport_.has_subscribers(event.topic)) continue;
      zmq::message_t meta = wire::encode(wire::EventMeta{event.seq, 0, "", "", instance_});
      zmq::message_t data(event.data.data(), event.data.size());
      transport_.publish(event.topic, meta, data);
    }
    published_seq_ = store_->last_event_seq();
  }
  entities_->pending_events().clear();
  auto deferred = std::move(deferred_);
  deferred_.clear();
  for (auto& d : deferred) {
    if (!committed && d.on_failure.call_request_id) {
      send(d.peer, Command::Reply,
           wire::encode(wire::Reply{d.on_failure.call_request_id, static_cast<std::uint16_t>(ErrorCode::Internal),
                                    "the store could not commit this write; it did not happen"}));
      continue;
    }
    if (!committed && d.on_failure.accepted_flow) {
      // Nothing acknowledged may be lost: a job the store could not keep is
      // refused, and its flow cancelled so that it does not run either.
      cancel_flow(d.on_failure.accepted_flow);
      reply_error(d.peer, ErrorCode::Internal, "the store could not commit this job; it was not accepted",
                  d.on_failure.submit_request_id);
      continue;
    }
    transport_.send_lazy(d.peer, d.command, &d.header, d.has_payload ? &d.payload : nullptr, d.hold_ms);
  }
}

void BrokerCore::send_after_commit(const std::string& peer, Command command, zmq::message_t header,
                                   zmq::message_t* payload, CommitFailure on_failure, std::uint32_t hold_ms) {
  // Once something waits for the commit, what follows waits too, so the
  // turn's order holds (a flow's RESULT never overtakes its ACCEPTED, even
  // when a write the ACCEPTED waited for was undone in the same turn).
  if (!replies_wait_for_commit()) {
    transport_.send_lazy(peer, command, &header, payload, hold_ms);
    return;
  }
  Deferred d{peer, command, std::move(header), zmq::message_t(), payload != nullptr, on_failure, hold_ms};
  if (payload) d.payload.move(*payload);
  deferred_.push_back(std::move(d));
}

void BrokerCore::send_after_commit(const std::string& peer, Command command, std::string_view header,
                                   zmq::message_t* payload) {
  if (!replies_wait_for_commit()) {
    transport_.send_bytes(peer, command, header, payload, 0);
    return;
  }
  send_after_commit(peer, command, zmq::message_t(header.data(), header.size()), payload);
}

bool BrokerCore::replies_wait_for_commit() const noexcept {
  return store_ && (!deferred_.empty() || store_->in_transaction() || (journal_ && journal_->pending()));
}

// ---- output ---------------------------------------------------------------

SendResult BrokerCore::send(const std::string& peer, Command command, zmq::message_t header, zmq::message_t* payload) {
  return transport_.send(peer, command, &header, payload);
}

void BrokerCore::reply_error(const std::string& peer, ErrorCode code, std::string_view message,
                             std::uint64_t request_id) {
  send(peer, Command::Error, wire::encode(wire::ErrorReply{code, message, request_id}));
}

void BrokerCore::publish_heartbeat() {
  const Json data = {{"broker", instance_},
                     {"last_seq", store_ ? store_->last_event_seq() : 0},
                     {"durable", store_ && store_->durable()},
                     {"interval_ms", config_.heartbeat_ms},
                     {"published_seq", published_seq_}};
  std::string bytes;
  Json::to_msgpack(data, bytes);
  const zmq::message_t frame(bytes.data(), bytes.size());
  publish_event(kHeartbeatTopic, 0, "", "", &frame);
}

zmq::message_t BrokerCore::worker_event_data(const WorkerEntry& worker, std::optional<std::size_t> requeued) const {
  Json data = {{"worker", printable_id(worker.id)}, {"types", worker.types}, {"next", worker.next},
               {"host", worker.host},                {"pid", worker.pid},     {"credit", worker.credit}};
  if (requeued) data["requeued"] = *requeued;
  return zmq::message_t(Payload::from_json(data).take_bytes());
}

void BrokerCore::publish_event(std::string_view topic, std::uint64_t flow_id, std::string_view type,
                               std::string_view error, const zmq::message_t* data) {
  // meta: {"seq": 0, "flow": id, "type": "...", "error": "...", "run": this run}; data: the payload or nil.
  wire::EventMeta meta{0, flow_id, type, error, instance_};
  zmq::message_t meta_frame = wire::encode(meta);
  zmq::message_t data_frame;
  if (data) {
    data_frame.copy(*const_cast<zmq::message_t*>(data));
  } else {
    data_frame.rebuild("\xc0", 1);
  }
  transport_.publish(topic, meta_frame, data_frame);
}

void BrokerCore::note_bad_message(const std::string& peer, std::string_view reason, const zmq::message_t* sample,
                                  std::int64_t now_ms) {
  ++counters_.bad_messages;
  std::uint64_t suppressed = 0;
  if (!bad_input_log_.allow(now_ms, suppressed)) return;
  std::string line = "bad message from " + printable_id(peer) + ": " + std::string(reason);
  if (sample) line += "; sample: " + sanitized_sample(std::string_view(sample->data<char>(), sample->size()));
  if (suppressed) line += " (" + std::to_string(suppressed) + " similar lines suppressed)";
  log(LogLevel::warn, kLogComponent, line);
}

BrokerCore::TypeCounters& BrokerCore::type_counters(std::string_view type) {
  if (recent_counters_ && recent_counters_->first == type) return recent_counters_->second;
  auto it = type_counters_.find(type);
  if (it == type_counters_.end()) it = type_counters_.emplace(std::string(type), TypeCounters{}).first;
  recent_counters_ = &*it;
  return it->second;
}

// ---- status ---------------------------------------------------------------

wire::Stats BrokerCore::stats(std::int64_t now_ms) {
  wire::Stats s;
  s.broker_version = std::string(kVersion);
  s.uptime_ms = started_ms_ < 0 ? 0 : static_cast<std::uint64_t>(now_ms - started_ms_);
  s.store = config_.store;
  s.submitted = counters_.submitted;
  s.done = counters_.flows_done;
  s.failed = counters_.failed;
  s.dead = counters_.dead;
  s.retried = counters_.retried;
  s.requeued = counters_.requeued;
  s.stale = counters_.stale_replies;
  s.lease_expired = counters_.lease_expired;
  s.recovered = counters_.recovered;
  s.delayed = delayed_.size();
  s.rss_bytes = resident_bytes();
  s.waiting = waiting_jobs();
  s.waiting_bytes = waiting_bytes();
  s.max_waiting = config_.max_waiting_jobs;
  s.max_waiting_bytes = config_.max_waiting_bytes;
  s.refused = counters_.refused_full;
  s.cancelled = counters_.flows_cancelled;
  s.submitted_per_second = submit_rate_.per_second(now_ms);
  s.done_per_second = done_rate_.per_second(now_ms);

  std::unordered_map<std::string_view, std::uint64_t> in_flight_by_type;
  for (const WorkerEntry* w : workers_.all())
    for (const Job& job : w->jobs) ++in_flight_by_type[job.type];

  std::vector<std::string> types = queue_.types();
  for (auto& t : workers_.types()) types.push_back(std::move(t));
  for (const auto& [t, c] : type_counters_) types.push_back(t);
  rates_.for_each([&](const std::string& t, const TypeRate&) { types.push_back(t); });  // limits show before first use
  for (const auto& [t, limit] : config_.type_max_waiting) types.push_back(t);
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());

  for (const auto& type : types) {
    wire::TypeStats ts;
    ts.type = type;
    ts.workers = static_cast<std::uint32_t>(workers_.count(type));
    ts.queued = queue_.depth(type);
    if (auto oldest = queue_.oldest_enqueued_ms(type)) ts.oldest_queued_ms = static_cast<std::uint64_t>(now_ms - *oldest);
    ts.in_flight = in_flight_by_type[type];
    ts.max_waiting = max_waiting_of(type);
    if (const TypeRate* rate = rates_.limit(type)) {
      ts.rate_max = rate->max;
      ts.rate_period_ms = rate->period_ms;
      // A wake-up is set while the window is full and jobs of the type wait for it.
      if (const auto wake = rate_wakeups_.find(type); wake != rate_wakeups_.end() && wake->second > now_ms)
        ts.rate_held = ts.queued;
    }
    if (auto it = type_counters_.find(type); it != type_counters_.end()) {
      ts.done = it->second.done;
      ts.failed = it->second.failed;
      ts.dead = it->second.dead;
      ts.refused = it->second.refused;
      ts.done_per_second = it->second.done_rate.per_second(now_ms);
      ts.delayed = it->second.delayed;
    }
    s.types.push_back(std::move(ts));
  }
  for (const WorkerEntry* w : workers_.all()) {
    s.workers.push_back({printable_id(w->id), w->types, w->next, w->host, w->pid, w->credit,
                         static_cast<std::uint32_t>(w->jobs.size()), w->done,
                         static_cast<std::uint32_t>(w->expired.size())});
  }
  return s;
}

}  // namespace mw::broker
