// mw/broker/finished_flows.hpp — how recent flows ended, kept to be asked for later.
//
// When a flow ends (done, dead or cancelled) its RESULT goes to a submitter
// that waits, if any; the outcome is also kept here so that it can be asked
// for afterwards by flow id: a WAIT from a client that lost its connection
// (the broker restarted) or from one that never submitted it
// (`mw result FLOW --wait`), and a `get` on the $flows endpoint
// (`mw result FLOW`). Like BullMQ's removeOnComplete {count}, only the
// newest outcomes are kept: at most `max_count` of them, holding at most
// `max_bytes` of results between them; the oldest go first.
//
//   FinishedFlows kept(10'000, 64 << 20);
//   kept.add({.flow_id = 7, .outcome = kOutcomeDone, ..., .result = std::move(frame)});
//   if (const FinishedFlow* f = kept.find(7)) send(f->result);
//
// Kept in memory only: a restart forgets them, whatever the store.
//
// Thread safety: none; the broker thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

#include <zmq.hpp>

namespace mw::broker {

struct FinishedFlow {
  std::uint64_t flow_id = 0;
  std::string_view outcome;    // kOutcomeDone, kOutcomeDead or kOutcomeCancelled (static strings)
  std::string error;           // empty when done
  std::string last_type;       // the stage that finished, died or was cancelled
  std::uint32_t attempts = 0;  // deliveries of that stage
  std::int64_t submitted_at = 0;  // wall clock ms
  std::int64_t finished_at = 0;   // wall clock ms
  std::string entity;          // "endpoint/id" or empty
  std::string key;             // the flow's idempotency key, or empty
  // The RESULT's payload: the final result when done, else the input of
  // the last stage. Shares the frame the RESULT was sent with.
  zmq::message_t result;
};

class FinishedFlows {
 public:
  // 0 for either keeps nothing.
  FinishedFlows(std::uint64_t max_count, std::uint64_t max_bytes) : max_count_(max_count), max_bytes_(max_bytes) {}

  // Keeps `flow`, dropping the oldest kept ones until both limits hold. A
  // result larger than max_bytes on its own is not kept. Replaces an entry
  // of the same flow id.
  void add(FinishedFlow flow);

  // Drops the outcome of `flow_id`, if kept (a flow whose SUBMIT was
  // undone by a failed commit).
  void forget(std::uint64_t flow_id);

  // The kept outcome of `flow_id`, or nullptr. Valid until the next add().
  const FinishedFlow* find(std::uint64_t flow_id) const;

  std::size_t size() const noexcept { return by_id_.size(); }
  std::uint64_t bytes() const noexcept { return bytes_; }
  bool enabled() const noexcept { return max_count_ > 0 && max_bytes_ > 0; }

 private:
  void drop_oldest();

  std::uint64_t max_count_;
  std::uint64_t max_bytes_;
  std::uint64_t bytes_ = 0;        // results of the entries in by_id_
  std::deque<FinishedFlow> order_;  // oldest first; may hold replaced entries
  std::unordered_map<std::uint64_t, const FinishedFlow*> by_id_;  // deque elements do not move
};

}  // namespace mw::broker
