// mw/spin_poll.hpp — zmq::poll that spins a moment before it sleeps.
//
// A loop that sleeps in poll leaves its CPU idle, and an idle CPU (on a
// virtual machine above all) halts: waking it for the next message takes
// tens of microseconds, and in a pipeline every other stage waits for that
// wake-up. SpinPoll keeps the CPU awake while traffic is steady: when the
// last sleep in poll ended with input on the first poll item within
// kSpinWindows × spin (or the last spin found input on any item), the next
// wait first looks for input without sleeping for up to `spin`, calling
// sched_yield() between looks so that other threads (ZeroMQ's I/O thread,
// the peers) still get the CPU. A loop whose sleeps last longer (an idle
// one, or one whose messages come further apart) does not spin, so it
// costs CPU time only under load. A loop tells it what was not traffic
// (not_traffic()): mw-broker does for a turn that read only heartbeats, as a
// broker with thousands of idle peers hears one every few hundred
// microseconds. mw-broker, Worker and Client poll this way (their `spin_us`
// options; 0 turns it off). docs/ARCHITECTURE.md says what it bought and
// what it costs.
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

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <zmq.hpp>

#include "mw/options.hpp"  // kDefaultSpinUs, kMaxSpinUs

namespace mw {

class SpinPoll {
 public:
  // A sleep shorter than this many spins means traffic is steady.
  static constexpr int kSpinWindows = 4;

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
  std::chrono::microseconds spin_;
  bool steady_ = false;  // the last sleep ended with input within kSpinWindows spins
};

}  // namespace mw
