// A job's progress (Job::report_progress, mw-exec's $MW_PROGRESS_FD): the
// broker shows the newest in $flows, mw flows and mw result while the job
// runs, publishes each on $mw.progress, and forgets it with the run.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "in_process_worker.hpp"
#include "mw/client.hpp"
#include "mw/listener.hpp"

using namespace mwtest;
using nlohmann::json;

namespace {

// Waits until `listener`'s subscriptions are live: a broker heartbeat (it
// must subscribe to "$mw.heartbeat") has come through.
bool await_live(mw::Listener& listener) {
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < give_up)
    if (auto event = listener.next(500ms); event && event->topic == mw::kHeartbeatTopic) return true;
  return false;
}

// A worker of `type` at the cluster's broker with `threads` handler threads.
mw::WorkerOptions worker_options(const Cluster& cluster, std::string type, std::uint32_t threads) {
  mw::WorkerOptions options;
  options.broker = cluster.address();
  options.types = {std::move(type)};
  options.threads = threads;
  return options;
}

// The progress $flows shows for `flow`, or null when it shows none.
json progress_of(mw::Client& client, std::uint64_t flow) {
  const auto record = client.call("$flows", "get", std::to_string(flow));
  return record.contains("progress") ? json::parse(record["progress"].dump()) : json();
}

}  // namespace

TEST_CASE("progress: a handler's values show while it runs, are published, and are few however often it reports") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});
  std::uint32_t threads = 1;
  SUBCASE("one handler thread: the keeper sends its progress") { threads = 1; }
  SUBCASE("a pool of two handler threads: the socket's thread sends it") { threads = 2; }
  std::atomic<int> stage{0};  // the test moves the handler on
  const auto options = worker_options(cluster, "long", threads);
  InProcessWorker worker(options, [&](const mw::Job& job) {
    auto wait_for_stage = [&](int wanted) {
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (stage.load() < wanted && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(2ms);
    };
    job.report_progress(mw::Payload::from_json(json{{"step", "download"}, {"done", 0}}));
    wait_for_stage(1);
    // A burst: only the newest is kept, and values leave at most every 100 ms.
    for (int i = 1; i <= 1000; ++i) job.report_progress(mw::Payload::of(i));
    wait_for_stage(2);
    return mw::Payload::of(std::string("finished"));
  });
  REQUIRE(cluster.wait_for_workers("long", 1));

  mw::Listener listener({.broker = cluster.address(), .topics = {"$mw.progress", "$mw.heartbeat"}});
  REQUIRE(await_live(listener));
  mw::Client client({cluster.address()});
  const auto flow = submit_waiting(client, "long", json{{"n", 1}});
  REQUIRE(wait_until([&] { return progress_of(client, flow) == json{{"step", "download"}, {"done", 0}}; }, 10s));
  const auto listed = cluster.mw({"flows", "--json"});
  REQUIRE(listed.exit_status == 0);
  CHECK(json::parse(listed.out).at("progress") == json{{"step", "download"}, {"done", 0}});
  const auto pending = cluster.mw({"result", std::to_string(flow)});
  CHECK(pending.exit_status == 3);
  CHECK(pending.err.find("progress {\"done\":0,\"step\":\"download\"}") != std::string::npos);

  stage = 1;
  // The last of the burst always arrives, though it came within 100 ms of the one before.
  REQUIRE(wait_until([&] { return progress_of(client, flow) == 1000; }, 10s));
  std::vector<json> published;
  // Everything published so far: until 500 ms pass without a progress (heartbeats come between).
  for (auto quiet_until = std::chrono::steady_clock::now() + 500ms; std::chrono::steady_clock::now() < quiet_until;) {
    auto event = listener.next(100ms);
    if (!event || event->topic == mw::kHeartbeatTopic) continue;
    CHECK(event->flow_id == flow);
    CHECK(event->type == "long");
    published.push_back(event->data.to_json());
    quiet_until = std::chrono::steady_clock::now() + 500ms;
  }
  INFO("published: ", json(published).dump());
  REQUIRE(published.size() >= 2);
  CHECK(published.front() == json{{"step", "download"}, {"done", 0}});
  CHECK(published.back() == 1000);
  CHECK(published.size() <= 12);  // 1001 reports; at most one every 100 ms went out

  stage = 2;
  const auto outcome = client.wait(flow, 10s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
}

TEST_CASE("progress: the last value goes before the answer; a cancel callback may report one") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});
  std::uint32_t threads = 1;
  SUBCASE("one handler thread") { threads = 1; }
  SUBCASE("a pool of two handler threads") { threads = 2; }
  const auto options = worker_options(cluster, "steps", threads);
  std::atomic<bool> cancel_seen{false};
  InProcessWorker worker(options, [&](const mw::Job& job) {
    if (job.payload.to_json() == "quick") {
      job.report_progress(mw::Payload::of(std::string("first")));
      job.report_progress(mw::Payload::of(std::string("last")));  // within 100 ms of the first
      return mw::Payload::of(std::string("done"));
    }
    // The callback runs on the worker's thread that reads the CANCEL, with
    // its locks held: reporting from it must not stop the worker.
    std::stop_callback on_cancel(job.cancel, [&] {
      job.report_progress(mw::Payload::of(std::string("cancelling")));
      cancel_seen = true;
    });
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (!job.cancel.stop_requested() && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(5ms);
    return mw::Payload::of(std::string("stopped"));
  });
  REQUIRE(cluster.wait_for_workers("steps", 1));
  mw::Listener listener({.broker = cluster.address(), .topics = {"$mw.progress", "$mw.flow.done", "$mw.heartbeat"}});
  REQUIRE(await_live(listener));
  mw::Client client({cluster.address()});

  const auto quick = submit_waiting(client, "steps", "quick");
  const auto outcome = client.wait(quick, 10s);
  REQUIRE(outcome.has_value());
  // Only the newest value waits to be sent, so "first" may have been
  // replaced; "last" is always seen, and before the flow's end.
  std::vector<std::string> seen;  // "topic data", until the flow's end
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < give_up && (seen.empty() || !seen.back().starts_with("$mw.flow.done"))) {
    auto event = listener.next(100ms);
    if (event && event->flow_id == quick && event->topic != mw::kHeartbeatTopic)
      seen.push_back(event->topic + " " + event->data.to_json_text());
  }
  INFO("seen: ", json(seen).dump());
  REQUIRE(seen.size() >= 2);
  CHECK(seen[seen.size() - 2] == "$mw.progress \"last\"");
  CHECK(seen.back() == "$mw.flow.done \"done\"");
  CHECK(seen.size() <= 3);

  const auto held = submit_waiting(client, "steps", "hold");
  REQUIRE(wait_until([&] { return type_stats(cluster.status(), "steps").value().in_flight == 1; }, 10s));
  client.call("$flows", "remove", std::to_string(held));
  REQUIRE(wait_until([&] { return worker.counters().cancelled == 1; }, 10s));
  CHECK(cancel_seen.load());
  // The worker goes on: it serves the next job.
  const auto after = submit_waiting(client, "steps", "quick");
  const auto next_outcome = client.wait(after, 10s);
  REQUIRE(next_outcome.has_value());
  CHECK(next_outcome->done);
}

TEST_CASE("progress: mw-exec reports each JSON line its command writes to $MW_PROGRESS_FD") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});
  const auto gate = cluster.dir() / "go-on";
  const auto script = cluster.dir() / "steps.sh";
  {
    std::ofstream out(script);
    out << "#!/bin/sh\n"
           "cat >/dev/null\n"
           "echo '{\"done\": 1, \"of\": 2}' >&\"$MW_PROGRESS_FD\"\n"
           "while [ ! -e '" << gate.string() << "' ]; do sleep 0.05; done\n"
           "echo 'not json' >&3\n"
           "echo 'nor this' >&3\n"
           "printf '{\"done\": 2,' >&3\n"  // a line written in two pieces
           "printf ' \"of\": 2}\\n' >&3\n"
           "sleep 0.3\n"
           "echo '{\"ok\": true}'\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  Process& exec = cluster.start_exec("steps", {}, {script.string()});
  REQUIRE(cluster.wait_for_workers("steps", 1));

  mw::Client client({cluster.address()});
  const auto flow = submit_waiting(client, "steps", json{{"n", 1}});
  REQUIRE(wait_until([&] { return progress_of(client, flow) == json{{"done", 1}, {"of", 2}}; }, 10s));
  const auto table = cluster.mw({"flows"});
  REQUIRE(table.exit_status == 0);
  INFO(table.out);
  CHECK(table.out.find("PROGRESS") != std::string::npos);
  CHECK(table.out.find("{\"done\":1,\"of\":2}") != std::string::npos);

  std::ofstream{gate};
  REQUIRE(wait_until([&] { return progress_of(client, flow) == json{{"done", 2}, {"of", 2}}; }, 10s));
  const auto outcome = client.wait(flow, 10s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  // The lines that are not JSON were skipped, said once, and failed nothing.
  const auto said = exec.stderr_text();
  CHECK(said.find("wrote to $MW_PROGRESS_FD (3), but a progress line was skipped") != std::string::npos);
  CHECK(said.find("nor this") == std::string::npos);
}
