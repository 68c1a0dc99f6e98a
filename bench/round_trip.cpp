// mw-bench-round-trip — what the transport alone costs on this machine.
//
// One ZeroMQ round trip over TCP loopback between two processes: a DEALER
// sends a message, a ROUTER in a child process echoes it, the DEALER waits
// for it. Nothing else: no decoding, no routing, no state. A serial flow
// of `mw bench --stages 2` makes six such hops (SUBMIT, JOB, DONE, JOB,
// DONE, RESULT), three round trips, so three of these put `mw bench
// --serial` in scale: how much of a flow's latency is the transport's.
// It is not a strict floor: here both processes sleep between messages,
// and waking an idle CPU (a halted vCPU, on a virtual machine) costs more
// than waking a thread on a CPU that the busier pipeline keeps awake.
//
//   mw-bench-round-trip [--round-trips N] [--payload BYTES] [--json]
//
// The child is forked before either process starts ZeroMQ (a context must
// not cross a fork), reports its address through a pipe and exits on an
// empty message, or by itself once its parent is gone.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kStartTimeoutMs = 5000;
constexpr int kAnswerTimeoutMs = 5000;
constexpr std::size_t kWarmUp = 1000;

// The child: echo every message back to its sender until an empty one.
[[noreturn]] void serve_echo(int address_pipe) {
  int status = 0;
  try {
    zmq::context_t context(1);
    zmq::socket_t router(context, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    const std::string address = router.get(zmq::sockopt::last_endpoint);
    if (::write(address_pipe, address.data(), address.size()) != static_cast<ssize_t>(address.size())) ::_exit(1);
    ::close(address_pipe);
    const pid_t parent = ::getppid();
    // A blocking receive (a timeout to notice an orphaned child), not a
    // poll: zmq_poll costs extra system calls per message, and this
    // measures the transport alone.
    router.set(zmq::sockopt::rcvtimeo, 1000);
    for (;;) {
      zmq::message_t id;
      if (!router.recv(id)) {
        if (::getppid() != parent) break;  // the parent died without saying so
        continue;
      }
      zmq::message_t body;
      if (!router.recv(body)) continue;
      if (body.size() == 0) break;
      router.send(id, zmq::send_flags::sndmore);
      router.send(body, zmq::send_flags::none);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw-bench-round-trip (echo): %s\n", e.what());
    status = 1;
  }
  ::_exit(status);
}

std::string read_address(int address_pipe) {
  pollfd item{address_pipe, POLLIN, 0};
  if (::poll(&item, 1, kStartTimeoutMs) <= 0) throw std::runtime_error("the echo process did not start in 5 s");
  char buffer[256];
  const ssize_t n = ::read(address_pipe, buffer, sizeof buffer);
  if (n <= 0) throw std::runtime_error("the echo process could not bind a loopback port");
  return std::string(buffer, static_cast<std::size_t>(n));
}

// Stops the child on every way out of main: the empty message when the
// socket still works, else (or if it does not leave within 2 s) SIGKILL.
struct Child {
  pid_t pid = -1;
  ~Child() {
    if (pid <= 0) return;
    for (int waited_ms = 0; waited_ms < 2000; waited_ms += 10) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
      ::usleep(10'000);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

double percentile(const std::vector<double>& sorted, double p) {
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[index];
}

int run(std::size_t round_trips, std::size_t payload_bytes, bool json) {
  int address_pipe[2];
  if (::pipe(address_pipe) != 0) throw std::runtime_error("pipe failed");
  Child child;
  child.pid = ::fork();
  if (child.pid < 0) throw std::runtime_error("fork failed");
  if (child.pid == 0) {
    ::close(address_pipe[0]);
    serve_echo(address_pipe[1]);
  }
  ::close(address_pipe[1]);
  const std::string address = read_address(address_pipe[0]);
  ::close(address_pipe[0]);

  zmq::context_t context(1);
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 1000);
  dealer.set(zmq::sockopt::rcvtimeo, kAnswerTimeoutMs);
  dealer.connect(address);

  const std::string body(std::max<std::size_t>(payload_bytes, 1), 'x');
  std::vector<double> micros;
  micros.reserve(round_trips);
  for (std::size_t i = 0; i < kWarmUp + round_trips; ++i) {
    const auto start = Clock::now();
    dealer.send(zmq::buffer(body), zmq::send_flags::none);
    zmq::message_t answer;
    if (!dealer.recv(answer)) throw std::runtime_error("no echo within 5 s");
    if (i >= kWarmUp) micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  dealer.send(zmq::message_t(), zmq::send_flags::none);  // the child's cue to leave

  std::sort(micros.begin(), micros.end());
  const double p50 = percentile(micros, 0.50);
  const double p99 = percentile(micros, 0.99);
  const double p999 = percentile(micros, 0.999);
  if (json) {
    std::cout << nlohmann::json{{"round_trips", round_trips}, {"payload", body.size()}, {"p50", p50},
                                {"p99", p99}, {"p999", p999}, {"max", micros.back()}}
                     .dump()
              << "\n";
  } else {
    std::printf("ZeroMQ round trip over TCP loopback, two processes, %zu-byte message, %zu round trips:\n",
                body.size(), round_trips);
    std::printf("  p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n", p50, p99, p999, micros.back());
    std::printf("  a serial flow through 2 stages makes 3 round trips: %.0f us of transport at p50, for scale\n",
                3 * p50);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("mw-bench-round-trip",
                           "One ZeroMQ round trip between two processes over TCP loopback: what the transport "
                           "alone costs, to put `mw bench --serial` in scale.");
  options.add_options()
      ("round-trips", "round trips to time", cxxopts::value<std::size_t>()->default_value("20000"))
      ("payload", "message bytes", cxxopts::value<std::size_t>()->default_value("50"))
      ("json", "print one JSON object")
      ("h,help", "this help");
  try {
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    const auto round_trips = args["round-trips"].as<std::size_t>();
    if (round_trips == 0) throw std::runtime_error("--round-trips must be at least 1");
    return run(round_trips, args["payload"].as<std::size_t>(), args.count("json") > 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw-bench-round-trip: %s\n", e.what());
    return 1;
  }
}
