// Workers and brokers that die, freeze, restart or stop: no job is lost,
// none is reported twice.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "cluster.hpp"
#include "in_process_worker.hpp"
#include "mw/client.hpp"

using namespace mwtest;

namespace {

// A command that holds its job long enough to be interrupted, then echoes it.
std::vector<std::string> slow_echo(double seconds) {
  return {"/bin/sh", "-c", "sleep " + std::to_string(seconds) + "; cat"};
}

std::uint32_t in_flight_of(Cluster& cluster, pid_t pid) {
  try {
    const auto w = worker_stats(cluster.status(), pid);
    return w ? w->in_flight : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

TEST_CASE("reliability: kill -9 of a worker with jobs in flight loses no job") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  Process& victim = cluster.start_exec("slow", {"--concurrency", "3"}, slow_echo(0.3));
  Process& survivor = cluster.start_exec("slow", {"--concurrency", "3"}, slow_echo(0.3));
  REQUIRE(cluster.wait_for_workers("slow", 2));

  constexpr int kJobs = 20;
  mw::Client client({cluster.address()});
  std::map<std::uint64_t, int> input_of_request;
  for (int i = 0; i < kJobs; ++i)
    input_of_request[client.send_submit("slow", mw::Payload::from_json(nlohmann::json{{"i", i}}).bytes(), true)] = i;

  std::map<std::uint64_t, int> input_of_flow;
  std::map<std::uint64_t, mw::Outcome> results;
  std::size_t duplicate_results = 0;
  bool killed = false;
  const auto deadline = Clock::now() + 40s;
  while (results.size() < kJobs && Clock::now() < deadline) {
    auto event = client.next_event(100ms);
    if (event && event->kind == mw::ClientEvent::Kind::Accepted) {
      REQUIRE(input_of_request.count(event->request_id) == 1);
      input_of_flow[event->flow_id] = input_of_request[event->request_id];
    } else if (event && event->kind == mw::ClientEvent::Kind::Result) {
      if (!results.emplace(event->flow_id, event->outcome).second) ++duplicate_results;
    } else if (event) {
      FAIL("unexpected ERROR from the broker: " << event->message);
    }
    if (!killed && results.size() >= 2) {
      // Mid-way, and mid-job: the victim must be running jobs when it dies.
      // The first results come as the first run of 0.3 s jobs ends, so a
      // kill at once could land as the victim's DONEs go out, leaving it
      // holding only the JOBs of its next run, which never left the broker
      // (they go back to the queue as never started, not as requeued).
      // Half a job later it is running that next run.
      std::this_thread::sleep_for(150ms);
      REQUIRE(wait_until([&] { return in_flight_of(cluster, victim.pid()) > 0; }, 5s, 5ms));
      victim.signal(SIGKILL);
      killed = true;
      REQUIRE(victim.wait_exit(5s) == 128 + SIGKILL);
    }
  }
  REQUIRE(killed);
  REQUIRE(input_of_flow.size() == kJobs);
  CHECK(results.size() == kJobs);
  CHECK(duplicate_results == 0);
  for (const auto& [flow, input] : input_of_flow) {
    CAPTURE(flow);
    REQUIRE(results.count(flow) == 1);
    CHECK(results[flow].done);
    CHECK(results[flow].result.to_json() == nlohmann::json{{"i", input}});
  }
  CHECK(survivor.running());

  const auto status = cluster.status_json();
  CHECK(status.at("requeued").get<int>() > 0);
  CHECK(status.at("done").get<int>() == kJobs);
  CHECK(status.at("dead").get<int>() == 0);
  CHECK(worker_json(status, victim.pid()).is_null());
  CHECK(type_json(status, "slow").at("workers") == 1);
}

TEST_CASE("reliability: a frozen worker is dropped, its job completes elsewhere, and it comes back alone") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});  // dropped after 3 × 300 ms of silence
  Process& frozen = cluster.start_exec("hb", {}, slow_echo(0.5));
  REQUIRE(cluster.wait_for_workers("hb", 1));

  mw::Client client({cluster.address()});
  const auto flow = submit_waiting(client, "hb", {{"n", 7}});
  REQUIRE(wait_until([&] { return in_flight_of(cluster, frozen.pid()) == 1; }, 5s, 5ms));
  frozen.signal(SIGSTOP);
  const auto stopped_at = Clock::now();
  Process& other = cluster.start_exec("hb", {}, slow_echo(0.5));

  REQUIRE(cluster.wait_for_worker_pid(frozen.pid(), false, 5s));
  const auto dropped_after = Clock::now() - stopped_at;
  // Silence must last 3 × 300 ms, and the worker spoke about 300 ms at most
  // before it froze (the rest is slack for a slow machine).
  CHECK(dropped_after >= 300ms);
  CHECK(dropped_after < 5s);

  const auto outcome = await_result(client, flow, 15s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  CHECK(outcome->result.to_json() == nlohmann::json{{"n", 7}});
  {
    const auto s = cluster.status();
    CHECK(s.requeued >= 1);
    REQUIRE(worker_stats(s, other.pid()).has_value());
    CHECK(worker_stats(s, other.pid())->done == 1);
  }

  // Thawed, it finds its broker silent, reconnects and registers by itself;
  // its DONE for the job that was taken from it must not count.
  frozen.signal(SIGCONT);
  REQUIRE(cluster.wait_for_worker_pid(frozen.pid(), true, 10s));
  CHECK(worker_json(cluster.status_json(), frozen.pid()).is_object());
  CHECK(cluster.wait_for_workers("hb", 2, 5s));
  const auto late = await_result(client, flow, 1500ms);
  CHECK_FALSE(late.has_value());
  const auto s = cluster.status();
  CHECK(s.done == 1);
  CHECK(type_stats(s, "hb").value().done == 1);
  CHECK(frozen.running());
}

TEST_CASE("reliability: workers find a restarted broker on the same port by themselves") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  const std::string address = cluster.address();
  const std::string pub = cluster.pub_address();
  Process& sample = cluster.start_worker("sample_worker", binaries().sample_worker);
  Process& next = cluster.start_worker("next_worker", binaries().next_worker);
  REQUIRE(cluster.wait_for_workers("sampleworker", 1));
  REQUIRE(cluster.wait_for_workers("nextworker", 1));
  REQUIRE(cluster.mw({"submit", "sampleworker", "0.5", "--wait", "--timeout", "20"}).exit_status == 0);

  Process& first = cluster.broker();
  first.signal(SIGTERM);
  REQUIRE(first.wait_exit(5s) == 0);
  pause_for(300ms);  // the workers notice the broker is gone meanwhile

  cluster.start_broker({"--heartbeat-ms", "200"}, address, pub);
  REQUIRE(cluster.address() == address);
  const auto restarted_at = Clock::now();
  REQUIRE(cluster.wait_for_worker_pid(sample.pid(), true, 10s));
  REQUIRE(cluster.wait_for_worker_pid(next.pid(), true, 10s));
  CHECK(Clock::now() - restarted_at < 5s);
  CHECK(sample.running());
  CHECK(next.running());

  const auto r = cluster.mw({"submit", "sampleworker", "0.75", "--wait", "--timeout", "20"});
  REQUIRE(r.exit_status == 0);
  CHECK(nlohmann::json::parse(r.out).at("value").get<double>() == doctest::Approx(std::sin(0.75)).epsilon(1e-12));
  CHECK(sample.stderr_text().find("registered with the broker at " + address) != std::string::npos);
  CHECK(sample.stderr_text().find("registered again with the broker at " + address) != std::string::npos);
}

TEST_CASE("reliability: a worker busy with a long job is back at a restarted broker at once, not when the job ends") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  std::atomic<int> started{0};
  std::atomic<bool> release{false};
  mw::WorkerOptions options;
  options.broker = address;
  options.types = {"long"};
  std::uint32_t threads = 1;
  SUBCASE("one handler thread: the job runs on the socket's thread, the keeper reads") { threads = 1; }
  SUBCASE("two handler threads: the socket's thread reads") { threads = 2; }
  CAPTURE(threads);
  options.threads = threads;
  options.concurrency = threads;
  InProcessWorker worker(options, [&](const mw::Job& job) {
    ++started;
    const auto give_up = Clock::now() + 30s;
    while (!release.load() && Clock::now() < give_up) std::this_thread::sleep_for(5ms);
    return job.payload;
  });
  REQUIRE(cluster.wait_for_workers("long", 1));
  std::uint64_t flow = 0;
  {
    mw::Client client({address});
    flow = client.submit("long", mw::Payload::parse_json(R"({"n": 1})"));
  }
  REQUIRE(wait_until([&] { return started.load() == 1; }, 10s));

  cluster.broker().signal(SIGTERM);
  REQUIRE(cluster.broker().wait_exit(5s) == 0);
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"}, address, pub);
  // Its handler still runs, and the new broker has it already, with the
  // slot that handler fills held back from its credit. With one slot the
  // job the new broker recovered from the store waits at the broker; with
  // two it is given back and starts beside the first run.
  REQUIRE(cluster.wait_for_workers("long", 1, 5s));
  CHECK(worker.counters().registrations >= 2);
  const auto during = cluster.status();
  const auto busy = worker_stats(during, ::getpid());
  REQUIRE(busy.has_value());
  CHECK(busy->credit == threads - 1);
  if (threads == 1) {
    CHECK(type_stats(during, "long").value().queued == 1);
    CHECK(started.load() == 1);
  } else {
    CHECK(wait_until([&] { return started.load() == 2; }, 10s));
  }

  release = true;
  // The first run's answer would only be stale: it is not sent, and its
  // slot comes back. The recovered job runs once more; the flow ends done.
  mw::Client client({address});
  const auto outcome = client.wait(flow, 20s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  CHECK(outcome->result.to_json() == nlohmann::json::parse(R"({"n": 1})"));
  CHECK(started.load() == 2);
  REQUIRE(wait_until([&] {
    const auto w = worker_stats(cluster.status(), ::getpid());
    return w && w->credit == threads;
  }, 10s));
  CHECK(cluster.status().stale == 0);
}

TEST_CASE("reliability: a worker started before its broker says so, and registers once the broker comes") {
  Cluster cluster;
  INFO(cluster.report());
  // An address just freed: the broker that had it is gone.
  cluster.start_broker();
  const std::string address = cluster.address(), pub = cluster.pub_address();
  cluster.broker().signal(SIGTERM);
  REQUIRE(cluster.broker().wait_exit(5s) == 0);

  Process& early = cluster.start_exec("early", {}, {"cat"});
  // Nothing answers for a liveness period (3 heartbeats of 1 s): it says
  // where it looks, and goes on trying.
  const auto warning = early.wait_for_stderr_line("is mw-broker running there?", 10s);
  REQUIRE(warning.has_value());
  CHECK(warning->find(address) != std::string::npos);
  CHECK(early.running());

  cluster.start_broker({}, address, pub);
  REQUIRE(cluster.wait_for_worker_pid(early.pid(), true, 10s));
  CHECK(early.wait_for_stderr_line("registered with the broker at " + address, 5s).has_value());
  const auto r = cluster.mw({"submit", "early", R"({"n": 1})", "--wait", "--timeout", "20"});
  REQUIRE(r.exit_status == 0);
  CHECK(nlohmann::json::parse(r.out) == nlohmann::json::parse(R"({"n": 1})"));
}

TEST_CASE("reliability: SIGTERM lets a worker finish its running job, then it leaves cleanly") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  // The command says when it runs: a JOB counted in flight may still be on its way.
  const auto started = cluster.dir() / "started";
  Process& worker =
      cluster.start_exec("graceful", {}, {"/bin/sh", "-c", "touch '" + started.string() + "'; sleep 1; cat"});
  REQUIRE(cluster.wait_for_workers("graceful", 1));

  mw::Client client({cluster.address()});
  const auto flow = submit_waiting(client, "graceful", {{"k", "v"}});
  REQUIRE(wait_until([&] { return std::filesystem::exists(started); }, 10s, 5ms));
  worker.signal(SIGTERM);

  // Only this worker serves the type: the result can only come from it.
  const auto outcome = await_result(client, flow, 10s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  CHECK(outcome->result.to_json() == nlohmann::json{{"k", "v"}});
  CHECK(outcome->attempts == 1);
  REQUIRE(worker.wait_exit(10s) == 0);

  REQUIRE(cluster.wait_for_worker_pid(worker.pid(), false, 5s));
  const auto s = cluster.status();
  CHECK(s.requeued == 0);
  CHECK(s.retried == 0);
  CHECK(type_stats(s, "graceful").value().workers == 0);
  CHECK(type_stats(s, "graceful").value().done == 1);
}
