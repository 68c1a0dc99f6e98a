// mw-bench-bare-router — the ceiling a bare ROUTER loop reaches on this
// machine, for comparison with `mw bench` in the same run.
//
// It runs the workload of `mw bench` (K stages, W workers per stage with
// credit C, one producer keeping a window of flows in flight, TCP loopback)
// through the smallest router that can carry it: one thread, one ROUTER,
// routing by type with only the state routing needs (each stage's workers,
// their free credit and next stage as READY said, a queue per stage, and
// job id → flow for the answers). No registry bookkeeping, liveness,
// counters, retries, store or events; it answers HEARTBEAT and forgets a
// worker on DISCONNECT, nothing more.
//
// Messages are MW/1 frames built with mw::wire, byte for byte what mw sends,
// and the same number per flow except one: SUBMIT → JOB → DONE → … → RESULT.
// There is no ACCEPTED: the flow id is the producer's request id, so the
// producer needs no answer to know it. mw sends one more message per flow.
//
// Threads, each with its own ZeroMQ context (one I/O thread) and sockets, as
// in mw bench: the router, every worker (which echoes on its socket thread:
// no handler thread hop as in mw::Worker), and the producer (main thread).
// By default all run in this process; `--serve` runs the router alone and
// `--router ADDR` the workers and producer against it, which is the process
// layout of mw-broker + mw bench (bench/run_bench.sh uses that).
//
// To tell where mw's time goes, either side can be swapped for mw's own
// library against this same router: --mw-workers runs mw::Worker echo
// workers, --mw-client produces with mw::Client (the router then sends
// ACCEPTED, right before the RESULT as mw-broker does for a submitter that
// waits; a --serve router must be given --mw-client too). With both, only
// the broker differs from `mw bench`.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <cxxopts.hpp>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "mw/client.hpp"
#include "mw/error.hpp"
#include "mw/protocol.hpp"
#include "mw/stop_signal.hpp"
#include "mw/worker.hpp"
#include "mw/wire.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kMaxStages = 64;
constexpr std::uint32_t kMaxWorkersPerStage = 256;
constexpr std::uint64_t kDefaultJobs = 200'000;
constexpr std::uint64_t kDefaultSerialJobs = 20'000;
constexpr std::size_t kWindowPerCredit = 2;
constexpr std::size_t kMaxPayloadBytes = mw::kDefaultMaxMessageBytes - mw::kMaxHeaderBytes;
constexpr std::size_t kMaxFrames = 4;  // routing id + tag + header + payload
constexpr int kRouterBatch = 512;      // as mw-broker: messages per wake-up
constexpr int kRouterSendHighWaterMark = 100'000;
constexpr int kGoodbyeLingerMs = 200;
constexpr auto kStallLimit = std::chrono::seconds(10);
constexpr auto kPollWait = std::chrono::milliseconds(100);
constexpr std::string_view kBenchType = "bare";  // types are "bare.s1" … "bare.s<K>"

struct BenchOptions {
  std::uint32_t stages = 2;
  std::uint32_t workers = 1;
  std::uint32_t concurrency = 64;
  std::uint64_t jobs = 0;
  std::uint64_t warmup = 0;
  std::size_t payload = 50;
  std::size_t window = 0;
  bool serial = false;
  bool json = false;
  bool mw_workers = false;  // mw::Worker instead of the bare echo loop
  bool mw_client = false;   // mw::Client instead of the bare producer (and ACCEPTED)
  bool serve = false;       // run only the router, until SIGINT/SIGTERM
  std::string bind = "tcp://127.0.0.1:*";  // with --serve
  std::string router;       // run workers and producer against this router instead of one in-process
  std::chrono::milliseconds timeout{0};
};

std::string stage_type(std::uint32_t stage) { return std::string(kBenchType) + ".s" + std::to_string(stage); }

std::string make_payload(std::size_t bytes) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  const std::string body(bytes, 'x');
  packer.pack_str(static_cast<std::uint32_t>(body.size()));
  packer.pack_str_body(body.data(), static_cast<std::uint32_t>(body.size()));
  return std::string(buffer.data(), buffer.size());
}

zmq::socket_t make_dealer(zmq::context_t& context, const std::string& address) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, 0);  // as mw's peers: bounded by credit and window
  socket.set(zmq::sockopt::rcvhwm, 0);
  socket.connect(address);
  return socket;
}

// Sends [tag][header][payload?] on a DEALER, or with a routing id in front on the ROUTER.
void send_message(zmq::socket_t& socket, const std::string* peer, mw::Command command, zmq::message_t* header,
                  zmq::message_t* payload) {
  if (peer) {
    zmq::message_t id(peer->data(), peer->size());
    socket.send(id, zmq::send_flags::sndmore);
  }
  zmq::message_t tag = mw::wire::encode_tag(command);
  socket.send(tag, header ? zmq::send_flags::sndmore : zmq::send_flags::none);
  if (header) socket.send(*header, payload ? zmq::send_flags::sndmore : zmq::send_flags::none);
  if (payload) socket.send(*payload, zmq::send_flags::none);
}

// Receives one whole message without blocking; returns its frame count (0: nothing waiting).
// Extra frames beyond kMaxFrames are read and dropped (the count says so).
std::size_t recv_message(zmq::socket_t& socket, std::array<zmq::message_t, kMaxFrames + 1>& frames) {
  if (!socket.recv(frames[0], zmq::recv_flags::dontwait)) return 0;
  std::size_t count = 1;
  while (frames[count - 1].more()) {
    if (count == kMaxFrames + 1) {
      zmq::message_t scratch;
      do (void)socket.recv(scratch);
      while (scratch.more());
      return count + 1;
    }
    (void)socket.recv(frames[count]);
    ++count;
  }
  return count;
}

// ---- the router -------------------------------------------------------------

class BareRouter {
 public:
  // Binds `bind` (a `*` port is resolved; see address()). `send_accepted`:
  // answer SUBMIT with ACCEPTED (flow id = request id), as mw::Client expects.
  // It goes right before the flow's RESULT, in the same wake-up of the
  // client, as mw-broker holds the ACCEPTED of a waiting submitter (up to
  // 2 ms, longer than a bench flow takes) to travel with its RESULT.
  BareRouter(const std::string& bind, bool send_accepted, const mw::StopSignal& stop)
      : socket_(context_, zmq::socket_type::router), stop_(stop), send_accepted_(send_accepted) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::router_mandatory, 1);
    socket_.set(zmq::sockopt::sndhwm, kRouterSendHighWaterMark);
    socket_.bind(bind);
    address_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  const std::string& address() const { return address_; }
  std::uint32_t registered() const { return registered_.load(); }

  void run() {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, stop_.fd(), ZMQ_POLLIN, 0}};
    std::array<zmq::message_t, kMaxFrames + 1> frames;
    for (;;) {
      zmq::poll(items, 2, kPollWait);
      if (items[1].revents & ZMQ_POLLIN) return;
      for (int n = 0; n < kRouterBatch; ++n) {
        const std::size_t count = recv_message(socket_, frames);
        if (count == 0) break;
        try {
          handle(frames, count);
        } catch (const mw::wire::DecodeError&) {
          // Only the bench's own peers talk to this router; a bad message is dropped.
        } catch (const zmq::error_t&) {
          // EHOSTUNREACH: the peer left; its message is dropped.
        }
      }
    }
  }

 private:
  static constexpr std::uint32_t kNoStage = UINT32_MAX;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct WorkerSlot {
    std::string id;  // routing id
    std::uint32_t stage = 0;
    std::uint32_t credit = 1;
    std::uint32_t in_flight = 0;
  };
  struct Waiting {
    std::uint64_t flow_id;
    std::string reply_to;
    zmq::message_t payload;
  };
  struct Stage {
    std::string type;
    std::uint32_t next = kNoStage;     // from the workers' READY; none: the flow ends here
    std::vector<std::size_t> workers;  // indexes into slots_
    std::size_t cursor = 0;            // round robin among those with credit
    std::deque<Waiting> queue;         // jobs waiting for credit
  };
  struct FlowRef {
    std::uint64_t flow_id;
    std::uint32_t stage;
    std::string reply_to;
  };

  void handle(std::array<zmq::message_t, kMaxFrames + 1>& frames, std::size_t count) {
    if (count < 2) return;
    const std::string peer(frames[0].data<char>(), frames[0].size());
    const mw::Command command = mw::wire::decode_tag(frames[1]);
    if (count == 2) {
      // mw::Worker's liveness check wants to hear from us.
      if (command == mw::Command::Heartbeat) send_message(socket_, &peer, mw::Command::Heartbeat, nullptr, nullptr);
      if (command == mw::Command::Disconnect) forget_worker(peer);
      return;
    }
    switch (command) {
      case mw::Command::Submit: {
        if (count != 4) return;
        const auto submit = mw::wire::decode_submit(frames[2]);
        route(stage_of(submit.type), submit.request_id, peer, frames[3]);
        break;
      }
      case mw::Command::Done: {
        if (count != 4) return;
        const auto done = mw::wire::decode_done(frames[2]);
        auto job = jobs_.extract(done.job_id);
        const auto worker = slot_by_id_.find(peer);
        if (job.empty() || worker == slot_by_id_.end()) return;
        const std::size_t slot_index = worker->second;
        --slots_[slot_index].in_flight;
        FlowRef& flow = job.mapped();
        const std::uint32_t next = stages_[flow.stage].next;
        if (next != kNoStage) {
          route(next, flow.flow_id, flow.reply_to, frames[3]);
        } else {
          if (send_accepted_) {
            zmq::message_t accepted = mw::wire::encode(mw::wire::Accepted{flow.flow_id, flow.flow_id});
            send_message(socket_, &flow.reply_to, mw::Command::Accepted, &accepted, nullptr);
          }
          zmq::message_t header = mw::wire::encode(
              mw::wire::Result{flow.flow_id, mw::kOutcomeDone, "", stages_[flow.stage].type, 1});
          send_message(socket_, &flow.reply_to, mw::Command::Result, &header, &frames[3]);
        }
        feed(slot_index);  // the credit just freed takes the oldest job waiting
        break;
      }
      case mw::Command::Ready: {
        const auto ready = mw::wire::decode_ready(frames[2]);
        if (slot_by_id_.count(peer)) return;
        const std::uint32_t stage = stage_of(ready.types.front());
        stages_[stage].next = ready.next.empty() ? kNoStage : stage_of(ready.next);
        const std::size_t slot_index = slots_.size();
        slot_by_id_.emplace(peer, slot_index);
        stages_[stage].workers.push_back(slot_index);
        slots_.push_back(WorkerSlot{peer, stage, ready.credit, 0});
        ++registered_;
        feed(slot_index);
        break;
      }
      default:  // HELLO needs no answer here
        break;
    }
  }

  std::uint32_t stage_of(std::string_view type) {
    if (auto it = stage_by_type_.find(type); it != stage_by_type_.end()) return it->second;
    const auto index = static_cast<std::uint32_t>(stages_.size());
    stages_.emplace_back().type = type;
    stage_by_type_.emplace(std::string(type), index);
    return index;
  }

  // Sends a job to a worker of `stage_index` with free credit, or queues it.
  void route(std::uint32_t stage_index, std::uint64_t flow_id, const std::string& reply_to, zmq::message_t& payload) {
    Stage& stage = stages_[stage_index];
    const std::size_t n = stage.workers.size();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (stage.cursor + k) % n;
      WorkerSlot& slot = slots_[stage.workers[i]];
      if (slot.in_flight >= slot.credit) continue;
      stage.cursor = (i + 1) % n;
      send_job(slot, flow_id, reply_to, payload);
      return;
    }
    stage.queue.push_back(Waiting{flow_id, reply_to, std::move(payload)});
  }

  // Gives a worker queued jobs of its stage up to its credit.
  void feed(std::size_t slot_index) {
    WorkerSlot& slot = slots_[slot_index];
    Stage& stage = stages_[slot.stage];
    while (slot.in_flight < slot.credit && !stage.queue.empty()) {
      Waiting next = std::move(stage.queue.front());
      stage.queue.pop_front();
      send_job(slot, next.flow_id, next.reply_to, next.payload);
    }
  }

  void send_job(WorkerSlot& slot, std::uint64_t flow_id, const std::string& reply_to, zmq::message_t& payload) {
    const std::uint64_t job_id = next_job_id_++;
    zmq::message_t header = mw::wire::encode(mw::wire::JobHeader{job_id, stages_[slot.stage].type, 1, flow_id, {}});
    send_message(socket_, &slot.id, mw::Command::Job, &header, &payload);
    jobs_.emplace(job_id, FlowRef{flow_id, slot.stage, reply_to});
    ++slot.in_flight;
  }

  // A worker that said DISCONNECT gets no more jobs. Jobs it still held are
  // not requeued: bench workers leave only after their last DONE.
  void forget_worker(const std::string& peer) {
    const auto it = slot_by_id_.find(peer);
    if (it == slot_by_id_.end()) return;
    WorkerSlot& slot = slots_[it->second];
    auto& list = stages_[slot.stage].workers;
    list.erase(std::remove(list.begin(), list.end(), it->second), list.end());
    stages_[slot.stage].cursor = 0;
    slot.credit = 0;
    slot_by_id_.erase(it);
  }

  zmq::context_t context_{1};
  zmq::socket_t socket_;
  const mw::StopSignal& stop_;
  std::string address_;
  bool send_accepted_;
  std::unordered_map<std::string, std::uint32_t, Hash, std::equal_to<>> stage_by_type_;
  std::deque<Stage> stages_;  // a deque: Stage is not copyable, and references stay valid
  std::vector<WorkerSlot> slots_;
  std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>> slot_by_id_;
  std::unordered_map<std::uint64_t, FlowRef> jobs_;  // in flight on a worker
  std::uint64_t next_job_id_ = 1;
  std::atomic<std::uint32_t> registered_{0};
};

// ---- a worker ---------------------------------------------------------------

// Registers with READY, then echoes every JOB's payload back as DONE, on its
// socket's thread.
void run_echo_worker(const std::string& address, std::uint32_t stage, std::uint32_t stages, std::uint32_t credit,
                     const mw::StopSignal& stop) {
  zmq::context_t context(1);
  zmq::socket_t socket = make_dealer(context, address);
  const std::string type = stage_type(stage);
  const std::string next = stage < stages ? stage_type(stage + 1) : std::string();
  mw::wire::Ready ready;
  ready.types.push_back(type);
  ready.next = next;
  ready.credit = credit;
  ready.host = "localhost";
  zmq::message_t header = mw::wire::encode(ready);
  send_message(socket, nullptr, mw::Command::Ready, &header, nullptr);

  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, stop.fd(), ZMQ_POLLIN, 0}};
  std::array<zmq::message_t, kMaxFrames + 1> frames;
  for (;;) {
    zmq::poll(items, 2, kPollWait);
    if (items[1].revents & ZMQ_POLLIN) {
      // Goodbye, so a router serving several runs forgets this worker.
      send_message(socket, nullptr, mw::Command::Disconnect, nullptr, nullptr);
      socket.set(zmq::sockopt::linger, kGoodbyeLingerMs);
      return;
    }
    while (const std::size_t count = recv_message(socket, frames)) {
      if (count != 3) continue;
      try {
        if (mw::wire::decode_tag(frames[0]) != mw::Command::Job) continue;
        const auto job = mw::wire::decode_job(frames[1]);
        zmq::message_t done = mw::wire::encode(mw::wire::Done{job.job_id, std::nullopt});
        send_message(socket, nullptr, mw::Command::Done, &done, &frames[2]);
      } catch (const mw::wire::DecodeError&) {
      }
    }
  }
}

// ---- the producer -------------------------------------------------------------

struct RunResult {
  double seconds = 0;
  std::vector<std::int64_t> latency_ns;
};

// Same loop as mw bench: keep `window` flows in flight, time each from
// SUBMIT to RESULT. The flow id is the request id (no ACCEPTED here).
RunResult drive(zmq::socket_t& socket, const BenchOptions& o, std::uint64_t& next_request, const std::string& payload,
                std::uint64_t jobs, Clock::time_point deadline) {
  RunResult run;
  run.latency_ns.reserve(jobs);
  std::unordered_map<std::uint64_t, Clock::time_point> sent_at;
  sent_at.reserve(o.window * 2);
  const std::string first_type = stage_type(1);
  std::uint64_t sent = 0, finished = 0;
  auto last_heard = Clock::now();
  const auto started = Clock::now();
  std::array<zmq::message_t, kMaxFrames + 1> frames;
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};

  while (finished < jobs) {
    while (sent < jobs && sent - finished < o.window) {
      const std::uint64_t request = ++next_request;
      mw::wire::Submit submit;
      submit.request_id = request;
      submit.type = first_type;
      submit.wait = true;
      zmq::message_t header = mw::wire::encode(submit);
      zmq::message_t body(payload.data(), payload.size());
      sent_at.emplace(request, Clock::now());
      send_message(socket, nullptr, mw::Command::Submit, &header, &body);
      ++sent;
    }
    std::size_t count = recv_message(socket, frames);
    if (count == 0) {
      zmq::poll(&item, 1, kPollWait);
      const auto now = Clock::now();
      if (item.revents & ZMQ_POLLIN) continue;
      if (now - last_heard > kStallLimit) throw mw::Error("the bare router went silent for 10 s");
      if (now >= deadline) throw mw::Error("--timeout reached");
      continue;
    }
    const auto now = Clock::now();
    last_heard = now;
    if (count != 3 || mw::wire::decode_tag(frames[0]) != mw::Command::Result) continue;
    const auto result = mw::wire::decode_result(frames[1]);
    auto it = sent_at.find(result.flow_id);
    if (it == sent_at.end()) continue;
    run.latency_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - it->second).count());
    sent_at.erase(it);
    ++finished;
    if (now >= deadline) throw mw::Error("--timeout reached");
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return run;
}

// The producer loop of mw bench itself (mw::Client, ACCEPTED then RESULT),
// for --mw-client.
RunResult drive_mw_client(mw::Client& client, const BenchOptions& o, const std::string& payload, std::uint64_t jobs,
                          Clock::time_point deadline) {
  RunResult run;
  run.latency_ns.reserve(jobs);
  std::unordered_map<std::uint64_t, Clock::time_point> sent_by_request, sent_by_flow;
  sent_by_request.reserve(o.window * 2);
  sent_by_flow.reserve(o.window * 2);
  const std::string first_type = stage_type(1);
  std::uint64_t sent = 0, finished = 0;
  auto last_heard = Clock::now();
  const auto started = Clock::now();
  while (finished < jobs) {
    while (sent < jobs && sent - finished < o.window) {
      const auto now = Clock::now();
      sent_by_request.emplace(client.send_submit(first_type, payload, true), now);
      ++sent;
    }
    auto event = client.next_event(kPollWait);
    const auto now = Clock::now();
    if (!event) {
      if (now - last_heard > kStallLimit) throw mw::Error("the bare router went silent for 10 s");
      if (now >= deadline) throw mw::Error("--timeout reached");
      continue;
    }
    last_heard = now;
    if (event->kind == mw::ClientEvent::Kind::Accepted) {
      auto it = sent_by_request.find(event->request_id);
      if (it == sent_by_request.end()) continue;
      sent_by_flow.emplace(event->flow_id, it->second);
      sent_by_request.erase(it);
    } else if (event->kind == mw::ClientEvent::Kind::Result) {
      auto it = sent_by_flow.find(event->flow_id);
      if (it == sent_by_flow.end()) continue;
      run.latency_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - it->second).count());
      sent_by_flow.erase(it);
      ++finished;
    }
    if (now >= deadline) throw mw::Error("--timeout reached");
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return run;
}

double quantile_us(const std::vector<std::int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

double round1(double v) { return std::round(v * 10.0) / 10.0; }

// The output of mw bench, field for field.
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
                        {"window", o.window},
                        {"jobs", o.jobs},
                        {"payload", o.payload},
                        {"serial", o.serial},
                        {"seconds", std::round(run.seconds * 1e4) / 1e4},
                        {"jobs_per_second", round1(per_second)},
                        {"stage_jobs_per_second", round1(per_second * o.stages)},
                        {"latency_us", {{"p50", round1(p50)}, {"p99", round1(p99)}, {"p999", round1(p999)},
                                        {"max", round1(max)}}}};
    // Only in the attribution modes, so the default output has mw bench's keys exactly.
    if (o.mw_workers) j["mw_workers"] = true;
    if (o.mw_client) j["mw_client"] = true;
    std::cout << j.dump() << std::endl;
    return;
  }
  std::printf("bare ROUTER: %u stage(s) x %u worker(s), concurrency %u, window %zu, %llu jobs of %zu payload bytes%s\n",
              o.stages, o.workers, o.concurrency, o.window, static_cast<unsigned long long>(o.jobs), o.payload,
              o.serial ? " (serial)" : "");
  if (o.mw_workers || o.mw_client)
    std::printf("  with mw's own %s%s%s\n", o.mw_workers ? "mw::Worker workers" : "", o.mw_workers && o.mw_client ? " and " : "",
                o.mw_client ? "mw::Client producer (and ACCEPTED)" : "");
  if (!o.mw_client)
    std::printf("  (no ACCEPTED: %u messages per flow where mw sends %u)\n", 2 * o.stages + 2, 2 * o.stages + 3);
  std::printf("  %.0f jobs/s (%.0f stage jobs/s) over %.3f s\n", per_second, per_second * o.stages, run.seconds);
  std::printf("  end-to-end latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", p50, p99, p999, max);
}

std::optional<BenchOptions> parse(int argc, char** argv) {
  cxxopts::Options options("mw-bench-bare-router",
                           "The workload of `mw bench` through a minimal single-threaded ROUTER loop in this process:\n"
                           "the ceiling for mw-broker on this machine. No ACCEPTED is sent (one message fewer per flow).");
  options.add_options()
      ("stages", "pipeline stages K", cxxopts::value<std::uint32_t>()->default_value("2"))
      ("workers", "workers per stage W", cxxopts::value<std::uint32_t>()->default_value("1"))
      ("concurrency", "credit of each worker C", cxxopts::value<std::uint32_t>()->default_value("64"))
      ("jobs", "flows to time (default 200000; with --serial 20000)", cxxopts::value<std::uint64_t>()->default_value("0"))
      ("warmup", "flows run first and left out of the figures", cxxopts::value<std::uint64_t>()->default_value("500"))
      ("payload", "payload size: a msgpack string of this many bytes", cxxopts::value<std::size_t>()->default_value("50"))
      ("window", "flows in flight (default W*C*K*2; --serial: 1)", cxxopts::value<std::size_t>()->default_value("0"))
      ("serial", "one flow at a time")
      ("json", "print one JSON object")
      ("mw-workers", "use mw::Worker echo workers instead of bare ones (to attribute cost)")
      ("mw-client", "produce with mw::Client instead of a bare DEALER; the router then sends ACCEPTED "
                    "(with --serve: send ACCEPTED)")
      ("serve", "run only the router until SIGINT/SIGTERM; prints \"mw-bench-bare-router serving ADDR\" on stderr")
      ("bind", "with --serve: the address to bind", cxxopts::value<std::string>()->default_value("tcp://127.0.0.1:*"))
      ("router", "run workers and producer against a router started with --serve at this address",
       cxxopts::value<std::string>()->default_value(""))
      ("timeout", "give up after this many seconds", cxxopts::value<double>()->default_value("300"))
      ("h,help", "print this help");
  auto args = options.parse(argc, argv);
  if (args.count("help")) {
    std::cout << options.help() << std::endl;
    return std::nullopt;
  }
  if (!args.unmatched().empty()) throw mw::Error("unexpected argument '" + args.unmatched().front() + "'");
  BenchOptions o;
  o.stages = args["stages"].as<std::uint32_t>();
  o.workers = args["workers"].as<std::uint32_t>();
  o.concurrency = args["concurrency"].as<std::uint32_t>();
  o.jobs = args["jobs"].as<std::uint64_t>();
  o.warmup = args["warmup"].as<std::uint64_t>();
  o.payload = args["payload"].as<std::size_t>();
  o.window = args["window"].as<std::size_t>();
  o.serial = args.count("serial") > 0;
  o.json = args.count("json") > 0;
  o.mw_workers = args.count("mw-workers") > 0;
  o.mw_client = args.count("mw-client") > 0;
  o.serve = args.count("serve") > 0;
  o.bind = args["bind"].as<std::string>();
  o.router = args["router"].as<std::string>();
  if (o.serve && !o.router.empty()) throw mw::Error("--serve and --router do not go together");
  const double timeout_s = args["timeout"].as<double>();
  if (o.stages < 1 || o.stages > kMaxStages) throw mw::Error("--stages must be between 1 and 64");
  if (o.workers < 1 || o.workers > kMaxWorkersPerStage) throw mw::Error("--workers must be between 1 and 256");
  if (o.concurrency < 1 || o.concurrency > mw::kMaxCredit) throw mw::Error("--concurrency must be between 1 and 10000");
  if (o.payload > kMaxPayloadBytes) throw mw::Error("--payload is too large");
  if (!(timeout_s > 0) || timeout_s > 1e6) throw mw::Error("--timeout must be a positive number of seconds");
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(timeout_s * 1000)));
  if (o.jobs == 0) o.jobs = o.serial ? kDefaultSerialJobs : kDefaultJobs;
  if (o.serial) o.window = 1;
  if (o.window == 0) o.window = std::size_t{o.workers} * o.concurrency * o.stages * kWindowPerCredit;
  return o;
}

// --serve: the router alone, for runs from other processes (--router), so
// that the process layout matches mw-broker + mw bench.
int serve(const BenchOptions& o, const mw::StopSignal& stop) {
  BareRouter router(o.bind, /*send_accepted=*/o.mw_client, stop);
  std::fprintf(stderr, "mw-bench-bare-router serving %s\n", router.address().c_str());
  router.run();
  return 0;
}

int run(const BenchOptions& o) {
  const auto deadline = Clock::now() + o.timeout;
  mw::StopSignal router_stop, worker_stop;
  // In this process unless --router names one running elsewhere (--serve).
  std::unique_ptr<BareRouter> local_router;
  if (o.router.empty()) local_router = std::make_unique<BareRouter>("tcp://127.0.0.1:*", o.mw_client, router_stop);
  const std::string address = local_router ? local_router->address() : o.router;
  std::vector<std::unique_ptr<mw::Worker>> mw_workers;
  std::vector<std::jthread> worker_threads;
  std::jthread router_thread;
  // Stop and join on every path out of here: workers first, so that they
  // can still say goodbye to the router.
  struct Joiner {
    mw::StopSignal& worker_stop;
    std::vector<std::jthread>& workers;
    mw::StopSignal& router_stop;
    std::jthread& router;
    ~Joiner() {
      worker_stop.notify();
      workers.clear();
      router_stop.notify();
      if (router.joinable()) router.join();
    }
  } joiner{worker_stop, worker_threads, router_stop, router_thread};
  if (local_router) router_thread = std::jthread([r = local_router.get()] { r->run(); });
  for (std::uint32_t s = 1; s <= o.stages; ++s) {
    for (std::uint32_t w = 0; w < o.workers; ++w) {
      if (!o.mw_workers) {
        worker_threads.emplace_back(
            [&, s] { run_echo_worker(address, s, o.stages, o.concurrency, worker_stop); });
        continue;
      }
      mw::WorkerOptions wo;
      wo.broker = address;
      wo.types = {stage_type(s)};
      if (s < o.stages) wo.next = stage_type(s + 1);
      wo.concurrency = o.concurrency;
      wo.threads = 1;
      mw_workers.push_back(std::make_unique<mw::Worker>(std::move(wo), [](const mw::Job& job) { return job.payload; }));
      worker_threads.emplace_back([&worker_stop, w = mw_workers.back().get()] { w->run(worker_stop); });
    }
  }

  // A router elsewhere queues jobs until its workers are READY; the warm-up
  // runs first in either case.
  while (local_router && local_router->registered() < o.stages * o.workers) {
    if (Clock::now() >= deadline) throw mw::Error("workers did not register with the bare router in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  const std::string payload = make_payload(o.payload);
  RunResult result;
  if (o.mw_client) {
    mw::Client client({address});
    if (o.warmup > 0) (void)drive_mw_client(client, o, payload, o.warmup, deadline);
    result = drive_mw_client(client, o, payload, o.jobs, deadline);
  } else {
    zmq::context_t context(1);
    zmq::socket_t producer = make_dealer(context, address);
    std::uint64_t next_request = 0;
    if (o.warmup > 0) (void)drive(producer, o, next_request, payload, o.warmup, deadline);
    result = drive(producer, o, next_request, payload, o.jobs, deadline);
  }
  report(o, result);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto options = parse(argc, argv);
    if (!options) return 0;
    if (options->serve) {
      auto stop = mw::StopSignal::on_signals();  // before ZeroMQ starts its threads
      return serve(*options, stop);
    }
    return run(*options);
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "mw-bench-bare-router: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw-bench-bare-router: %s\n", e.what());
    return 1;
  }
}
