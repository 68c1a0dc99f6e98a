#include "mw/broker/job_queue.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace mw::broker {

std::deque<MemoryJobQueue::Packed>& MemoryJobQueue::TypeQueue::lane(std::int32_t priority) {
  return priority == 0 ? normal : ranked[priority];
}

std::pair<const std::string, MemoryJobQueue::TypeQueue>* MemoryJobQueue::find_queue(std::string_view type) const {
  if (recent_ && recent_->first == type) return recent_;
  const auto it = queues_.find(type);
  return it == queues_.end() ? nullptr : (recent_ = &*it);
}

MemoryJobQueue::TypeQueue& MemoryJobQueue::queue_for(const std::string& type) {
  if (auto* found = find_queue(type)) return found->second;
  return (recent_ = &*queues_.emplace(type, TypeQueue{}).first)->second;
}

MemoryJobQueue::Packed::Packed(Packed&& o) noexcept
    : id(o.id), flow_id(o.flow_id), attempts(o.attempts), max_attempts(o.max_attempts), priority(o.priority),
      stage(o.stage), payload_size(o.payload_size), enqueued_ms(o.enqueued_ms), submitted_at(o.submitted_at), lease_ms(o.lease_ms),
      rare(std::move(o.rare)), payload(std::exchange(o.payload, nullptr)) {}

MemoryJobQueue::Packed& MemoryJobQueue::Packed::operator=(Packed&& o) noexcept {
  if (this == &o) return *this;
  std::free(payload);
  id = o.id;
  flow_id = o.flow_id;
  attempts = o.attempts;
  max_attempts = o.max_attempts;
  priority = o.priority;
  stage = o.stage;
  payload_size = o.payload_size;
  enqueued_ms = o.enqueued_ms;
  submitted_at = o.submitted_at;
  lease_ms = o.lease_ms;
  rare = std::move(o.rare);
  payload = std::exchange(o.payload, nullptr);
  return *this;
}

MemoryJobQueue::Packed::~Packed() { std::free(payload); }

MemoryJobQueue::Packed MemoryJobQueue::pack(Job job) {
  Packed p;
  p.id = job.id;
  p.flow_id = job.flow_id;
  p.attempts = job.attempts;
  p.max_attempts = job.max_attempts;
  p.priority = static_cast<std::int16_t>(job.priority);
  p.stage = static_cast<std::uint16_t>(job.stage);
  p.enqueued_ms = job.enqueued_ms;
  p.submitted_at = job.submitted_at;
  p.lease_ms = job.lease_ms;
  if (!job.reply_to.empty() || !job.entity.empty() || !job.key.empty())
    p.rare = std::make_unique<Packed::Rare>(
        Packed::Rare{std::move(job.reply_to), std::move(job.entity), std::move(job.key)});
  p.payload_size = static_cast<std::uint32_t>(job.payload.size());
  p.payload = static_cast<char*>(std::malloc(std::max<std::size_t>(p.payload_size, 1)));
  if (!p.payload) throw std::bad_alloc();
  std::memcpy(p.payload, job.payload.data(), p.payload_size);
  return p;
}

Job MemoryJobQueue::unpack(Packed p, const std::string& type) {
  Job job;
  job.id = p.id;
  job.flow_id = p.flow_id;
  job.type = type;
  job.attempts = p.attempts;
  job.max_attempts = p.max_attempts;
  job.priority = p.priority;
  job.stage = p.stage;
  job.enqueued_ms = p.enqueued_ms;
  job.submitted_at = p.submitted_at;
  job.lease_ms = p.lease_ms;
  if (p.rare) {
    job.reply_to = std::move(p.rare->reply_to);
    job.entity = std::move(p.rare->entity);
    job.key = std::move(p.rare->key);
  }
  // The frame takes the block over; zmq frees it when the JOB has been sent.
  job.payload = zmq::message_t(std::exchange(p.payload, nullptr), p.payload_size,
                               [](void* data, void*) { std::free(data); }, nullptr);
  return job;
}

void MemoryJobQueue::push_back(Job job) {
  auto& q = queue_for(job.type);
  const auto priority = job.priority;
  const std::size_t bytes = job.payload.size();
  if (priority == 0 && q.normal.empty() && hot_jobs_ < kMaxHotJobs) {
    q.hot.push_back(std::move(job));
    ++hot_jobs_;
  } else {
    q.lane(priority).push_back(pack(std::move(job)));
  }
  ++q.size;
  // Counted once it is in: pack() may throw.
  ++size_;
  payload_bytes_ += bytes;
}

void MemoryJobQueue::push_front(Job job) {
  auto& q = queue_for(job.type);
  const auto priority = job.priority;
  const std::size_t bytes = job.payload.size();
  if (priority == 0) {
    // The front of the lane is the front of `hot`. Over the budget only by
    // what lost workers hand back, which they held unpacked anyway.
    q.hot.push_front(std::move(job));
    ++hot_jobs_;
  } else {
    q.lane(priority).push_front(pack(std::move(job)));
  }
  ++q.size;
  ++size_;
  payload_bytes_ += bytes;
}

std::optional<Job> MemoryJobQueue::pop(std::string_view type) {
  auto* it = find_queue(type);
  if (!it || it->second.size == 0) return std::nullopt;
  TypeQueue& q = it->second;
  // Empty ranked lanes are erased as they drain, so begin() is a real lane.
  const bool normal_empty = q.hot.empty() && q.normal.empty();
  const bool ranked_first = !q.ranked.empty() && (q.ranked.begin()->first > 0 || normal_empty);
  if (!ranked_first && !q.hot.empty()) {
    Job job = std::move(q.hot.front());
    q.hot.pop_front();
    q.hot.release_if_empty(kKeptHotSlots);
    --hot_jobs_;
    --q.size;
    --size_;
    payload_bytes_ -= job.payload.size();
    return job;
  }
  std::deque<Packed>* lane = ranked_first ? &q.ranked.begin()->second : &q.normal;
  Job job = unpack(std::move(lane->front()), it->first);
  lane->pop_front();
  --q.size;
  --size_;
  payload_bytes_ -= job.payload.size();
  if (lane->empty() && lane != &q.normal) q.ranked.erase(job.priority);
  return job;
}

std::size_t MemoryJobQueue::depth(std::string_view type) const {
  const auto* it = find_queue(type);
  return it ? it->second.size : 0;
}

std::optional<std::int64_t> MemoryJobQueue::oldest_enqueued_ms(std::string_view type) const {
  auto it = queues_.find(type);
  if (it == queues_.end() || it->second.size == 0) return std::nullopt;
  // Requeued jobs at the front may be older or newer than the back's, so
  // look at both ends of every lane; within a pushed-back run the order is
  // by time.
  std::optional<std::int64_t> oldest;
  auto consider = [&](const auto& lane) {
    if (lane.empty()) return;
    const std::int64_t t = std::min(lane.front().enqueued_ms, lane.back().enqueued_ms);
    if (!oldest || t < *oldest) oldest = t;
  };
  consider(it->second.hot);
  consider(it->second.normal);
  for (const auto& [priority, lane] : it->second.ranked) consider(lane);
  return oldest;
}

std::vector<std::string> MemoryJobQueue::types() const {
  std::vector<std::string> out;
  out.reserve(queues_.size());
  for (const auto& [type, q] : queues_) out.push_back(type);
  std::sort(out.begin(), out.end());
  return out;
}

void MemoryJobQueue::for_each(std::string_view type, const std::function<bool(const QueuedJob&)>& visit) const {
  auto view_packed = [](const Packed& p, std::string_view lane_type) {
    QueuedJob v{p.id,           p.flow_id,       lane_type,
                p.attempts,     p.max_attempts,  p.priority,
                p.stage,        p.enqueued_ms,   p.submitted_at,
                std::string_view(p.payload, p.payload_size), {}, {}, {}};
    if (p.rare) {
      v.entity = p.rare->entity;
      v.key = p.rare->key;
      v.reply_to = p.rare->reply_to;
    }
    return v;
  };
  // In pop() order: ranked lanes above 0, the priority-0 lane (hot, then
  // packed), ranked lanes below 0.
  auto visit_type = [&](const std::string& name, const TypeQueue& q) {
    for (const auto& [priority, lane] : q.ranked) {
      if (priority < 0) break;
      for (const Packed& p : lane)
        if (!visit(view_packed(p, name))) return false;
    }
    for (const Job& job : q.hot)
      if (!visit(QueuedJob::of(job))) return false;
    for (const Packed& p : q.normal)
      if (!visit(view_packed(p, name))) return false;
    for (const auto& [priority, lane] : q.ranked) {
      if (priority > 0) continue;
      for (const Packed& p : lane)
        if (!visit(view_packed(p, name))) return false;
    }
    return true;
  };
  if (!type.empty()) {
    if (const auto it = queues_.find(type); it != queues_.end()) visit_type(it->first, it->second);
    return;
  }
  for (const auto& name : types())
    if (!visit_type(name, queues_.find(name)->second)) return;
}

std::optional<Job> MemoryJobQueue::take_flow(std::uint64_t flow_id) {
  auto taken = [&](TypeQueue& q, Job job) {
    --q.size;
    --size_;
    payload_bytes_ -= job.payload.size();
    return std::optional<Job>(std::move(job));
  };
  auto take_packed = [&](TypeQueue& q, std::deque<Packed>& lane, const std::string& type) -> std::optional<Job> {
    const auto at = std::find_if(lane.begin(), lane.end(), [&](const Packed& p) { return p.flow_id == flow_id; });
    if (at == lane.end()) return std::nullopt;
    Job job = unpack(std::move(*at), type);
    lane.erase(at);
    return taken(q, std::move(job));
  };
  for (auto& [type, q] : queues_) {
    if (q.size == 0) continue;
    if (const auto at = std::find_if(q.hot.begin(), q.hot.end(), [&](const Job& j) { return j.flow_id == flow_id; });
        at != q.hot.end()) {
      Job job = std::move(*at);
      q.hot.erase(at);
      q.hot.release_if_empty(kKeptHotSlots);
      --hot_jobs_;
      return taken(q, std::move(job));
    }
    if (auto job = take_packed(q, q.normal, type)) return job;
    for (auto lane = q.ranked.begin(); lane != q.ranked.end(); ++lane) {
      if (auto job = take_packed(q, lane->second, type)) {
        if (lane->second.empty()) q.ranked.erase(lane);  // pop() relies on no empty ranked lane
        return job;
      }
    }
  }
  return std::nullopt;
}

}  // namespace mw::broker
