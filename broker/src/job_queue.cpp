#include "mw/broker/job_queue.hpp"

#include <algorithm>

namespace mw::broker {

std::deque<Job>& MemoryJobQueue::queue_for(const std::string& type) {
  if (auto it = queues_.find(type); it != queues_.end()) return it->second;
  return queues_.emplace(type, std::deque<Job>{}).first->second;
}

void MemoryJobQueue::push_back(Job job) {
  auto& q = queue_for(job.type);
  q.push_back(std::move(job));
}

void MemoryJobQueue::push_front(Job job) {
  auto& q = queue_for(job.type);
  q.push_front(std::move(job));
}

std::optional<Job> MemoryJobQueue::pop(std::string_view type) {
  auto it = queues_.find(type);
  if (it == queues_.end() || it->second.empty()) return std::nullopt;
  Job job = std::move(it->second.front());
  it->second.pop_front();
  return job;
}

std::size_t MemoryJobQueue::depth(std::string_view type) const {
  auto it = queues_.find(type);
  return it == queues_.end() ? 0 : it->second.size();
}

std::optional<std::int64_t> MemoryJobQueue::oldest_enqueued_ms(std::string_view type) const {
  auto it = queues_.find(type);
  if (it == queues_.end() || it->second.empty()) return std::nullopt;
  // Requeued jobs at the front may be older or newer than the back's, so
  // look at both ends; within the pushed-back run the order is by time.
  return std::min(it->second.front().enqueued_ms, it->second.back().enqueued_ms);
}

std::vector<std::string> MemoryJobQueue::types() const {
  std::vector<std::string> out;
  out.reserve(queues_.size());
  for (const auto& [type, q] : queues_) out.push_back(type);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace mw::broker
