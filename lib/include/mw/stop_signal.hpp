// mw/stop_signal.hpp — a pollable "please stop" for event loops.
//
// Loops in mw (broker, worker, listener) poll a file descriptor alongside
// their sockets, so a stop request wakes them at once without a global flag.
//
//   int main() {
//     auto stop = mw::StopSignal::on_signals();  // first thing: before any thread exists
//     ...
//     server.run(stop);                          // returns on SIGINT or SIGTERM
//   }
//
// Move-only; closes its descriptor when destroyed.
#pragma once

namespace mw {

class StopSignal {
 public:
  // A stop that fires when notify() is called (an eventfd).
  StopSignal();

  // A stop that fires on SIGINT or SIGTERM (a signalfd). Blocks those
  // signals in the calling thread, so REQUIRES: called before any other
  // thread (including ZeroMQ's) is started, so every thread inherits the mask.
  static StopSignal on_signals();

  StopSignal(StopSignal&& other) noexcept;
  StopSignal& operator=(StopSignal&& other) noexcept;
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;
  ~StopSignal();

  // Fires the stop. Thread-safe and async-signal-safe. No effect on a
  // signal-based stop (send it a signal instead).
  void notify() noexcept;

  // True once fired; does not consume the event, so every loop polling
  // this descriptor sees it.
  [[nodiscard]] bool fired() const noexcept;

  // The stop signal (SIGTERM or SIGINT) this process received and nothing
  // has read yet, SIGTERM when both; 0 when none. A signal-based stop never
  // reads them, so after one fired this says which: a program that ends
  // because of it should exit with 128 + it, as a shell expects.
  [[nodiscard]] static int received_signal() noexcept;

  // The descriptor to poll for readability.
  int fd() const noexcept { return fd_; }

 private:
  explicit StopSignal(int fd, bool from_signals) noexcept : fd_(fd), from_signals_(from_signals) {}
  int fd_ = -1;
  bool from_signals_ = false;
};

}  // namespace mw
