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
  const auto waited_from = Clock::now();
  if (steady_) {
    const Clock::duration spin_for = forever ? Clock::duration(spin_) : std::min<Clock::duration>(spin_, timeout);
    Clock::duration spun{};
    do {
      if (const int ready = zmq::poll(items, count, std::chrono::milliseconds(0)); ready > 0) return ready;
      sched_yield();
      spun = Clock::now() - waited_from;
    } while (spun < spin_for);
    // The rest of the wait, rounded up to poll's milliseconds: a timer is
    // late by less than one, never early.
    if (!forever) timeout = std::max(std::chrono::ceil<std::chrono::milliseconds>(timeout - spun), std::chrono::milliseconds(0));
  }
  const int ready = zmq::poll(items, count, timeout);
  // The whole wait counts, the spin too: input that came only after a full
  // spin and a sleep is not what a spin catches.
  steady_ = (items[0].revents & ZMQ_POLLIN) && Clock::now() - waited_from < steady_window();
  return ready;
}

}  // namespace mw
