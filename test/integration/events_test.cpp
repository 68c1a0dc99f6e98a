// Event subscriptions while the broker is busy publishing: the broker
// watches its event socket by its descriptor (docs/ARCHITECTURE.md), so a
// subscription that arrives while it publishes a stream of other events
// must still be noticed, and its events sent.
#include <atomic>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "in_process_worker.hpp"
#include "mw/client.hpp"
#include "mw/error.hpp"
#include "mw/listener.hpp"

using namespace mwtest;
using nlohmann::json;

namespace {

mw::WorkerOptions worker_of(const Cluster& cluster, std::string type) {
  mw::WorkerOptions options;
  options.broker = cluster.address();
  options.types = {std::move(type)};
  return options;
}

// The first event on `topic` within `within`, skipping heartbeats.
std::optional<mw::Event> next_on(mw::Listener& listener, std::string_view topic, std::chrono::milliseconds within) {
  const auto give_up = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < give_up)
    if (auto event = listener.next(100ms); event && event->topic == topic) return event;
  return std::nullopt;
}

}  // namespace

TEST_CASE("a listener that subscribes while the broker publishes a stream of events gets its own events") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "100"});
  InProcessWorker echo(worker_of(cluster, "echo"), [](const mw::Job& job) { return job.payload; });
  InProcessWorker doomed(worker_of(cluster, "doomed"), [](const mw::Job&) -> mw::Payload {
    throw mw::JobError("this job always fails", /*retryable=*/false);
  });
  REQUIRE(cluster.wait_for_workers("echo", 1));
  REQUIRE(cluster.wait_for_workers("doomed", 1));

  // One listener of every flow's end keeps the broker publishing while
  // flows stream through it. The stream never throws: a failed test
  // unwinds through the thread's stop, not through a terminate.
  mw::Listener busy_listener({.broker = cluster.address(), .topics = {"$mw.flow.done"}});
  std::atomic<std::uint64_t> streamed{0};
  std::jthread stream([&](std::stop_token stop) {
    try {
      mw::Client client({cluster.address()});
      while (!stop.stop_requested()) {
        client.submit("echo", mw::Payload::of(1));
        ++streamed;
      }
    } catch (const std::exception&) {
      // The check below sees the stream stop short.
    }
  });
  REQUIRE(wait_until([&] { return streamed.load() > 200; }, 10s));

  // Each new listener's subscription reaches the broker mid-stream, each a
  // prefix no earlier listener asked for, so the broker must take in a new
  // subscription every round; each must hear of the job that dies after
  // it is live.
  mw::Client client({cluster.address()});
  const char* patterns[] = {"$mw.job.dead", "$mw.job.dea*", "$mw.job.de*", "$mw.job.d*", "$mw.job.*"};
  for (const char* pattern : patterns) {
    CAPTURE(pattern);
    mw::Listener listener({.broker = cluster.address(), .topics = {pattern, "$mw.heartbeat"}});
    REQUIRE(next_on(listener, mw::kHeartbeatTopic, 10s));
    const auto flow = client.submit("doomed", mw::Payload::of(1), {.max_attempts = 1});
    const auto dead = next_on(listener, "$mw.job.dead", 10s);
    REQUIRE(dead);
    CHECK(dead->flow_id == flow);
  }
  const auto streamed_before = streamed.load();
  CHECK(wait_until([&] { return streamed.load() > streamed_before; }, 10s));  // the stream never stopped
  stream.request_stop();
}
