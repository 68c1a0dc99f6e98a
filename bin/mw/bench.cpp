// mw bench [--stages K] [--workers W] [--concurrency C] [--jobs N] [--payload BYTES] [--serial] [--json]
//
// Measures a running broker with the library every real program uses: this
// process starts K×W echo workers (mw::Worker, each on its own thread,
// socket and ZeroMQ context, over TCP like any worker) for a pipeline of
// fresh types "bench.<run id>.s1" … "s<K>", then pushes jobs through it
// with one mw::Client, keeping a window of flows in flight, and times each
// flow from SUBMIT to RESULT. The broker has no bench path: to it these are
// ordinary workers and an ordinary client.
//
// A "job" in the figures is one flow: a SUBMIT that went through all K
// stages to its RESULT (stage jobs/s = K × jobs/s). Latency is per flow,
// end to end, in microseconds. --json prints one object:
//   {stages, workers, concurrency, window, jobs, payload, serial, seconds,
//    jobs_per_second, stage_jobs_per_second, latency_us: {p50, p99, p999, max}}
// bench/ holds the bare ROUTER baseline and a script comparing the two.
//
// --backlog measures the broker holding a queue instead: it submits --jobs
// jobs of a type nobody serves yet (keeping --window SUBMITs unanswered),
// reads the broker's resident memory from STATUS once they are all queued,
// then starts the workers of one stage and times the drain.
//   {backlog, payload, fill_jobs_per_second, rss_before_bytes, rss_bytes,
//    bytes_per_job, drain_jobs_per_second}
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/stop_signal.hpp"
#include "mw/worker.hpp"

namespace mw::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kMaxStages = 64;
constexpr std::uint32_t kMaxWorkersPerStage = 256;
constexpr std::uint64_t kDefaultJobs = 200'000;
constexpr std::uint64_t kDefaultSerialJobs = 20'000;
// The window, when not given, keeps every worker's credit full twice over
// across all stages, so the broker never waits for the producer.
constexpr std::size_t kWindowPerCredit = 2;
// --backlog: SUBMITs left unanswered while filling.
constexpr std::size_t kBacklogWindow = 10'000;
// Room left for the tag and header inside the broker's default message limit.
constexpr std::size_t kMaxPayloadBytes = kDefaultMaxMessageBytes - kMaxHeaderBytes;
// How long the broker may go without answering anything before the run is
// declared lost, and how often registration is polled.
constexpr auto kStallLimit = std::chrono::seconds(10);
constexpr auto kRegistrationPoll = std::chrono::milliseconds(20);
constexpr auto kEventWait = std::chrono::milliseconds(100);
constexpr auto kStatusTimeoutMax = std::chrono::milliseconds(5000);

struct BenchOptions {
  std::string broker;
  std::uint32_t stages = 2;
  std::uint32_t workers = 1;
  std::uint32_t concurrency = 64;
  std::uint32_t spin_us = kDefaultSpinUs;  // of its producer and workers
  std::uint64_t jobs = 0;
  std::uint64_t warmup = 0;
  std::size_t payload = 50;
  std::size_t window = 0;
  bool serial = false;
  bool json = false;
  bool backlog = false;
  std::chrono::milliseconds timeout{0};
};

// A run id unique enough that repeated or parallel runs never share types.
std::string make_run_id() {
  std::random_device entropy;
  const std::uint64_t bits = (std::uint64_t{entropy()} << 32) ^ entropy() ^
                             static_cast<std::uint64_t>(::getpid()) ^
                             static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(bits));
  return std::string(text, 12);
}

std::string stage_type(const std::string& run_id, std::uint32_t stage) {
  return "bench." + run_id + ".s" + std::to_string(stage);
}

// One msgpack str of `bytes` characters: the payload every flow carries.
std::string make_payload(std::size_t bytes) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  const std::string body(bytes, 'x');
  packer.pack_str(static_cast<std::uint32_t>(body.size()));
  packer.pack_str_body(body.data(), static_cast<std::uint32_t>(body.size()));
  return std::string(buffer.data(), buffer.size());
}

// The echo workers of every stage, each running on its own thread. Stops and
// joins them when destroyed, also on the error paths.
class StageWorkers {
 public:
  StageWorkers(const BenchOptions& o, const std::string& run_id) {
    for (std::uint32_t s = 1; s <= o.stages; ++s) {
      for (std::uint32_t w = 1; w <= o.workers; ++w) {
        WorkerOptions wo;
        wo.broker = o.broker;
        wo.types = {stage_type(run_id, s)};
        if (s < o.stages) wo.next = stage_type(run_id, s + 1);
        wo.concurrency = o.concurrency;
        wo.spin_us = o.spin_us;
        wo.threads = 1;
        wo.name = wo.types.front() + "#" + std::to_string(w);
        workers_.push_back(std::make_unique<Worker>(std::move(wo), [](const Job& job) { return job.payload; }));
      }
    }
    try {
      for (auto& worker : workers_) {
        threads_.emplace_back([this, w = worker.get()] {
          try {
            w->run(stop_);
          } catch (const std::exception& e) {
            std::lock_guard lock(mutex_);
            if (error_.empty()) error_ = e.what();
          }
        });
      }
    } catch (...) {
      stop_and_join();  // the destructor does not run for a constructor that throws
      throw;
    }
  }

  ~StageWorkers() { stop_and_join(); }
  StageWorkers(const StageWorkers&) = delete;
  StageWorkers& operator=(const StageWorkers&) = delete;

  // Each worker hands back what it has not started, finishes the rest and
  // says DISCONNECT; bounded because the handlers only echo.
  void stop_and_join() {
    stop_.notify();
    threads_.clear();
  }

  // The first exception a worker thread ended with, or empty.
  std::string error() const {
    std::lock_guard lock(mutex_);
    return error_;
  }

 private:
  mutable std::mutex mutex_;
  std::string error_;
  StopSignal stop_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::jthread> threads_;  // last: joined before anything they use goes
};

// Polls STATUS until every stage type shows its workers.
void wait_for_registration(Client& client, const BenchOptions& o, const std::string& run_id,
                           Clock::time_point deadline, const StageWorkers& workers) {
  for (;;) {
    const auto stats = client.status();
    std::uint32_t ready_stages = 0;
    for (std::uint32_t s = 1; s <= o.stages; ++s) {
      const std::string type = stage_type(run_id, s);
      for (const auto& t : stats.types)
        if (t.type == type && t.workers >= o.workers) ++ready_stages;
    }
    if (ready_stages == o.stages) return;
    if (auto e = workers.error(); !e.empty()) throw Error("a bench worker stopped: " + e);
    if (Clock::now() >= deadline)
      throw Error("the bench workers did not all register with the broker at " + o.broker + " within --timeout (" +
                  std::to_string(ready_stages) + " of " + std::to_string(o.stages) + " stages ready)");
    std::this_thread::sleep_for(kRegistrationPoll);
  }
}

struct RunResult {
  double seconds = 0;
  std::vector<std::int64_t> latency_ns;  // one per flow, in finishing order
};

// Each flow's payload is the template with the flow's sequence number written
// into the start of its string (16 hex digits, when the string has room), so
// that a result that comes back changed, cut short or as another flow's is
// seen: the echo workers must return each flow's own bytes.
void stamp(std::string& payload, std::size_t body_bytes, std::uint64_t sequence) {
  if (body_bytes < 16) return;
  static constexpr char kHex[] = "0123456789abcdef";
  char* at = payload.data() + (payload.size() - body_bytes);
  for (int i = 15; i >= 0; --i, sequence >>= 4) at[i] = kHex[sequence & 0xf];
}

// Pushes `jobs` flows through the pipeline keeping up to `window` in flight,
// and times each from send to RESULT. Throws mw::Error on an ERROR reply, a
// dead flow, a result that is not the flow's payload echoed, a broker silent
// for kStallLimit, or the overall deadline.
RunResult drive(Client& client, const BenchOptions& o, const std::string& first_type, const std::string& payload,
                std::uint64_t jobs, Clock::time_point deadline, const StageWorkers& workers) {
  RunResult run;
  run.latency_ns.reserve(jobs);
  struct Sent {
    Clock::time_point at;
    std::uint64_t sequence = 0;  // stamped into its payload
  };
  // A flow's entry moves from the first map to the second at its ACCEPTED
  // and back to `spare` at its RESULT, as the same node: the bookkeeping
  // allocates nothing per flow once the window is full.
  using SentMap = std::unordered_map<std::uint64_t, Sent>;
  SentMap sent_by_request;
  SentMap sent_by_flow;
  std::vector<SentMap::node_type> spare;
  std::string outgoing = payload, expected = payload;  // stamped per flow
  sent_by_request.reserve(o.window * 2);
  sent_by_flow.reserve(o.window * 2);
  spare.reserve(o.window);
  std::uint64_t sent = 0, finished = 0;
  auto last_heard = Clock::now();
  const auto started = Clock::now();

  // The clock is read once per burst of SUBMITs (one SUBMIT per RESULT, once
  // the window is full) and once per RESULT, as in the bare loop's producer;
  // not per ACCEPTED (each reading costs ~25 ns here).
  bool heard = false;  // an event since last_heard was set
  while (finished < jobs) {
    if (sent < jobs && sent - finished < o.window) {
      const auto now = Clock::now();
      do {
        stamp(outgoing, o.payload, sent);
        const std::uint64_t request = client.send_submit(first_type, outgoing, /*wait=*/true);
        if (spare.empty()) {
          sent_by_request.emplace(request, Sent{now, sent});
        } else {
          auto node = std::move(spare.back());
          spare.pop_back();
          node.key() = request;
          node.mapped() = Sent{now, sent};
          sent_by_request.insert(std::move(node));
        }
        ++sent;
      } while (sent < jobs && sent - finished < o.window);
    }
    auto event = client.next_event(kEventWait);
    if (!event) {
      const auto now = Clock::now();
      if (std::exchange(heard, false)) last_heard = now;
      if (auto e = workers.error(); !e.empty()) throw Error("a bench worker stopped: " + e);
      if (now - last_heard > kStallLimit)
        throw Error("no answer from the broker at " + o.broker + " for " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kStallLimit).count()) + " s (" +
                    std::to_string(finished) + " of " + std::to_string(jobs) + " flows done): is it still running?",
                    ErrorCode::Unavailable);
      if (now >= deadline)
        throw Error("--timeout reached with " + std::to_string(finished) + " of " + std::to_string(jobs) +
                    " flows done", ErrorCode::Unavailable);
      continue;
    }
    heard = true;
    switch (event->kind) {
      case ClientEvent::Kind::Accepted: {
        // ACCEPTED leaves the broker before the flow's RESULT on the same
        // pipe, so the flow id is always known by the time its RESULT comes.
        auto it = sent_by_request.find(event->request_id);
        if (it == sent_by_request.end()) break;  // not ours (an earlier call's)
        auto node = sent_by_request.extract(it);
        node.key() = event->flow_id;
        sent_by_flow.insert(std::move(node));
        break;
      }
      case ClientEvent::Kind::Result: {
        auto it = sent_by_flow.find(event->flow_id);
        if (it == sent_by_flow.end()) break;
        if (!event->outcome.done)
          throw Error("flow " + std::to_string(event->flow_id) + " died at " + event->outcome.last_type + ": " +
                      event->outcome.error);
        stamp(expected, o.payload, it->second.sequence);
        if (event->outcome.result.bytes() != expected)
          throw Error("flow " + std::to_string(event->flow_id) + " came back changed: its echo workers returned " +
                      std::to_string(event->outcome.result.size()) + " bytes that are not the " +
                      std::to_string(expected.size()) + " it was sent");
        const auto now = Clock::now();
        run.latency_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - it->second.at).count());
        spare.push_back(sent_by_flow.extract(it));
        ++finished;
        if (now >= deadline)
          throw Error("--timeout reached with " + std::to_string(finished) + " of " + std::to_string(jobs) +
                      " flows done", ErrorCode::Unavailable);
        break;
      }
      default:  // answers to requests this loop does not make
        break;
      case ClientEvent::Kind::Error:
        throw Error("the broker refused a bench job: " + event->message + " (" +
                    std::to_string(static_cast<int>(event->code)) + ")", event->code);
    }
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return run;
}

// The q-quantile (nearest rank) of sorted values, in microseconds.
double quantile_us(const std::vector<std::int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

double round1(double v) { return std::round(v * 10.0) / 10.0; }

void report(const BenchOptions& o, RunResult& run) {
  auto& lat = run.latency_ns;
  std::sort(lat.begin(), lat.end());
  const double per_second = run.seconds > 0 ? static_cast<double>(lat.size()) / run.seconds : 0;
  const double p50 = quantile_us(lat, 0.50), p99 = quantile_us(lat, 0.99), p999 = quantile_us(lat, 0.999);
  const double max = lat.empty() ? 0 : static_cast<double>(lat.back()) / 1000.0;
  if (o.json) {
    nlohmann::json j = {{"stages", o.stages},
                        {"workers", o.workers},
                        {"concurrency", o.concurrency},
                        {"spin_us", o.spin_us},
                        {"window", o.window},
                        {"jobs", o.jobs},
                        {"payload", o.payload},
                        {"serial", o.serial},
                        {"seconds", std::round(run.seconds * 1e4) / 1e4},
                        {"jobs_per_second", round1(per_second)},
                        {"stage_jobs_per_second", round1(per_second * o.stages)},
                        {"latency_us", {{"p50", round1(p50)}, {"p99", round1(p99)}, {"p999", round1(p999)},
                                        {"max", round1(max)}}}};
    std::cout << json_text(j) << std::endl;
    return;
  }
  std::printf("mw bench: %u stage(s) x %u worker(s), concurrency %u, window %zu, %llu jobs of %zu payload bytes%s\n",
              o.stages, o.workers, o.concurrency, o.window, static_cast<unsigned long long>(o.jobs), o.payload,
              o.serial ? " (serial)" : "");
  std::printf("  %.0f jobs/s (%.0f stage jobs/s) over %.3f s\n", per_second, per_second * o.stages, run.seconds);
  std::printf("  end-to-end latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", p50, p99, p999, max);
}

BenchOptions parse(int argc, char** argv, bool& help) {
  cxxopts::Options options("mw bench",
                           "Measure jobs/s and end-to-end latency of a K-stage echo pipeline against a running broker.\n"
                           "Starts K x W workers in this process (ordinary mw::Worker over TCP) and one producer.");
  add_common_options(options);
  options.add_options()
      ("stages", "pipeline stages K", cxxopts::value<std::uint32_t>()->default_value("2"))
      ("workers", "workers per stage W", cxxopts::value<std::uint32_t>()->default_value("1"))
      ("concurrency", "credit of each worker C (jobs in flight on it)", cxxopts::value<std::uint32_t>()->default_value("64"))
      ("jobs", "flows to time (default 200000; with --serial 20000)", cxxopts::value<std::uint64_t>())
      ("spin-us", "the producer's and workers' spin before they sleep, as a worker's --spin-us (0: never)",
       cxxopts::value<std::uint32_t>()->default_value(std::to_string(kDefaultSpinUs)))
      ("warmup", "flows run first and left out of the figures", cxxopts::value<std::uint64_t>()->default_value("500"))
      ("payload", "payload size: a msgpack string of this many bytes", cxxopts::value<std::size_t>()->default_value("50"))
      ("window", "flows in flight (default W*C*K*2; --serial: 1)", cxxopts::value<std::size_t>())
      ("serial", "one flow at a time: latency without queueing")
      ("backlog", "queue --jobs jobs with no worker, report the broker's memory, then time the drain")
      ("json", "print one JSON object")
      ("timeout", "give up (exit 1) after this many seconds in all", cxxopts::value<std::string>()->default_value("300"));
  cxxopts::ParseResult args;
  help = parse_or_help(options, argc, argv, args);
  BenchOptions o;
  if (help) return o;
  if (!args.unmatched().empty()) throw UsageError("unexpected argument '" + args.unmatched().front() + "'");
  o.broker = args["broker"].as<std::string>();
  o.stages = args["stages"].as<std::uint32_t>();
  o.workers = args["workers"].as<std::uint32_t>();
  o.concurrency = args["concurrency"].as<std::uint32_t>();
  o.spin_us = args["spin-us"].as<std::uint32_t>();
  o.jobs = args.count("jobs") ? args["jobs"].as<std::uint64_t>() : 0;
  o.warmup = args["warmup"].as<std::uint64_t>();
  o.payload = args["payload"].as<std::size_t>();
  o.window = args.count("window") ? args["window"].as<std::size_t>() : 0;
  o.serial = args.count("serial") > 0;
  o.json = args.count("json") > 0;
  o.backlog = args.count("backlog") > 0;
  if (o.backlog && o.serial) throw UsageError("--backlog and --serial measure different things: pick one");
  if (o.backlog) {
    // One type is queued and drained: options of the pipeline run are refused, not ignored.
    for (const char* pipeline_only : {"stages", "warmup"})
      if (args[pipeline_only].count())
        throw UsageError(std::string("--") + pipeline_only + " does not apply to --backlog, which queues jobs of one "
                         "type and times --workers workers draining them");
    o.stages = 1;
  }
  const double timeout_s = parse_decimal(args["timeout"].as<std::string>(), "--timeout");
  if (o.stages < 1 || o.stages > kMaxStages) throw UsageError("--stages must be between 1 and " + std::to_string(kMaxStages));
  if (o.workers < 1 || o.workers > kMaxWorkersPerStage)
    throw UsageError("--workers must be between 1 and " + std::to_string(kMaxWorkersPerStage));
  if (o.concurrency < 1 || o.concurrency > kMaxCredit)
    throw UsageError("--concurrency must be between 1 and " + std::to_string(kMaxCredit));
  check_spin_us(o.spin_us, "--spin-us");
  if (o.payload > kMaxPayloadBytes) throw UsageError("--payload must be at most " + std::to_string(kMaxPayloadBytes));
  if (!(timeout_s > 0) || timeout_s > 1e6)
    throw UsageError("--timeout must be a positive number of seconds, at most 1000000");
  // Its workers' "registered" lines are not what a bench reports; their
  // warnings (a lost broker) still are.
  set_log_level(LogLevel::warn);
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(timeout_s * 1000)));
  if (args["jobs"].count() && o.jobs == 0) throw UsageError("--jobs must be at least 1 (leave it out for the default)");
  if (args["window"].count() && o.window == 0)
    throw UsageError("--window must be at least 1 (leave it out for the default)");
  if (o.jobs == 0) o.jobs = o.serial ? kDefaultSerialJobs : kDefaultJobs;
  if (o.serial) {
    if (args["window"].count() && o.window != 1) throw UsageError("--serial means --window 1");
    o.window = 1;
    // Valid, but easy to misread as a measure of W workers.
    if (o.workers > 1)
      std::fprintf(stderr,
                   "mw bench: note: --serial keeps one flow in flight, so one worker of each stage's %u is busy "
                   "at a time: the latency is that of a single worker\n",
                   o.workers);
  }
  if (o.window == 0)
    o.window = o.backlog ? kBacklogWindow : std::size_t{o.workers} * o.concurrency * o.stages * kWindowPerCredit;
  return o;
}

}  // namespace

// The type's entry in STATUS, or an empty one.
wire::TypeStats type_status(Client& client, const std::string& type) {
  for (auto& t : client.status().types)
    if (t.type == type) return t;
  return {};
}

void stop_if_late(Clock::time_point deadline, const char* what) {
  if (Clock::now() >= deadline) throw Error(std::string("--timeout reached while ") + what, ErrorCode::Unavailable);
}

// --backlog: fill a queue nobody serves, read the broker's memory, drain it.
void backlog(Client& client, const BenchOptions& o, const std::string& run_id, const std::string& payload,
             Clock::time_point deadline) {
  const std::string type = stage_type(run_id, 1);
  const std::uint64_t rss_before = client.status().rss_bytes;
  std::uint64_t sent = 0, accepted = 0;
  const auto fill_started = Clock::now();
  while (accepted < o.jobs) {
    while (sent < o.jobs && sent - accepted < o.window) {
      (void)client.send_submit(type, payload, /*wait=*/false);
      ++sent;
    }
    auto event = client.next_event(kStallLimit);
    if (!event) throw Error("no answer from the broker at " + o.broker + " while filling", ErrorCode::Unavailable);
    if (event->kind == ClientEvent::Kind::Error)
      throw Error("the broker refused a backlog job: " + event->message, event->code);
    if (event->kind == ClientEvent::Kind::Accepted) ++accepted;
    stop_if_late(deadline, "filling the backlog");
  }
  const double fill_seconds = std::chrono::duration<double>(Clock::now() - fill_started).count();
  const auto full = client.status();
  std::uint64_t queued = 0;
  for (const auto& t : full.types)
    if (t.type == type) queued = t.queued;
  if (queued < o.jobs) throw Error("only " + std::to_string(queued) + " of the jobs are queued at the broker");

  const auto drain_started = Clock::now();
  StageWorkers workers(o, run_id);
  for (;;) {
    const auto t = type_status(client, type);
    if (t.done >= o.jobs) break;
    if (auto e = workers.error(); !e.empty()) throw Error("a bench worker stopped: " + e);
    stop_if_late(deadline, "draining the backlog");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double drain_seconds = std::chrono::duration<double>(Clock::now() - drain_started).count();
  workers.stop_and_join();

  const double fill_rate = static_cast<double>(o.jobs) / fill_seconds;
  const double drain_rate = static_cast<double>(o.jobs) / drain_seconds;
  const double per_job = static_cast<double>(full.rss_bytes - std::min(full.rss_bytes, rss_before)) /
                         static_cast<double>(o.jobs);
  if (o.json) {
    nlohmann::json j = {{"backlog", o.jobs},
                        {"payload", o.payload},
                        {"fill_jobs_per_second", round1(fill_rate)},
                        {"rss_before_bytes", rss_before},
                        {"rss_bytes", full.rss_bytes},
                        {"bytes_per_job", round1(per_job)},
                        {"drain_jobs_per_second", round1(drain_rate)}};
    std::cout << json_text(j) << std::endl;
    return;
  }
  std::printf("mw bench --backlog: %llu jobs of %zu payload bytes queued with no worker, then drained by %u worker(s)\n",
              static_cast<unsigned long long>(o.jobs), o.payload, o.workers);
  std::printf("  filled at %.0f jobs/s; broker resident %.1f MB (%.1f MB before: %.0f bytes per queued job)\n",
              fill_rate, static_cast<double>(full.rss_bytes) / 1e6, static_cast<double>(rss_before) / 1e6, per_job);
  std::printf("  drained at %.0f jobs/s\n", drain_rate);
}

int bench(int argc, char** argv) {
  bool help = false;
  const BenchOptions o = parse(argc, argv, help);
  if (help) return 0;
  const auto deadline = Clock::now() + o.timeout;

  ClientOptions co;
  co.broker = o.broker;
  co.timeout = std::min<std::chrono::milliseconds>(o.timeout, kStatusTimeoutMax);
  co.spin_us = o.spin_us;
  Client client(co);
  (void)client.status();  // a clear error now if nobody answers at --broker

  const std::string run_id = make_run_id();
  const std::string first_type = stage_type(run_id, 1);
  const std::string payload = make_payload(o.payload);
  if (o.backlog) {
    backlog(client, o, run_id, payload, deadline);
    return 0;
  }
  StageWorkers workers(o, run_id);
  wait_for_registration(client, o, run_id, deadline, workers);

  if (o.warmup > 0) (void)drive(client, o, first_type, payload, o.warmup, deadline, workers);
  RunResult run = drive(client, o, first_type, payload, o.jobs, deadline, workers);

  workers.stop_and_join();
  if (auto e = workers.error(); !e.empty()) throw Error("a bench worker stopped: " + e);
  report(o, run);
  return 0;
}

}  // namespace mw::cli
