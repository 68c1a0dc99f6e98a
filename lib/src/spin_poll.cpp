#include "mw/spin_poll.hpp"

#include <sched.h>

#include <algorithm>

namespace mw {

int SpinPoll::poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  // A look without waiting says nothing about how close messages come.
  if (timeout.count() == 0) return zmq::poll(items, count, std::chrono::milliseconds(0));
  const bool forever = timeout.count() < 0;
  const auto deadline = Clock::now() + (forever ? Clock::duration::zero() : Clock::duration(timeout));
  if (spin_.count() > 0 && steady_) {
    const auto spin_until = forever ? Clock::now() + spin_ : std::min(Clock::now() + spin_, deadline);
    do {
      if (const int ready = zmq::poll(items, count, std::chrono::milliseconds(0)); ready > 0) return ready;
      sched_yield();
    } while (Clock::now() < spin_until);
    // The rest of the wait, rounded up to poll's milliseconds: a timer is
    // late by less than one, never early.
    if (!forever)
      timeout = std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()), std::chrono::milliseconds(0));
  }
  const auto slept_from = Clock::now();
  const int ready = zmq::poll(items, count, timeout);
  steady_ = spin_.count() > 0 && (items[0].revents & ZMQ_POLLIN) && Clock::now() - slept_from < kSpinWindows * spin_;
  return ready;
}

}  // namespace mw
