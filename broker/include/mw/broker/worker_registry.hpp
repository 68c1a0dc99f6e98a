// mw/broker/worker_registry.hpp — the live workers and the jobs each holds.
//
// A worker enters with READY and leaves when it disconnects, goes silent or
// becomes unreachable; the caller requeues the jobs it held. Choosing a
// worker is least-loaded first (fewest jobs in flight relative to credit),
// round-robin among equals, so several workers of one type share the load.
//
// Thread safety: none; the broker is single-threaded.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mw/broker/job.hpp"
#include "mw/ring_deque.hpp"

namespace mw::broker {

struct WorkerEntry {
  std::string id;  // ZeroMQ routing id
  std::vector<std::string> types;
  std::string next;  // static next type from READY; empty = none
  std::string host;
  std::uint32_t pid = 0;
  std::uint32_t credit = 1;
  // Its READY said it understands CANCEL: it is told when a flow it holds
  // a job of is cancelled, and stops that job.
  bool takes_cancel = false;
  // The jobs in flight here, in dispatch order, at most `credit`. The worker
  // holds them itself (not a broker-wide map) so a DONE, which usually
  // answers the oldest, finds its job at the front without a hash lookup.
  RingDeque<Job> jobs;
  std::uint64_t done = 0;
  // Set when a send to it would block (its pipe is full); cleared by any
  // message from it. A paused worker gets no new jobs.
  bool paused = false;
  // The runs of jobs taken back from it when their lease expired: it is
  // presumably still running them, so each keeps a credit slot until it
  // answers for it (a stale DONE/FAIL) or reconnects, and a cancel of
  // their flow tells it to stop them.
  struct ExpiredRun {
    std::uint64_t job_id = 0;
    std::uint64_t flow_id = 0;
  };
  std::vector<ExpiredRun> expired;
  // The latest PROGRESS of each held job that sent one: shown by $flows
  // while the job is here, gone with it.
  struct Progress {
    std::string value;  // msgpack
    // When this run's progress was last published on $mw.progress (steady
    // ms), and whether `value` is newer: the broker publishes a job's at
    // most every kProgressPublishEveryMs, whatever its worker sends.
    std::int64_t published_ms = std::numeric_limits<std::int64_t>::min() / 2;
    bool unpublished = false;
  };
  std::unordered_map<std::uint64_t, Progress> progress;

  std::size_t load() const noexcept { return jobs.size() + expired.size(); }
  // The job of that id it holds, or nullptr.
  Job* held(std::uint64_t job_id) noexcept {
    const auto it = std::find_if(jobs.begin(), jobs.end(), [&](const Job& j) { return j.id == job_id; });
    return it == jobs.end() ? nullptr : &*it;
  }
  bool has_free_credit() const noexcept { return !paused && load() < credit; }
  // A stale answer came: if it is for a run whose lease expired here, that
  // run's slot is free again. (Every attempt of a job has the job's id.)
  void answered_expired(std::uint64_t job_id) noexcept {
    const auto it = std::find_if(expired.begin(), expired.end(), [&](const ExpiredRun& r) { return r.job_id == job_id; });
    if (it != expired.end()) expired.erase(it);
  }
};

class WorkerRegistry {
 public:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  WorkerRegistry() = default;
  // Not copied or moved: it remembers pointers into its own maps.
  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // Registers or re-registers `entry.id`. A re-registration keeps the jobs
  // already in flight. Returns the stored entry.
  WorkerEntry& upsert(WorkerEntry entry);

  // Removes a worker and returns it (with the ids of its jobs in flight).
  [[nodiscard]] std::optional<WorkerEntry> remove(std::string_view id);

  WorkerEntry* find(std::string_view id) noexcept;

  // The least-loaded worker of `type` with free credit; nullptr if none.
  WorkerEntry* least_loaded(std::string_view type) noexcept;

  std::size_t count(std::string_view type) const noexcept;
  std::size_t size() const noexcept { return by_id_.size(); }

  // Every worker, in registration order of their ids' first READY.
  std::vector<const WorkerEntry*> all() const;

  // Every type at least one worker serves.
  std::vector<std::string> types() const;

 private:
  struct TypeIndex {
    std::vector<WorkerEntry*> workers;
    std::size_t cursor = 0;  // round-robin start among equally loaded workers
  };
  void unindex(WorkerEntry& entry);
  void forget_recent() noexcept { recent_worker_ = nullptr, recent_type_ = nullptr; }

  std::unordered_map<std::string, std::unique_ptr<WorkerEntry>, Hash, std::equal_to<>> by_id_;
  std::unordered_map<std::string, TypeIndex, Hash, std::equal_to<>> by_type_;
  // The last worker and type looked up. A BATCH of DONEs asks for the same
  // worker and type once per DONE, dispatch again per job; comparing a few
  // bytes is cheaper than hashing them each time. Both point into nodes of
  // the maps above (which do not move) and are forgotten when one goes.
  WorkerEntry* recent_worker_ = nullptr;
  std::pair<const std::string, TypeIndex>* recent_type_ = nullptr;
};

}  // namespace mw::broker
