// The $flows endpoint: a look at unfinished flows, and cancelling one; and
// WAIT, which asks for a flow's RESULT by its id.
//
//   get ID     where flow ID is now (queued, delayed or in flight), with its
//              input; or how it ended, if that is kept (FinishedFlows)
//   find       the unfinished flows, optionally of one type and in one state
//   remove ID  cancels flow ID: its job leaves its queue, or, in flight, its
//              worker is told to stop it (CANCEL, when it takes that) and its
//              answer will be dropped; a waiting submitter hears "cancelled"
//
// These scan the queues (O(jobs waiting)): they are for people looking at a
// broker, not for the hot path. docs/PROTOCOL.md §11.5 has the details.
#include <algorithm>
#include <limits>
#include <tuple>

#include "mw/broker/core.hpp"
#include "mw/payload.hpp"

namespace mw::broker {

namespace {

constexpr std::string_view kCancelLogComponent = "broker";
constexpr std::string_view kQueued = "queued", kDelayed = "delayed", kInFlight = "in_flight";
constexpr std::size_t kDefaultFindLimit = 100, kMaxFindLimit = 1000;
constexpr std::string_view kCancelledError = "cancelled";

std::uint64_t flow_id_of(const std::optional<std::string>& id) {
  if (!id) throw Error("$flows needs a flow id for get and remove", ErrorCode::BadRequest);
  return parse_flow_id(*id);
}

// A find result: {"data": [records], "limit": L, "more": whether more matched}.
Json page(Json records, std::size_t limit, bool more) {
  Json p = Json::object();
  p["data"] = std::move(records);
  p["limit"] = limit;
  p["more"] = more;
  return p;
}

Error not_known(std::uint64_t flow, bool results_kept) {
  return Error("flow " + std::to_string(flow) + " is not known here: it was never submitted to this broker, or " +
                   (results_kept ? "it ended longer ago than the outcomes it keeps reach (mw-broker --keep-results, "
                                   "--keep-results-mb), or before a restart of a broker on :memory:"
                                 : "it ended (this broker keeps no outcomes: --keep-results or --keep-results-mb is 0)"),
               ErrorCode::NotFound);
}

}  // namespace

void BrokerCore::on_wait(const std::string& peer, const zmq::message_t& header) {
  const auto wait = wire::decode_wait(header);
  if (const FinishedFlow* ended = finished_.find(wait.flow_id)) {
    zmq::message_t result(ended->result.data(), ended->result.size());
    send_after_commit(peer, Command::Result,
                      wire::encode(wire::Result{ended->flow_id, ended->outcome, ended->error, ended->last_type,
                                                ended->attempts}),
                      &result);
    return;
  }
  if (!flow_unfinished(wait.flow_id)) {
    reply_error(peer, ErrorCode::NotFound, not_known(wait.flow_id, finished_.enabled()).what(), wait.request_id);
    return;
  }
  add_waiter(wait.flow_id, peer);
}

void BrokerCore::add_waiter(std::uint64_t flow_id, const std::string& peer) {
  auto [first, last] = extra_waiters_.equal_range(flow_id);
  for (auto it = first; it != last; ++it)
    if (it->second == peer) return;
  extra_waiters_.emplace(flow_id, peer);
}

bool BrokerCore::flow_unfinished(std::uint64_t flow_id) const {
  if (cancelled_flows_.contains(flow_id)) return false;
  // Recovered flows are known without a scan; others are looked for as
  // `$flows get` looks (a record without its payload is cheap to build).
  return recovered_flows_.contains(flow_id) || flow_record(flow_id, false).has_value();
}

Json BrokerCore::finished_flow_record(const FinishedFlow& flow) const {
  Json r = Json::object();
  r["id"] = flow.flow_id;
  r["state"] = flow.outcome;
  r["type"] = flow.last_type;
  r["attempts"] = flow.attempts;
  r["submitted_at"] = flow.submitted_at;
  r["finished_at"] = flow.finished_at;
  if (!flow.error.empty()) r["error"] = flow.error;
  if (!flow.entity.empty()) r["entity"] = flow.entity;
  if (!flow.key.empty()) r["key"] = flow.key;
  // Done: the final result. Dead or cancelled: the input of the stage it was at.
  Payload::put_json(r, flow.outcome == kOutcomeDone ? "result" : "payload", flow.result);
  return r;
}

std::string BrokerCore::call_flows(const HookContext& call) {
  Json result;
  switch (call.method) {
    case Method::Get: {
      const auto flow = flow_id_of(call.id);
      if (auto record = flow_record(flow, true)) {
        result = std::move(*record);
      } else if (const FinishedFlow* ended = finished_.find(flow)) {
        result = finished_flow_record(*ended);
      } else {
        throw not_known(flow, finished_.enabled());
      }
      break;
    }
    case Method::Find:
      if (call.id) throw Error("$flows find takes a query, not an id", ErrorCode::BadRequest);
      result = find_flows(call.query);
      break;
    case Method::Remove:
      result = cancel_flow_on_request(flow_id_of(call.id));
      break;
    default:
      throw Error("$flows serves get, find and remove (cancel)", ErrorCode::BadRequest);
  }
  return Payload::from_json(result).take_bytes();
}

Json BrokerCore::flow_record(const QueuedJob& job, std::string_view state, const WorkerEntry* worker,
                             bool with_payload) const {
  Json r = Json::object();
  r["id"] = job.flow_id;
  r["state"] = state;
  r["type"] = job.type;
  r["job"] = job.id;
  r["attempts"] = job.attempts;
  r["max_attempts"] = job.max_attempts;
  r["priority"] = job.priority;
  r["stage"] = job.stage + 1;
  r["submitted_at"] = job.submitted_at;
  r["payload_bytes"] = job.payload.size();
  // Only while that client is known here: one that went (Ctrl-C, missed
  // heartbeats) waits no more, though the job still names it.
  r["submitter_waits"] = (!job.reply_to.empty() && peers_.contains(job.reply_to)) || extra_waiters_.contains(job.flow_id);
  if (!job.entity.empty()) r["entity"] = job.entity;
  if (!job.key.empty()) r["key"] = job.key;
  if (worker) {
    r["worker"] = Json{{"host", worker->host}, {"pid", worker->pid}};
    if (const auto progress = worker->progress.find(job.id); progress != worker->progress.end())
      Payload::put_json(r, "progress", progress->second.value);
  }
  if (with_payload) Payload::put_json(r, "payload", job.payload);
  return r;
}

std::optional<Json> BrokerCore::flow_record(std::uint64_t flow_id, bool with_payload) const {
  // A cancelled flow's job may sit in a queue until popped (a SUBMIT whose
  // commit failed): it is not shown.
  if (cancelled_flows_.contains(flow_id)) return std::nullopt;
  // The short lists first: the queues may hold millions.
  for (const WorkerEntry* worker : workers_.all())
    for (const Job& job : worker->jobs)
      if (job.flow_id == flow_id) return flow_record(QueuedJob::of(job), kInFlight, worker, with_payload);
  for (const auto& [id, job] : delayed_)
    if (job.flow_id == flow_id) return delayed_flow_record(job, with_payload);
  std::optional<Json> found;
  queue_.for_each({}, [&](const QueuedJob& job) {
    if (job.flow_id != flow_id) return true;
    found = flow_record(job, kQueued, nullptr, with_payload);
    return false;
  });
  return found;
}

Json BrokerCore::delayed_flow_record(const Job& job, bool with_payload) const {
  Json r = flow_record(QueuedJob::of(job), kDelayed, nullptr, with_payload);
  r["due_at"] = wall_clock_() + std::max<std::int64_t>(0, job.due_ms - now_ms_);
  return r;
}

Json BrokerCore::find_flows(const Json& query) const {
  std::string type, state;
  std::size_t limit = kDefaultFindLimit;
  if (!query.is_null() && !query.is_object())
    throw Error("$flows find takes a query map {type, state, $limit}", ErrorCode::BadRequest);
  if (query.is_object()) {
    for (const auto& [key, value] : query.items()) {
      if (key == "type" && value.is_string()) {
        type = value.get<std::string>();
      } else if (key == "state" && value.is_string() &&
                 (value == kQueued || value == kDelayed || value == kInFlight)) {
        state = value.get<std::string>();
      } else if (key == "$limit" && value.is_number_unsigned() && value.get<std::uint64_t>() > 0) {
        limit = std::min<std::size_t>(value.get<std::uint64_t>(), kMaxFindLimit);
      } else {
        throw Error("$flows find takes type (a string), state (queued, delayed or in_flight) and $limit (1 to " +
                        std::to_string(kMaxFindLimit) + "); got '" + key +
                        "': " + value.dump(-1, ' ', false, Json::error_handler_t::replace),
                    ErrorCode::BadRequest);
      }
    }
  }
  Json found = Json::array();
  bool more = false;  // one past the limit matched
  auto full = [&] {
    if (found.size() < limit) return false;
    more = true;
    return true;
  };
  auto wanted = [&](std::string_view job_type, std::string_view job_state) {
    return (type.empty() || job_type == type) && (state.empty() || job_state == state);
  };
  // In the order they run: in flight, then waiting in each queue, then delayed.
  for (const WorkerEntry* worker : workers_.all()) {
    for (const Job& job : worker->jobs) {
      if (!wanted(job.type, kInFlight) || cancelled_flows_.contains(job.flow_id)) continue;
      if (full()) return page(std::move(found), limit, more);
      found.push_back(flow_record(QueuedJob::of(job), kInFlight, worker, false));
    }
  }
  if (state.empty() || state == kQueued) {
    queue_.for_each(type, [&](const QueuedJob& job) {
      if (cancelled_flows_.contains(job.flow_id)) return true;
      if (full()) return false;
      found.push_back(flow_record(job, kQueued, nullptr, false));
      return true;
    });
  }
  if (state.empty() || state == kDelayed) {
    std::vector<const Job*> delayed;
    for (const auto& [id, job] : delayed_)
      if (wanted(job.type, kDelayed)) delayed.push_back(&job);
    // Soonest due first; only what can be shown (and one more, for `more`) needs an order.
    const std::size_t shown = std::min(delayed.size(), limit - found.size() + 1);
    std::partial_sort(delayed.begin(), delayed.begin() + static_cast<std::ptrdiff_t>(shown), delayed.end(),
                      [](const Job* a, const Job* b) { return std::tie(a->due_ms, a->id) < std::tie(b->due_ms, b->id); });
    for (const Job* job : delayed) {
      if (full()) break;
      found.push_back(delayed_flow_record(*job, false));
    }
  }
  return page(std::move(found), limit, more);
}

Json BrokerCore::cancel_flow_on_request(std::uint64_t flow_id) {
  // Ended, and its outcome kept: say how.
  if (const FinishedFlow* ended = finished_.find(flow_id))
    throw Error("flow " + std::to_string(flow_id) + " has ended already (" + std::string(ended->outcome) +
                    "): there is nothing to cancel (mw result " + std::to_string(flow_id) + " shows how it ended)",
                ErrorCode::Conflict);
  if (cancelled_flows_.contains(flow_id))
    throw Error("flow " + std::to_string(flow_id) + " was cancelled already", ErrorCode::Conflict);
  Job* job = nullptr;        // the flow's live job, wherever it is
  std::optional<Job> taken;  // when it was taken out of delayed or a queue
  std::string_view was;
  const WorkerEntry* holder = nullptr;
  // In flight: the worker keeps the job until it answers, and its answer is
  // dropped when it comes (drop_if_cancelled), as is the job if it is handed
  // back. A worker that takes CANCEL is told, so it stops the handler (and
  // its credit comes back soon) instead of finishing work nobody wants.
  // The short lists first: the queues may hold millions.
  for (const WorkerEntry* entry : workers_.all()) {
    for (Job& held : workers_.find(entry->id)->jobs) {
      if (held.flow_id != flow_id) continue;
      cancelled_flows_.insert(flow_id);
      job = &held;
      holder = entry;
      was = kInFlight;
      break;
    }
    if (job) break;
  }
  if (!job) {
    const auto it = std::find_if(delayed_.begin(), delayed_.end(),
                                 [&](const auto& entry) { return entry.second.flow_id == flow_id; });
    if (it != delayed_.end()) {
      taken = take_delayed(it->first);  // its timer finds nothing and passes
      was = kDelayed;
    } else {
      taken = queue_.take_flow(flow_id);
      was = kQueued;
    }
    if (!taken) throw not_known(flow_id, finished_.enabled());
    job = &*taken;
  }

  // Best effort: if it does not arrive, the handler runs on and its answer
  // is dropped all the same.
  const bool stop_sent = holder && holder->takes_cancel &&
                         send(holder->id, Command::Cancel, wire::encode(wire::CancelJob{job->id})) == SendResult::Sent;
  // Runs of the flow's jobs (this stage's or an earlier one's) whose lease
  // expired presumably go on on their old workers: those that take CANCEL
  // are told to stop them too, once per job (a worker stops every run of it).
  std::size_t expired_runs_told = 0;
  for (const WorkerEntry* entry : workers_.all()) {
    if (!entry->takes_cancel) continue;
    std::vector<std::uint64_t> told;
    if (entry == holder) told.push_back(job->id);  // told above
    for (const auto& run : entry->expired) {
      if (run.flow_id != flow_id || std::find(told.begin(), told.end(), run.job_id) != told.end()) continue;
      told.push_back(run.job_id);
      if (send(entry->id, Command::Cancel, wire::encode(wire::CancelJob{run.job_id})) == SendResult::Sent)
        ++expired_runs_told;
    }
  }
  ++counters_.flows_cancelled;
  cancelled_this_turn_.push_back(flow_id);
  if (journaling()) journal_->remove(flow_id);  // a restart must not bring it back
  release_key(*job);
  Json record = was == kDelayed ? delayed_flow_record(*job, false) : flow_record(QueuedJob::of(*job), was, holder, false);
  record["state"] = "cancelled";
  record["was"] = was;
  if (holder) record["stop_sent"] = stop_sent;
  if (expired_runs_told) record["expired_runs_told"] = expired_runs_told;
  log(LogLevel::info, kCancelLogComponent,
      "flow " + std::to_string(flow_id) + " (" + job->type + ", " + std::string(was) + ") cancelled on request" +
          (expired_runs_told ? "; " + std::to_string(expired_runs_told) + " run(s) past their lease told to stop" : ""));
  // A value of the job's held back by the publish throttle goes first:
  // listeners hear nothing of a flow after its end.
  if (holder) end_progress(*workers_.find(holder->id), *job);
  if (transport_.has_subscribers("$mw.flow.cancelled"))
    publish_event("$mw.flow.cancelled", flow_id, job->type, kCancelledError, &job->payload);
  zmq::message_t input;  // shares the payload's buffer: a job in flight keeps its own reference
  input.copy(job->payload);
  send_results(*job, kOutcomeCancelled, kCancelledError, input);
  job->reply_to.clear();  // told now; a job in flight never again
  return record;
}

}  // namespace mw::broker
