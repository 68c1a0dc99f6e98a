// mw/broker/job_queue.hpp — where jobs wait for a worker of their type.
//
// The broker core only talks to this interface, so a durable store can back
// the queues without the core changing. Ordering contract, per type: a job
// of higher priority comes out before any of lower priority; within one
// priority, jobs come out in the order they were pushed to the back, except
// that a job pushed to the front (handed back by a lost worker) comes out
// first.
//
// Thread safety: none; the broker is single-threaded.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mw/broker/job.hpp"
#include "mw/ring_deque.hpp"

namespace mw::broker {

// A waiting job as JobQueue::for_each() shows it. The views are valid
// until the queue next changes.
struct QueuedJob {
  std::uint64_t id = 0;
  std::uint64_t flow_id = 0;
  std::string_view type;
  std::uint32_t attempts = 0;
  std::uint32_t max_attempts = 0;
  std::int32_t priority = 0;
  std::uint32_t stage = 0;
  std::int64_t enqueued_ms = 0;
  std::int64_t submitted_at = 0;
  std::string_view payload;  // msgpack
  std::string_view entity;
  std::string_view key;
  std::string_view reply_to;  // the submitter that waits for the RESULT; empty: none

  static QueuedJob of(const Job& job) noexcept {
    return QueuedJob{job.id, job.flow_id, job.type, job.attempts, job.max_attempts, job.priority, job.stage, job.enqueued_ms,
                     job.submitted_at, std::string_view(job.payload.data<char>(), job.payload.size()), job.entity,
                     job.key, job.reply_to};
  }
};

class JobQueue {
 public:
  virtual ~JobQueue() = default;

  // A new job, or one whose retry delay has passed.
  virtual void push_back(Job job) = 0;

  // A job handed back by a worker that died or failed to receive it.
  virtual void push_front(Job job) = 0;

  // Removes and returns the next job of `type`; nullopt when none waits.
  [[nodiscard]] virtual std::optional<Job> pop(std::string_view type) = 0;

  virtual std::size_t depth(std::string_view type) const = 0;

  // Jobs waiting, of every type, and the bytes of their payloads: what
  // the broker's --max-waiting limits are checked against.
  virtual std::size_t size() const = 0;
  virtual std::uint64_t payload_bytes() const = 0;

  // enqueued_ms of the job that has waited longest in `type`; nullopt if empty.
  [[nodiscard]] virtual std::optional<std::int64_t> oldest_enqueued_ms(std::string_view type) const = 0;

  // Every type that has ever had a job queued (for status).
  virtual std::vector<std::string> types() const = 0;

  // Shows the waiting jobs of `type` (every type when empty, by name), each
  // type's in the order pop() would give them, until `visit` returns
  // false. O(jobs): for people looking at a queue, not for the hot path.
  virtual void for_each(std::string_view type, const std::function<bool(const QueuedJob&)>& visit) const = 0;

  // Removes the waiting job of flow `flow_id` from wherever it is in its
  // queue (a cancel); nullopt when no job of that flow waits. O(jobs).
  [[nodiscard]] virtual std::optional<Job> take_flow(std::uint64_t flow_id) = 0;
};

// Queues held in memory: the store of `--store :memory:`.
//
// A job waits in one of two forms. Up to kMaxHotJobs waiting jobs of
// priority 0 (all types together) stay as they are, while no packed job of
// their type is ahead of them, so that the usual short queue behind a busy
// worker costs no copying; the others are packed (their payload copied
// into an exact-size block, rare fields out of line), so that a backlog of
// millions stays small. Jobs pushed to the front (handed back by workers,
// which held them unpacked) stay as they are beyond the budget.
class MemoryJobQueue final : public JobQueue {
 public:
  static constexpr std::size_t kMaxHotJobs = 1024;
  // The slots a type's unpacked lane keeps when it drains: enough for the
  // usual short queue to come and go without allocating, while a burst's
  // (up to kMaxHotJobs, more with handed-back jobs) are given back.
  static constexpr std::size_t kKeptHotSlots = 64;

  MemoryJobQueue() = default;
  // Not copied or moved: it remembers a pointer into its own map.
  MemoryJobQueue(const MemoryJobQueue&) = delete;
  MemoryJobQueue& operator=(const MemoryJobQueue&) = delete;

  void push_back(Job job) override;
  void push_front(Job job) override;
  [[nodiscard]] std::optional<Job> pop(std::string_view type) override;
  std::size_t depth(std::string_view type) const override;
  std::size_t size() const override { return size_; }
  std::uint64_t payload_bytes() const override { return payload_bytes_; }
  [[nodiscard]] std::optional<std::int64_t> oldest_enqueued_ms(std::string_view type) const override;
  std::vector<std::string> types() const override;
  void for_each(std::string_view type, const std::function<bool(const QueuedJob&)>& visit) const override;
  [[nodiscard]] std::optional<Job> take_flow(std::uint64_t flow_id) override;

 private:
  // Heterogeneous lookup so that hot-path lookups by string_view do not allocate.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  // A queued job packed for a long wait: a backlog of a million 100-byte
  // jobs is held in ~250 bytes each. Its type is the queue's; the payload is copied
  // out of ZeroMQ's receive buffer (which would otherwise stay pinned, with
  // its neighbours, for as long as the job waits) into an exact-size block
  // that becomes the JOB's payload frame without another copy.
  struct Packed {
    std::uint64_t id = 0;
    std::uint64_t flow_id = 0;
    std::uint32_t attempts = 0;
    std::uint32_t max_attempts = 0;
    std::int16_t priority = 0;  // -1000..1000
    std::uint16_t stage = 0;    // < BrokerConfig::kMaxStagesLimit
    std::uint32_t payload_size = 0;
    std::int64_t enqueued_ms = 0;
    std::int64_t submitted_at = 0;
    std::uint64_t lease_ms = 0;
    // What many queued jobs do not have: a waiting submitter, an entity,
    // a key. Kept apart so that a backlog of plain jobs does not pay for
    // three empty strings each.
    struct Rare {
      std::string reply_to, entity, key;
    };
    std::unique_ptr<Rare> rare;
    char* payload = nullptr;     // malloc'ed; ownership passes to the JOB frame

    Packed() = default;
    Packed(Packed&& o) noexcept;
    Packed& operator=(Packed&& o) noexcept;
    ~Packed();
  };
  static Packed pack(Job job);
  static Job unpack(Packed p, const std::string& type);

  // Priority 0, by far the most common, has its own lane so that the hot
  // path never touches the map. That lane is `hot` (unpacked jobs) followed
  // by `normal` (packed ones): a job joins `hot` only while `normal` is
  // empty, so the order of the lane is kept.
  struct TypeQueue {
    RingDeque<Job> hot;
    std::deque<Packed> normal;
    std::map<std::int32_t, std::deque<Packed>, std::greater<>> ranked;  // priority != 0, highest first
    std::size_t size = 0;
    std::deque<Packed>& lane(std::int32_t priority);
  };
  TypeQueue& queue_for(const std::string& type);
  // The type's queue, or nullptr. Remembers the last one found: a turn asks
  // for one type job after job, and comparing it is cheaper than hashing.
  // So const members write to the object: fine for the one broker thread
  // that owns it (the queue is not thread-safe in any case).
  std::pair<const std::string, TypeQueue>* find_queue(std::string_view type) const;
  // Queues are never erased (a type that had jobs keeps its empty queue),
  // so nodes, and the pointer to the last one found, stay valid.
  mutable std::unordered_map<std::string, TypeQueue, Hash, std::equal_to<>> queues_;
  mutable std::pair<const std::string, TypeQueue>* recent_ = nullptr;
  std::size_t hot_jobs_ = 0;  // in every TypeQueue::hot
  std::size_t size_ = 0;       // in every TypeQueue
  std::uint64_t payload_bytes_ = 0;
};

}  // namespace mw::broker
