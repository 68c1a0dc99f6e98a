// in_process_worker.hpp — an mw::Worker serving on a thread of the test
// program, stopped (and joined) when it goes out of scope.
#pragma once

#include <thread>
#include <utility>

#include "mw/stop_signal.hpp"
#include "mw/worker.hpp"

namespace mwtest {

class InProcessWorker {
 public:
  InProcessWorker(mw::WorkerOptions options, mw::Handler handler)
      : worker_(std::move(options), std::move(handler)), thread_([this] { worker_.run(stop_); }) {}
  // Fires the stop; thread_ (declared last) is joined before the worker goes.
  ~InProcessWorker() { stop_.notify(); }
  InProcessWorker(const InProcessWorker&) = delete;
  InProcessWorker& operator=(const InProcessWorker&) = delete;

  mw::Worker::Counters counters() const { return worker_.counters(); }

 private:
  mw::StopSignal stop_;
  mw::Worker worker_;
  std::jthread thread_;
};

}  // namespace mwtest
