#include "mw/spin_poll.hpp"

#include <sched.h>

#include <algorithm>

namespace mw {

int SpinPoll::poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  // Without a spin this is zmq::poll, with no clock read; and a look that
  // does not wait says nothing about how close messages come.
  if (spin_.count() <= 0 || timeout.count() == 0) return zmq::poll(items, count, timeout);
  const bool forever = timeout.count() < 0;
  if (steady_) {
    const auto spun_from = Clock::now();
    const Clock::duration spin_for = forever ? Clock::duration(spin_) : std::min<Clock::duration>(spin_, timeout);
    Clock::duration spun{};
    do {
      if (const int ready = zmq::poll(items, count, std::chrono::milliseconds(0)); ready > 0) return ready;
      sched_yield();
      spun = Clock::now() - spun_from;
    } while (spun < spin_for);
    // The rest of the wait, rounded up to poll's milliseconds: a timer is
    // late by less than one, never early.
    if (!forever) timeout = std::max(std::chrono::ceil<std::chrono::milliseconds>(timeout - spun), std::chrono::milliseconds(0));
  }
  const auto slept_from = Clock::now();
  const int ready = zmq::poll(items, count, timeout);
  steady_ = (items[0].revents & ZMQ_POLLIN) && Clock::now() - slept_from < kSpinWindows * spin_;
  return ready;
}

}  // namespace mw
