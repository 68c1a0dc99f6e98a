#include "mw/broker/finished_flows.hpp"

namespace mw::broker {

void FinishedFlows::add(FinishedFlow flow) {
  if (!enabled() || flow.result.size() > max_bytes_) return;
  forget(flow.flow_id);
  bytes_ += flow.result.size();
  order_.push_back(std::move(flow));
  by_id_[order_.back().flow_id] = &order_.back();
  while (by_id_.size() > max_count_ || bytes_ > max_bytes_) drop_oldest();
  // Replaced entries at the front hold memory without counting: let them go.
  while (!order_.empty()) {
    auto it = by_id_.find(order_.front().flow_id);
    if (it != by_id_.end() && it->second == &order_.front()) break;
    order_.pop_front();
  }
}

void FinishedFlows::drop_oldest() {
  const FinishedFlow& oldest = order_.front();
  if (auto it = by_id_.find(oldest.flow_id); it != by_id_.end() && it->second == &oldest) {
    bytes_ -= oldest.result.size();
    by_id_.erase(it);
  }
  order_.pop_front();
}

void FinishedFlows::forget(std::uint64_t flow_id) {
  if (auto it = by_id_.find(flow_id); it != by_id_.end()) {
    // Its entry stays in order_, no longer counted, until it is the oldest.
    bytes_ -= it->second->result.size();
    by_id_.erase(it);
  }
}

const FinishedFlow* FinishedFlows::find(std::uint64_t flow_id) const {
  const auto it = by_id_.find(flow_id);
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace mw::broker
