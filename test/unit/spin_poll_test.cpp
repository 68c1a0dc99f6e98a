// mw/spin_poll.hpp: SpinPoll answers as zmq::poll does, whether it spins or
// sleeps; it spins only while traffic is steady, and its spin counts towards
// the timeout. And mw-broker's loop (BrokerServer, on loopback) does not spin
// for heartbeats alone. Whether a thread spun is told by its CPU time (a spin
// of 100 ms or more burns some; a sleep almost none), with wide margins, as
// the machine may be busy with other tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <pthread.h>
#include <time.h>

#include <chrono>
#include <thread>

#include <zmq.hpp>

#include "mw/broker/server.hpp"
#include "mw/client.hpp"
#include "mw/log.hpp"
#include "mw/error.hpp"
#include "mw/spin_poll.hpp"
#include "mw/stop_signal.hpp"
#include "mw/wire.hpp"
#include "mw/worker.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A PAIR of inproc sockets: `sender` writes, `receiver` is polled.
struct Pipe {
  zmq::context_t context{0};
  zmq::socket_t receiver{context, zmq::socket_type::pair};
  zmq::socket_t sender{context, zmq::socket_type::pair};
  Pipe() {
    receiver.bind("inproc://spin-poll-test");
    sender.connect("inproc://spin-poll-test");
  }
  void send() { sender.send(zmq::str_buffer("x"), zmq::send_flags::none); }
  void receive() {
    zmq::message_t m;
    REQUIRE(receiver.recv(m, zmq::recv_flags::dontwait));
  }
};

// A SpinPoll with a 200 ms spin that believes traffic is steady (its last
// sleep ended with input at once), so its next wait spins first.
struct SteadyPoller {
  Pipe pipe;
  mw::SpinPoll poller{std::chrono::microseconds(200'000)};
  zmq::pollitem_t items[1] = {{pipe.receiver.handle(), 0, ZMQ_POLLIN, 0}};
  SteadyPoller() {
    pipe.send();
    REQUIRE(poller.poll(items, 1, milliseconds(1000)) == 1);
    pipe.receive();
  }
  int poll(milliseconds timeout) { return poller.poll(items, 1, timeout); }
};

std::chrono::nanoseconds cpu_time(clockid_t clock) {
  timespec t{};
  REQUIRE(clock_gettime(clock, &t) == 0);
  return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}
std::chrono::nanoseconds thread_cpu_time() { return cpu_time(CLOCK_THREAD_CPUTIME_ID); }

// CPU time of a quiet poll of `items` for 200 ms.
std::chrono::nanoseconds cpu_of_quiet_poll(mw::SpinPoll& poller, zmq::pollitem_t* items, std::size_t count) {
  const auto cpu_before = thread_cpu_time();
  CHECK(poller.poll(items, count, milliseconds(200)) == 0);
  return thread_cpu_time() - cpu_before;
}

}  // namespace

TEST_CASE("with no spin it is zmq::poll: input is reported, a quiet socket times out with nothing") {
  Pipe pipe;
  mw::SpinPoll poller(std::chrono::microseconds(0));
  zmq::pollitem_t items[] = {{pipe.receiver.handle(), 0, ZMQ_POLLIN, 0}};
  CHECK(poller.poll(items, 1, milliseconds(5)) == 0);
  CHECK(items[0].revents == 0);
  pipe.send();
  CHECK(poller.poll(items, 1, milliseconds(1000)) == 1);
  CHECK((items[0].revents & ZMQ_POLLIN) != 0);
}

TEST_CASE("while steady, input that comes during the spin is reported, and nothing is reported without input") {
  SteadyPoller steady;
  std::thread late_sender([&] {
    std::this_thread::sleep_for(milliseconds(20));
    steady.pipe.send();
  });
  const int ready = steady.poll(milliseconds(5000));
  late_sender.join();
  CHECK(ready == 1);
  CHECK((steady.items[0].revents & ZMQ_POLLIN) != 0);
  steady.pipe.receive();
  // Steady still (the spin found input): a quiet socket now spins, then
  // reports nothing.
  CHECK(steady.poll(milliseconds(5)) == 0);
  CHECK(steady.items[0].revents == 0);
}

TEST_CASE("the spin counts towards the timeout: a wait of 1 ms is not made 200 ms long by a 200 ms spin") {
  SteadyPoller steady;
  const auto started = Clock::now();
  CHECK(steady.poll(milliseconds(1)) == 0);
  // 1 ms plus scheduling; a spin that ignored the timeout takes 200 ms.
  CHECK(Clock::now() - started < milliseconds(150));
}

TEST_CASE("a timeout of 0 only looks: it returns at once, input or not") {
  SteadyPoller steady;
  const auto started = Clock::now();
  CHECK(steady.poll(milliseconds(0)) == 0);
  CHECK(Clock::now() - started < milliseconds(150));
  steady.pipe.send();
  CHECK(steady.poll(milliseconds(0)) == 1);
}

TEST_CASE("it spins only while steady: a wait that ended with nothing makes the next one sleep") {
  SteadyPoller steady;
  auto cpu_before = thread_cpu_time();
  CHECK(steady.poll(milliseconds(300)) == 0);  // spins 200 ms, then sleeps 100 ms
  CHECK(thread_cpu_time() - cpu_before >= milliseconds(20));
  cpu_before = thread_cpu_time();
  CHECK(steady.poll(milliseconds(300)) == 0);  // no longer steady: sleeps
  CHECK(thread_cpu_time() - cpu_before < milliseconds(20));
}

TEST_CASE("told that what it found was not traffic, a steady poller sleeps") {
  SteadyPoller steady;
  steady.poller.not_traffic();
  const auto cpu_before = thread_cpu_time();
  CHECK(steady.poll(milliseconds(300)) == 0);
  CHECK(thread_cpu_time() - cpu_before < milliseconds(20));
}

TEST_CASE("a poller that never saw steady input sleeps from the start") {
  Pipe pipe;
  mw::SpinPoll poller(std::chrono::microseconds(200'000));
  zmq::pollitem_t items[] = {{pipe.receiver.handle(), 0, ZMQ_POLLIN, 0}};
  const auto cpu_before = thread_cpu_time();
  CHECK(poller.poll(items, 1, milliseconds(300)) == 0);
  CHECK(thread_cpu_time() - cpu_before < milliseconds(20));
}

TEST_CASE("a negative timeout waits for input without a limit, after the spin too") {
  SteadyPoller steady;
  std::thread late_sender([&] {
    std::this_thread::sleep_for(milliseconds(300));  // after the 200 ms spin
    steady.pipe.send();
  });
  const int ready = steady.poll(milliseconds(-1));
  late_sender.join();
  CHECK(ready == 1);
  CHECK((steady.items[0].revents & ZMQ_POLLIN) != 0);
}

TEST_CASE("Worker and Client refuse a spin longer than kMaxSpinUs, by name") {
  mw::WorkerOptions worker_options;
  worker_options.types = {"t"};
  worker_options.spin_us = mw::kMaxSpinUs + 1;
  CHECK_THROWS_WITH_AS(mw::Worker(worker_options, [](const mw::Job& job) { return job.payload; }),
                       "--spin-us must be between 0 (never) and 10000", mw::UsageError);
  mw::ClientOptions client_options;
  client_options.spin_us = mw::kMaxSpinUs + 1;
  CHECK_THROWS_WITH_AS(mw::Client{client_options}, "spin_us must be between 0 (never) and 10000", mw::UsageError);
  client_options.spin_us = mw::kMaxSpinUs;
  CHECK_NOTHROW(mw::Client{client_options});
}

TEST_CASE("steady means input came within the spin (when longer than 200 us) of the wait's start: at 50 ms of a 200 ms spin it is, at 500 ms it is not") {
  for (const auto& [input_after, spins_next] : {std::pair{milliseconds(50), true}, std::pair{milliseconds(500), false}}) {
    INFO("input after ", input_after.count(), " ms");
    Pipe pipe;
    mw::SpinPoll poller(std::chrono::microseconds(200'000));
    zmq::pollitem_t items[] = {{pipe.receiver.handle(), 0, ZMQ_POLLIN, 0}};
    std::thread late_sender([&] {
      std::this_thread::sleep_for(input_after);
      pipe.send();
    });
    CHECK(poller.poll(items, 1, milliseconds(5000)) == 1);  // a sleep: nothing was steady before
    late_sender.join();
    pipe.receive();
    const auto cpu = cpu_of_quiet_poll(poller, items, 1);
    if (spins_next) CHECK(cpu >= milliseconds(20));
    else CHECK(cpu < milliseconds(20));
  }
}

TEST_CASE("input that came only after a whole spin and then a sleep does not keep it steady: the next wait sleeps") {
  // The wait counts from its start, the spin too: 450 ms into a wait with a
  // 200 ms spin is past the window, although the sleep itself was shorter
  // than the old rule's 4 spins.
  SteadyPoller steady;
  std::thread late_sender([&] {
    std::this_thread::sleep_for(milliseconds(450));
    steady.pipe.send();
  });
  CHECK(steady.poll(milliseconds(5000)) == 1);
  late_sender.join();
  steady.pipe.receive();
  CHECK(cpu_of_quiet_poll(steady.poller, steady.items, 1) < milliseconds(20));
}

TEST_CASE("only input on the first item makes traffic steady") {
  Pipe traffic;
  Pipe other;  // say, a wake-up descriptor of the loop's own
  mw::SpinPoll poller(std::chrono::microseconds(100'000));
  zmq::pollitem_t items[] = {{traffic.receiver.handle(), 0, ZMQ_POLLIN, 0}, {other.receiver.handle(), 0, ZMQ_POLLIN, 0}};
  other.send();
  CHECK(poller.poll(items, 2, milliseconds(5000)) == 1);
  CHECK((items[1].revents & ZMQ_POLLIN) != 0);
  other.receive();
  CHECK(cpu_of_quiet_poll(poller, items, 2) < milliseconds(20));
}

TEST_CASE("mw-broker does not spin for heartbeats alone: a peer heartbeating every 2 ms leaves its loop asleep") {
  // With 10 ms spins a 10 ms window: every wait between these heartbeats
  // is shorter, so a loop that counted them as traffic would spin all along.
  mw::set_log_level(mw::LogLevel::warn);  // not its "stopping" line
  mw::broker::ServerOptions options;
  options.bind = "tcp://127.0.0.1:*";
  options.pub = "tcp://127.0.0.1:*";
  options.spin_us = mw::kMaxSpinUs;
  mw::broker::BrokerServer server(options);
  mw::StopSignal stop;
  std::thread loop([&] { server.run(stop); });
  clockid_t loop_clock{};
  REQUIRE(pthread_getcpuclockid(loop.native_handle(), &loop_clock) == 0);

  zmq::context_t context(1);
  zmq::socket_t peer(context, zmq::socket_type::dealer);
  peer.set(zmq::sockopt::linger, 0);
  peer.connect(server.bound_address());
  const auto heartbeats = [&](int count) {
    for (int i = 0; i < count; ++i) {
      peer.send(mw::wire::encode_tag(mw::Command::Heartbeat), zmq::send_flags::none);
      zmq::message_t answer;  // a DISCONNECT: the broker never met this peer
      while (peer.recv(answer, zmq::recv_flags::dontwait)) {
      }
      std::this_thread::sleep_for(milliseconds(2));
    }
  };
  heartbeats(20);  // connected, and the loop past its start
  const auto cpu_before = cpu_time(loop_clock);
  heartbeats(150);
  const auto cpu = cpu_time(loop_clock) - cpu_before;
  stop.notify();
  loop.join();
  // A few microseconds a turn; a spinning loop burns most of the 300 ms.
  CHECK(cpu < milliseconds(60));
}

TEST_CASE("BrokerServer refuses a spin longer than kMaxSpinUs") {
  mw::broker::ServerOptions options;
  options.bind = "tcp://127.0.0.1:*";
  options.pub = "tcp://127.0.0.1:*";
  options.spin_us = mw::kMaxSpinUs + 1;
  CHECK_THROWS_WITH_AS(mw::broker::BrokerServer{options}, "spin_us must be between 0 (never) and 10000", mw::UsageError);
}
