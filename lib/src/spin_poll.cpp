#include "mw/spin_poll.hpp"

#include <sched.h>

#include <algorithm>

namespace mw {

int SpinPoll::poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  // A look without waiting says nothing about how close messages come.
  if (timeout.count() <= 0) return zmq::poll(items, count, std::chrono::milliseconds(0));
  if (spin_.count() > 0 && steady_) {
    const auto spun_from = Clock::now();
    const auto until = spun_from + std::min<Clock::duration>(spin_, timeout);
    do {
      if (const int ready = zmq::poll(items, count, std::chrono::milliseconds(0)); ready > 0) return ready;
      sched_yield();
    } while (Clock::now() < until);
    timeout -= std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - spun_from);
    timeout = std::max(timeout, std::chrono::milliseconds(0));
  }
  const auto slept_from = Clock::now();
  const int ready = zmq::poll(items, count, timeout);
  steady_ = spin_.count() > 0 && (items[0].revents & ZMQ_POLLIN) && Clock::now() - slept_from < kSpinWindows * spin_;
  return ready;
}

}  // namespace mw
