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
//   FinishedFlow& f = kept.add(7, kOutcomeDone, result_bytes);  // then fill in the rest
//   if (const FinishedFlow* f = kept.find(7)) send(f->result);
//
// Every flow that ends passes through add(), so it is built for that: a
// ring of reused entries (no allocation once the ring is full, unless a
// field grows), and results copied out of the frames they arrived in (a
// kept frame would pin the whole receive buffer it shares). find() scans
// from the newest entry: it serves people and reconnecting clients, not the
// hot path (10 000 entries take a few µs).
//
// With a durable store the outcomes are also written to it (the JobJournal,
// in the turn the flow ends) and read back at start, so a restart forgets
// none of them; on ":memory:" they live here only.
//
// Thread safety: none; the broker thread owns it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mw::broker {

struct FinishedFlow {
  std::uint64_t flow_id = 0;   // 0: an empty or forgotten entry
  std::string_view outcome;    // kOutcomeDone, kOutcomeDead or kOutcomeCancelled (static strings)
  std::string error;           // empty when done
  std::string last_type;       // the stage that finished, died or was cancelled
  std::uint32_t attempts = 0;  // deliveries of that stage
  std::int64_t submitted_at = 0;  // wall clock ms
  std::int64_t finished_at = 0;   // wall clock ms
  std::string entity;          // "endpoint/id" or empty
  std::string key;             // the flow's idempotency key, or empty
  // The RESULT's payload (msgpack): the final result when done, else the
  // input of the last stage.
  std::string result;

  // What counts against FinishedFlows' byte limit: the result and the error.
  std::uint64_t bytes() const noexcept { return result.size() + error.size(); }
};

class FinishedFlows {
 public:
  // 0 for either keeps nothing.
  FinishedFlows(std::uint64_t max_count, std::uint64_t max_bytes) : max_count_(max_count), max_bytes_(max_bytes) {}

  bool enabled() const noexcept { return max_count_ > 0 && max_bytes_ > 0; }
  // Whether an outcome whose result and error take `bytes` can be kept at all.
  bool fits(std::size_t bytes) const noexcept { return enabled() && bytes <= max_bytes_; }

  // Keeps the outcome of flow `flow_id` with its error and result (both
  // copied; both count against max_bytes), dropping the oldest kept ones
  // until both limits hold, and returns its entry for the caller to fill in
  // the other fields (they hold what the slot held before: assign every
  // one). REQUIRES: fits(error.size() + result.size()). Flow ids are unique
  // per broker run, so nothing is replaced.
  FinishedFlow& add(std::uint64_t flow_id, std::string_view outcome, std::string_view error, std::string_view result);
  // Keeps an outcome whole, as read back from the store.
  // REQUIRES: fits(ended.bytes()).
  void add(FinishedFlow&& ended);

  // Drops the outcome of `flow_id`, if kept (a flow whose SUBMIT was
  // undone by a failed commit).
  void forget(std::uint64_t flow_id);

  // The kept outcome of `flow_id`, or nullptr. Valid until the next add().
  const FinishedFlow* find(std::uint64_t flow_id) const;

  std::size_t size() const noexcept { return size_; }
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  std::size_t slot(std::size_t nth_oldest) const noexcept { return (oldest_ + nth_oldest) % ring_.size(); }
  void drop_oldest();
  // Drops the oldest until an outcome of `bytes` fits both limits, and
  // returns the slot it goes in (counted as kept; its bytes not yet).
  FinishedFlow& make_room(std::uint64_t bytes);

  std::uint64_t max_count_;
  std::uint64_t max_bytes_;
  std::vector<FinishedFlow> ring_;  // grows to max_count_ entries, then wraps
  std::size_t oldest_ = 0;          // index of the oldest kept entry
  std::size_t size_ = 0;            // kept entries (forgotten ones included until they leave)
  std::uint64_t bytes_ = 0;         // results and errors of the kept entries
};

}  // namespace mw::broker
