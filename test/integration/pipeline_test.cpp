// Pipelines end to end: --next, the seed's nextWorkerType, jobs that wait
// for a worker that comes late.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <cmath>
#include <mutex>
#include <thread>

#include <doctest/doctest.h>

#include "cluster.hpp"
#include "in_process_worker.hpp"
#include "mw/client.hpp"

using namespace mwtest;

namespace {

nlohmann::json parse_json_output(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    FAIL("not JSON (" << e.what() << "): '" << text << "'");
    return nullptr;
  }
}

mw::WorkerOptions worker_options(const std::string& broker, const std::string& type, const std::string& next = "") {
  mw::WorkerOptions options;
  options.broker = broker;
  options.types = {type};
  options.next = next;
  return options;
}

}  // namespace

TEST_CASE("pipeline: sampleworker --next nextworker reports sin(x); bad input fails the submit") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  cluster.start_worker("sample_worker", binaries().sample_worker);
  cluster.start_worker("next_worker", binaries().next_worker);

  SUBCASE("a number goes through both stages") {
    for (double x : {0.5, -1.25}) {
      // As people type it: a negative number must not be taken for an option.
      const auto r = cluster.mw({"submit", "sampleworker", x < 0 ? "-1.25" : "0.5", "--wait", "--timeout", "20"});
      REQUIRE(r.exit_status == 0);
      const auto report = parse_json_output(r.out);
      REQUIRE(report.is_object());
      // next_worker's report: proof that the flow went on to the second stage.
      CHECK(report.at("value").get<double>() == doctest::Approx(std::sin(x)).epsilon(1e-12));
      CHECK(report.at("rounded").get<double>() == doctest::Approx(std::round(std::sin(x) * 1000) / 1000));
      CHECK(report.at("sign") == (x < 0 ? "negative" : "non-negative"));
    }
    const auto s = cluster.status();
    CHECK(s.done == 2);
    CHECK(type_stats(s, "nextworker").value().done == 2);
  }

  SUBCASE("a string is not a number: the flow dies at once, the error on stderr") {
    const auto r = cluster.mw({"submit", "sampleworker", "\"abc\"", "--wait", "--timeout", "20"});
    CHECK(r.exit_status != 0);
    CHECK(r.exit_status != 3);  // 3 is "no result in time": this one must be a real failure
    CHECK(r.err.find("The input is not a number") != std::string::npos);
    CHECK(r.out.empty());
    const auto s = cluster.status();
    CHECK(s.dead == 1);
    CHECK(s.retried == 0);  // non-retryable: exactly one attempt
    CHECK(type_stats(s, "nextworker").value_or(mw::wire::TypeStats{}).done == 0);
  }
}

TEST_CASE("pipeline: nextWorkerType in a result routes the flow and is removed") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});

  std::mutex mutex;
  std::vector<nlohmann::json> seen_by_x, seen_by_fallback;
  // router: echoes its input without "route"; "route" becomes nextWorkerType.
  InProcessWorker router(worker_options(cluster.address(), "router", "fallback"), [](const mw::Job& job) {
                           nlohmann::json in = job.payload.to_json();
                           nlohmann::json out = {{"v", in.at("v")}, {"from", "router"}};
                           if (in.contains("route")) out["nextWorkerType"] = in["route"];
                           return mw::Payload::from_json(out);
                         });
  auto recorder = [&](const char* name, std::vector<nlohmann::json>& into) {
    return [&mutex, name, list = &into](const mw::Job& job) {
      nlohmann::json in = job.payload.to_json();
      {
        std::lock_guard lock(mutex);
        list->push_back(in);
      }
      return mw::Payload::from_json(nlohmann::json{{"seen_by", name}, {"got", in}});
    };
  };
  InProcessWorker x(worker_options(cluster.address(), "x"), recorder("x", seen_by_x));
  InProcessWorker fallback(worker_options(cluster.address(), "fallback"), recorder("fallback", seen_by_fallback));

  mw::Client client({cluster.address()});
  auto run = [&](const nlohmann::json& input) {
    auto outcome = client.submit_and_wait("router", mw::Payload::from_json(input), 20s);
    REQUIRE(outcome.has_value());
    REQUIRE(outcome->done);
    return *outcome;
  };

  SUBCASE("\"nextWorkerType\": \"x\" wins over --next and x does not see the field") {
    const auto outcome = run({{"route", "x"}, {"v", 1}});
    CHECK(outcome.last_type == "x");
    CHECK(outcome.result.to_json() == nlohmann::json{{"seen_by", "x"}, {"got", {{"v", 1}, {"from", "router"}}}});
    std::lock_guard lock(mutex);
    REQUIRE(seen_by_x.size() == 1);
    CHECK_FALSE(seen_by_x[0].contains("nextWorkerType"));
    CHECK(seen_by_fallback.empty());
  }

  SUBCASE("\"nextWorkerType\": null ends the flow at the worker that said it") {
    const auto outcome = run({{"route", nullptr}, {"v", 2}});
    CHECK(outcome.last_type == "router");
    CHECK(outcome.result.to_json() == nlohmann::json{{"v", 2}, {"from", "router"}});
    std::lock_guard lock(mutex);
    CHECK(seen_by_x.empty());
    CHECK(seen_by_fallback.empty());
  }

  SUBCASE("without the field the static --next applies") {
    const auto outcome = run({{"v", 3}});
    CHECK(outcome.last_type == "fallback");
    CHECK(outcome.result.to_json() ==
          nlohmann::json{{"seen_by", "fallback"}, {"got", {{"v", 3}, {"from", "router"}}}});
    std::lock_guard lock(mutex);
    CHECK(seen_by_x.empty());
    CHECK(seen_by_fallback.size() == 1);
  }

  SUBCASE("mw-exec results route the same way") {
    cluster.start_exec("shell_router", {"--next", "fallback"},
                       {"/bin/sh", "-c", "cat >/dev/null; printf '{\"nextWorkerType\":\"x\",\"a\":1}'"});
    const auto r = cluster.mw({"submit", "shell_router", "{}", "--wait", "--timeout", "20"});
    REQUIRE(r.exit_status == 0);
    CHECK(parse_json_output(r.out) == nlohmann::json{{"seen_by", "x"}, {"got", {{"a", 1}}}});
    std::lock_guard lock(mutex);
    CHECK(seen_by_fallback.empty());
  }
}

TEST_CASE("pipeline: a job submitted before any worker of its type waits for one") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});

  Process& submit = cluster.start_mw("mw-submit-early", {"submit", "sampleworker", "0.25", "--wait", "--timeout", "30"});
  // The job is stored and queued, with nobody to take it.
  REQUIRE(wait_until(
      [&] {
        const auto t = type_stats(cluster.status(), "sampleworker");
        return t && t->queued == 1 && t->workers == 0;
      },
      10s));
  pause_for(500ms);
  REQUIRE(submit.running());  // still waiting, not failed for lack of a worker

  cluster.start_worker("sample_worker", binaries().sample_worker);
  cluster.start_worker("next_worker", binaries().next_worker);
  const auto status = submit.wait_exit(20s);
  REQUIRE(status.has_value());
  REQUIRE(*status == 0);
  const auto report = parse_json_output(submit.stdout_text());
  CHECK(report.at("value").get<double>() == doctest::Approx(std::sin(0.25)).epsilon(1e-12));
}

TEST_CASE("pipeline: Ctrl-C on mw submit --wait names the flow, which goes on") {
  // The exit status is the shell's for the signal: 128 + its number.
  int signal = SIGINT;
  SUBCASE("SIGINT") {}
  SUBCASE("SIGTERM") { signal = SIGTERM; }
  CAPTURE(signal);
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  Process& submit = cluster.start_mw("mw-submit-interrupted", {"submit", "sampleworker", "0.5", "--wait"});
  REQUIRE(wait_until(
      [&] {
        const auto t = type_stats(cluster.status(), "sampleworker");
        return t && t->queued == 1;
      },
      10s));
  pause_for(1s);  // the ACCEPTED reaches the submitter (STATUS counts the job before it is sent)
  submit.signal(signal);
  REQUIRE(submit.wait_exit(10s) == 128 + signal);
  const std::string err = submit.stderr_text();
  INFO(err);
  const auto at = err.find("interrupted while waiting for flow ");
  REQUIRE(at != std::string::npos);
  CHECK(err.find("goes on") != std::string::npos);
  // One line, and the hint that no worker serves the type if it came first (after 3 s).
  const bool hinted = err.find("which no worker serves") != std::string::npos;
  CHECK(std::count(err.begin(), err.end(), '\n') == (hinted ? 2 : 1));

  cluster.start_worker("sample_worker", binaries().sample_worker);
  cluster.start_worker("next_worker", binaries().next_worker);
  REQUIRE(wait_until([&] { return cluster.status().done == 1; }, 15s));
}

TEST_CASE("pipeline: mw submit --wait that times out names the flow, which goes on") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  const auto r = cluster.mw({"submit", "nobody", "{}", "--wait", "--timeout", "0.5"});
  CHECK(r.exit_status == 3);
  const auto listed = cluster.mw({"flows", "--json"});
  REQUIRE(listed.exit_status == 0);
  const auto flow = nlohmann::json::parse(listed.out).at("id").get<std::uint64_t>();
  CHECK(r.err.find("no result within 0.5 s; flow " + std::to_string(flow) + " goes on") != std::string::npos);
}

TEST_CASE("pipeline: a handler running longer than the heartbeat liveness keeps its worker and its job") {
  Cluster cluster;
  INFO(cluster.report());
  // Liveness is 3 x 300 ms; the handler runs on the socket's thread (threads
  // = 1) for 2.5 s, so only the keeper's heartbeats keep the worker alive.
  // (Shorter heartbeats leave too little slack for a stall under ASan.)
  cluster.start_broker({"--heartbeat-ms", "300"});
  std::atomic<int> runs{0};
  InProcessWorker slow(worker_options(cluster.address(), "slow"), [&](const mw::Job& job) {
    ++runs;
    std::this_thread::sleep_for(2500ms);
    return job.payload;
  });
  REQUIRE(cluster.wait_for_workers("slow", 1));

  mw::Client client({cluster.address()});
  const auto outcome = client.submit_and_wait("slow", mw::Payload::of(7), 20s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  CHECK(outcome->result.as<int>() == 7);
  CHECK(runs.load() == 1);  // never requeued to run again
  const auto stats = cluster.status();
  CHECK(stats.requeued == 0);
  CHECK(slow.counters().registrations == 1);  // never dropped and re-registered
}

TEST_CASE("pipeline: a quick job's result does not wait for the slow job after it on the same worker") {
  Cluster cluster;
  INFO(cluster.report());
  // Heartbeats 10 s apart, so that nothing but the worker's own rule sends
  // the quick job's DONE while the slow handler runs.
  cluster.start_broker({"--heartbeat-ms", "10000"});
  mw::Client client({cluster.address()});
  // Both jobs wait for the worker, so that it gets them in one turn (one
  // BATCH): the quick one first, then the slow one.
  const std::uint64_t quick_request = client.send_submit("mixed", mw::Payload::of(1).bytes(), true);
  const std::uint64_t slow_request = client.send_submit("mixed", mw::Payload::of(2).bytes(), true);
  client.flush();
  REQUIRE(wait_until(
      [&] {
        const auto t = type_stats(cluster.status(), "mixed");
        return t && t->queued == 2;
      },
      10s));
  auto options = worker_options(cluster.address(), "mixed");
  options.concurrency = 2;
  InProcessWorker worker(options, [&](const mw::Job& job) {
    if (job.payload.as<int>() == 2) std::this_thread::sleep_for(3s);
    return job.payload;
  });

  std::map<std::uint64_t, std::uint64_t> flow_of_request;
  std::optional<std::chrono::steady_clock::duration> quick_after, slow_after;
  const auto started = std::chrono::steady_clock::now();
  while (!slow_after && std::chrono::steady_clock::now() - started < 20s) {
    auto event = client.next_event(100ms);
    if (!event) continue;
    if (event->kind == mw::ClientEvent::Kind::Accepted) flow_of_request[event->request_id] = event->flow_id;
    if (event->kind != mw::ClientEvent::Kind::Result) continue;
    const auto at = std::chrono::steady_clock::now() - started;
    if (event->flow_id == flow_of_request[quick_request]) quick_after = at;
    if (event->flow_id == flow_of_request[slow_request]) slow_after = at;
  }
  REQUIRE(quick_after.has_value());
  REQUIRE(slow_after.has_value());
  CHECK(*slow_after >= 2900ms);
  CHECK(*quick_after < 1500ms);  // within a few ms in fact; without the rule it waited 3 s
}

TEST_CASE("pipeline: a pipelining client idle past the liveness period goes on without a false 'lost the broker'") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});  // liveness 900 ms
  mw::Client client({cluster.address()});
  const std::uint64_t request = client.send_submit("idle.test", mw::Payload::of(1).bytes(), false);
  std::optional<mw::ClientEvent> accepted;
  REQUIRE(wait_until(
      [&] {
        accepted = client.next_event(100ms);
        return accepted && accepted->kind == mw::ClientEvent::Kind::Accepted;
      },
      10s));
  CHECK(accepted->request_id == request);
  // Silent for longer than the liveness period twice over: the broker
  // forgets this client. Its next calls still work.
  pause_for(2s);
  CHECK_FALSE(client.next_event(0ms).has_value());
  pause_for(2s);
  CHECK_NOTHROW((void)client.status());
  CHECK_FALSE(client.next_event(50ms).has_value());  // no answer pending: nullopt, not a throw
  const auto flow = client.submit("idle.test", mw::Payload::of(2));
  CHECK(flow > 0);
}

TEST_CASE("pipeline: a worker's jobs one after another each carry their own type, entity and payload, whatever came before") {
  // An inline worker fills each JOB into the Job of one whose handler has
  // run (keeping its buffers): nothing of the earlier job may show through.
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  const std::string long_type = "a-type-name-longer-than-a-short-string";
  mw::WorkerOptions options;
  options.broker = cluster.address();
  options.types = {long_type, "b"};
  InProcessWorker worker(options, [](const mw::Job& job) {
    return mw::Payload::from_json(
        nlohmann::json{{"type", job.type}, {"entity", job.entity}, {"got", job.payload.to_json()}});
  });
  REQUIRE(cluster.wait_for_workers("b", 1));

  mw::Client client({cluster.address()});
  struct Case {
    std::string type;
    std::string entity;
    nlohmann::json input;
  };
  const std::vector<Case> jobs = {
      {long_type, "reuse/an-entity-id-longer-than-a-short-string", std::string(2000, 'x')},
      {"b", "", 7},
      {long_type, "", nlohmann::json::object()},
      {"b", "reuse/e2", std::string(70 * 1024, 'y')},  // a buffer too large to keep
      {long_type, "", "z"},
      {"b", "", nlohmann::json::array({1, 2, 3})},
  };
  for (const auto& [type, entity, input] : jobs) {
    INFO(type, " ", entity, " ", input.dump().substr(0, 40));
    mw::SubmitOptions options;
    options.entity = entity;
    const auto outcome = client.submit_and_wait(type, mw::Payload::from_json(input), 20s, options);
    REQUIRE(outcome.has_value());
    REQUIRE(outcome->done);
    CHECK(outcome->result.to_json() == nlohmann::json{{"type", type}, {"entity", entity}, {"got", input}});
  }
}
