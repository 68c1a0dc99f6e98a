#include "mw/broker/finished_flows.hpp"

#include <utility>

namespace mw::broker {

namespace {

// A result buffer this much larger than what it holds is given back rather
// than kept for reuse: one large result must not pin its memory in a slot.
constexpr std::size_t kReuseSlackBytes = 4096;

void release_if_oversized(std::string& s) {
  if (s.capacity() > s.size() * 2 + kReuseSlackBytes) std::string().swap(s);
}

}  // namespace

FinishedFlow& FinishedFlows::make_room(std::uint64_t bytes) {
  while (size_ > 0 && (size_ >= max_count_ || bytes_ + bytes > max_bytes_)) drop_oldest();
  if (size_ == ring_.size()) {
    // Every slot is taken and fewer than max_count_ exist (else the loop
    // made room): add one just after the newest entry.
    if (oldest_ == 0) {
      ring_.emplace_back();
    } else {
      ring_.emplace(ring_.begin() + static_cast<std::ptrdiff_t>(oldest_));
      ++oldest_;
    }
  }
  FinishedFlow& entry = ring_[slot(size_)];
  ++size_;
  return entry;
}

FinishedFlow& FinishedFlows::add(std::uint64_t flow_id, std::string_view outcome, std::string_view error,
                                 std::string_view result) {
  FinishedFlow& entry = make_room(error.size() + result.size());
  entry.flow_id = flow_id;
  entry.outcome = outcome;
  entry.result.assign(result);
  entry.error.assign(error);
  release_if_oversized(entry.result);
  release_if_oversized(entry.error);
  bytes_ += entry.bytes();
  return entry;
}

void FinishedFlows::add(FinishedFlow&& ended) {
  FinishedFlow& entry = make_room(ended.bytes());
  entry = std::move(ended);
  bytes_ += entry.bytes();
}

void FinishedFlows::drop_oldest() {
  FinishedFlow& oldest = ring_[oldest_];
  bytes_ -= oldest.bytes();
  oldest.flow_id = 0;
  oldest.result.clear();
  oldest.error.clear();
  release_if_oversized(oldest.result);
  release_if_oversized(oldest.error);
  oldest_ = (oldest_ + 1) % ring_.size();
  --size_;
}

void FinishedFlows::forget(std::uint64_t flow_id) {
  for (std::size_t i = 0; i < size_; ++i) {
    FinishedFlow& entry = ring_[slot(i)];
    if (entry.flow_id != flow_id) continue;
    // The slot stays, empty, until it is the oldest.
    bytes_ -= entry.bytes();
    entry.flow_id = 0;
    entry.result.clear();
    entry.error.clear();
    return;
  }
}

const FinishedFlow* FinishedFlows::find(std::uint64_t flow_id) const {
  if (flow_id == 0) return nullptr;
  for (std::size_t i = size_; i-- > 0;) {
    const FinishedFlow& entry = ring_[slot(i)];
    if (entry.flow_id == flow_id) return &entry;
  }
  return nullptr;
}

}  // namespace mw::broker
