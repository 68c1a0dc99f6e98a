// mw/worker.hpp — serve jobs of a type, in a pipeline.
//
// A worker registers with the broker for one or more job types, receives
// jobs, runs a handler on each and reports the result. Whatever the handler
// returns becomes a job of the next type: the worker's static `next`, or
// the `nextWorkerType` field of the result (seed compatible; it wins, and
// is removed from the result; null ends the flow). No next type: the flow
// is done and a waiting submitter gets the result.
//
// The fifteen-line worker (see examples/sample_worker.cpp):
//
//   int main(int argc, char** argv) {
//     return mw::run_worker(argc, argv, {.type = "sampleworker", .next = "nextworker"},
//                           [](const mw::Job& job) {
//                             double x = job.payload.as<double>();
//                             double y = std::sin(x);
//                             if (std::isnan(y)) throw mw::JobError("The result is not a number", false);
//                             return mw::Payload::of(y);
//                           });
//   }
//
// Failing a job: throw. mw::JobError says whether a retry can help; any
// other exception is retryable. The broker retries with backoff up to the
// job's max attempts.
//
// Cancelling: when a flow is cancelled (mw cancel FLOW) while this worker
// holds its job, the broker says so (CANCEL). A job not started yet is
// dropped; a running one has its `job.cancel` token stopped. A long handler
// looks at `job.cancel.stop_requested()` now and then, or registers a
// std::stop_callback, and returns or throws early: whatever it reports for
// a cancelled job is dropped, and the worker is free for the next one.
//
// Progress: a long handler may say how far it has come, with any value
// (job.report_progress(mw::Payload::of(0.4)), or a map such as {"done": 3,
// "of": 10}). `mw flows` and `$flows get` show the latest while the job
// runs, and the broker publishes each on $mw.progress.
//
// Threads: with `threads` = 1 (the default) handlers run on the thread that
// owns the socket, so a short job costs no hand-off between threads; a
// keeper thread sends the heartbeats while a long handler runs. With
// `threads` > 1 the socket thread feeds a pool of that many handler threads.
//
// Reliability: heartbeats keep going while handlers run; the worker
// reconnects and registers again by itself when the broker goes silent or
// restarts, and on stop hands back jobs it has not started, lets running
// ones finish and report, then says DISCONNECT.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "mw/options.hpp"
#include "mw/payload.hpp"
#include "mw/stop_signal.hpp"

namespace mw {

namespace detail {
// Where a Job's progress goes: the worker that runs it.
class ProgressSink {
 public:
  virtual void progress(std::uint64_t job_id, std::uint32_t attempt, std::string msgpack_bytes) = 0;

 protected:
  ~ProgressSink() = default;
};
}  // namespace detail

// One job as a handler sees it.
struct Job {
  std::uint64_t id = 0;       // this stage's id
  std::uint64_t flow_id = 0;  // the id the submitter got; same at every stage
  std::string type;
  std::uint32_t attempt = 1;  // 1 on first delivery
  std::string entity;         // "endpoint/id" or empty
  Payload payload;
  // Stop requested when the job's flow is cancelled while the handler runs
  // (see "Cancelling" above). Handlers that ignore it run to their end.
  // Meaningful during the handler's call only: the worker reuses its source
  // for later jobs, so do not keep the token past the return. A
  // std::stop_callback on it runs on one of the worker's own threads, with
  // its locks held: keep it short (set a flag, signal a descriptor).
  std::stop_token cancel;

  // Says how far the handler has come: any value, at most kMaxProgressBytes
  // (4 KiB) of msgpack. Only the newest is kept, and a job's values leave
  // at most every 100 ms; the last one reported goes out before the job's
  // answer, so it is always seen. Calling it often is cheap. Thread-safe
  // (also from a std::stop_callback on `cancel`); never blocks on the
  // network. Throws mw::Error (413) for a value over the limit; does
  // nothing for a Job no worker handed out, nor once the handler returned.
  // A broker whose WELCOME does not say it takes PROGRESS (an older
  // mw-broker) is sent none, and the worker logs that once.
  void report_progress(const Payload& value) const;

  // Set by the worker that hands the job to a handler; valid while that
  // Worker exists (do not report on a copy of the Job after it is gone).
  detail::ProgressSink* progress_sink = nullptr;
};

// Returns the result; throws to fail the job. Called on the worker's
// socket thread (threads = 1) or a pool thread, never concurrently on the
// same Job; with threads > 1, concurrently for different jobs.
using Handler = std::function<Payload(const Job&)>;

struct WorkerOptions {
  std::string broker = default_broker_address();
  std::vector<std::string> types;  // REQUIRES: at least one
  std::string next;                // static next type; empty = the flow ends here
  // Jobs the broker keeps in flight on this worker (its credit). More than
  // `threads` lets the next job wait here instead of a round trip away.
  std::uint32_t concurrency = 1;
  std::uint32_t threads = 1;  // handler threads: jobs actually run at once
  std::string name;           // for logs; default "<type>@<host>"
  // While jobs come steadily, look for the next message without sleeping
  // for up to this many microseconds before sleeping (mw/spin_poll.hpp);
  // 0: never spin; more than kMaxSpinUs is refused (mw::UsageError).
  std::uint32_t spin_us = kDefaultSpinUs;
};

class Worker {
 public:
  // Throws mw::Error for options that cannot work (no type, zero credit).
  Worker(WorkerOptions options, Handler handler);
  ~Worker();
  Worker(Worker&&) noexcept;
  Worker& operator=(Worker&&) noexcept;

  // Serves until `stop` fires, then shuts down as described above and
  // returns. Never returns early on broker trouble: it keeps reconnecting.
  void run(const StopSignal& stop);

  struct Counters {
    std::uint64_t done = 0;
    std::uint64_t failed = 0;
    std::uint64_t registrations = 0;  // 1 + reconnections
    std::uint64_t cancelled = 0;      // jobs dropped or stopped because their flow was cancelled
    std::uint64_t handed_back = 0;    // jobs given back unfinished while stopping (JobHandedBack)
  };
  // Thread-safe snapshot.
  Counters counters() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// What a worker program is when the command line says nothing else.
struct WorkerDefaults {
  std::string_view type;
  std::string_view next;
  std::uint32_t concurrency = 1;
};

// The standard main of a worker program: parses --broker, --type, --next,
// --concurrency, --threads, --log-level (and --help), stops on SIGINT or
// SIGTERM, and runs. Returns the process exit code: 0, 2 for a command
// line it cannot run (mw::kUsageExitCode), 1 for other failures; errors are
// one line on stderr.
int run_worker(int argc, char** argv, WorkerDefaults defaults, Handler handler);

}  // namespace mw
