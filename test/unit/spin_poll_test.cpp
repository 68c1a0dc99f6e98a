// mw/spin_poll.hpp: SpinPoll answers as zmq::poll does, whether it spins or
// sleeps, and its spin counts towards the timeout. Inproc sockets only.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include <zmq.hpp>

#include "mw/spin_poll.hpp"

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
