// mw/spin_poll.hpp — zmq::poll that spins a moment before it sleeps.
//
// A loop that sleeps in poll leaves its CPU idle, and an idle CPU (on a
// virtual machine above all) halts: waking it for the next message takes
// tens of microseconds, and in a pipeline every other stage waits for that
// wake-up. SpinPoll keeps the CPU awake while traffic is steady: when the
// last wait ended with input on the first poll item within the steady
// window of its start (200 µs, or the spin if that is longer), or the last
// spin found input on any item, the next wait first looks for input
// without sleeping for up to `spin`, calling sched_yield() between looks so
// that other threads (ZeroMQ's I/O thread, the peers) still get the CPU. A
// loop whose messages come further apart (an idle one, or one served
// slowly) does not spin, so it costs CPU time only under load. A loop tells
// it what was not traffic (not_traffic()): mw-broker does for a turn that
// read only heartbeats, as a broker with thousands of idle peers hears one
// every few hundred microseconds. mw-broker (200 µs by default), Worker and
// Client (50 µs) poll this way (their `spin_us` options; 0 turns it off).
// docs/ARCHITECTURE.md says what it bought and what it costs.
//
//   mw::SpinPoll waiter(std::chrono::microseconds(mw::kDefaultSpinUs));
//   zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
//   for (;;) {
//     waiter.poll(items, 1, std::chrono::milliseconds(1000));
//     if (items[0].revents & ZMQ_POLLIN) ...   // as after zmq::poll
//   }
//
// Not thread-safe: one per loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include <zmq.hpp>

#include "mw/options.hpp"  // kDefaultSpinUs, kMaxSpinUs

namespace mw {

class SpinPoll {
 public:
  // Input that comes within this long of the start of a wait (or within
  // the spin, if that is longer) means traffic is steady. A floor above
  // the spin itself keeps short spins going under load, where a peer's
  // input comes in bursts a little further apart than its spin (with a
  // window of one spin, `mw bench` throughput fell in 8 of 10 pairs).
  static constexpr std::chrono::microseconds kSteadyWindow{200};

  // spin 0 (or less): never spin (poll() is zmq::poll).
  explicit SpinPoll(std::chrono::microseconds spin) noexcept : spin_(spin) {}

  // As zmq::poll(items, count, timeout), items[0] being the input that
  // counts as traffic; returns the number of items with events. A timeout
  // of 0 only looks; a negative one waits for input without a limit. The
  // spin counts towards the timeout: the call returns less than a
  // millisecond after it at most (poll's unit), never before.
  int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout);

  // The input the last wait found was not traffic worth spinning for (only
  // heartbeats, say): the next wait sleeps at once.
  void not_traffic() noexcept { steady_ = false; }

 private:
  std::chrono::microseconds steady_window() const noexcept { return std::max(spin_, kSteadyWindow); }

  std::chrono::microseconds spin_;
  bool steady_ = false;  // the last wait ended with input within steady_window(), or its spin found some
};

}  // namespace mw
