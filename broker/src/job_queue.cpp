#include "mw/broker/job_queue.hpp"

#include <algorithm>

namespace mw::broker {

std::deque<Job>& MemoryJobQueue::TypeQueue::lane(std::int32_t priority) {
  return priority == 0 ? normal : ranked[priority];
}

std::deque<Job>* MemoryJobQueue::TypeQueue::next_lane() {
  // Empty ranked lanes are erased as they drain, so begin() is a real lane.
  if (!ranked.empty() && (ranked.begin()->first > 0 || normal.empty())) return &ranked.begin()->second;
  if (!normal.empty()) return &normal;
  return nullptr;
}

MemoryJobQueue::TypeQueue& MemoryJobQueue::queue_for(const std::string& type) {
  if (auto it = queues_.find(type); it != queues_.end()) return it->second;
  return queues_.emplace(type, TypeQueue{}).first->second;
}

void MemoryJobQueue::push_back(Job job) {
  auto& q = queue_for(job.type);
  q.lane(job.priority).push_back(std::move(job));
  ++q.size;
}

void MemoryJobQueue::push_front(Job job) {
  auto& q = queue_for(job.type);
  q.lane(job.priority).push_front(std::move(job));
  ++q.size;
}

std::optional<Job> MemoryJobQueue::pop(std::string_view type) {
  auto it = queues_.find(type);
  if (it == queues_.end() || it->second.size == 0) return std::nullopt;
  TypeQueue& q = it->second;
  std::deque<Job>* lane = q.next_lane();
  Job job = std::move(lane->front());
  lane->pop_front();
  --q.size;
  if (lane->empty() && lane != &q.normal) q.ranked.erase(job.priority);
  return job;
}

std::size_t MemoryJobQueue::depth(std::string_view type) const {
  auto it = queues_.find(type);
  return it == queues_.end() ? 0 : it->second.size;
}

std::optional<std::int64_t> MemoryJobQueue::oldest_enqueued_ms(std::string_view type) const {
  auto it = queues_.find(type);
  if (it == queues_.end() || it->second.size == 0) return std::nullopt;
  // Requeued jobs at the front may be older or newer than the back's, so
  // look at both ends of every lane; within a pushed-back run the order is
  // by time.
  std::optional<std::int64_t> oldest;
  auto consider = [&](const std::deque<Job>& lane) {
    if (lane.empty()) return;
    const std::int64_t t = std::min(lane.front().enqueued_ms, lane.back().enqueued_ms);
    if (!oldest || t < *oldest) oldest = t;
  };
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

}  // namespace mw::broker
