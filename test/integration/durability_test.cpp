// A broker on a file store that is killed with kill -9 and restarted:
// every accepted job completes, delayed jobs keep their time, keys hold,
// dead jobs leave records, and SIGTERM stops it cleanly.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>

#include "cli_output.hpp"
#include "cluster.hpp"
#include "mw/client.hpp"

using namespace mwtest;

namespace {

// A pipeline stage as a shell command: appends its input line to `log`
// (one line per run, so a job run twice shows up twice) and echoes it.
std::vector<std::string> logging_echo(const std::filesystem::path& log) {
  return {"/bin/sh", "-c", "read -r line; printf '%s\\n' \"$line\" >> '" + log.string() + "'; printf '%s' \"$line\""};
}

// How many times each line occurs in `path` (missing file: none).
std::map<std::string, int> line_counts(const std::filesystem::path& path) {
  std::map<std::string, int> counts;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) ++counts[line];
  return counts;
}

std::string input_line(int i) { return nlohmann::json{{"i", i}}.dump(); }

}  // namespace

TEST_CASE("durability: kill -9 of the broker mid-pipeline loses no accepted job") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  const auto stage1_log = cluster.dir() / "stage1.log";
  const auto stage2_log = cluster.dir() / "stage2.log";
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  cluster.start_exec("stage1", {"--next", "stage2", "--concurrency", "4"}, logging_echo(stage1_log));
  cluster.start_exec("stage2", {"--concurrency", "4"}, logging_echo(stage2_log));
  REQUIRE(cluster.wait_for_workers("stage1", 1));
  REQUIRE(cluster.wait_for_workers("stage2", 1));

  // Submit 400 flows without waiting for each; kill the broker once about
  // a third are accepted. Only what was ACCEPTED is owed.
  constexpr int kFlows = 400;
  std::set<int> accepted;
  {
    mw::Client client({address});
    std::map<std::uint64_t, int> input_of_request;
    for (int i = 0; i < kFlows; ++i)
      input_of_request[client.send_submit("stage1", mw::Payload::parse_json(input_line(i)).bytes(), false)] = i;
    const auto deadline = Clock::now() + 30s;
    while (accepted.size() < kFlows / 3 && Clock::now() < deadline) {
      auto event = client.next_event(100ms);
      if (event && event->kind == mw::ClientEvent::Kind::Accepted) accepted.insert(input_of_request[event->request_id]);
    }
    REQUIRE(accepted.size() >= kFlows / 3);
    cluster.broker().signal(SIGKILL);
    REQUIRE(cluster.broker().wait_exit(5s) == 128 + SIGKILL);
    // ACCEPTEDs that were already on their way count too.
    while (auto event = client.next_event(200ms))
      if (event->kind == mw::ClientEvent::Kind::Accepted) accepted.insert(input_of_request[event->request_id]);
  }
  const auto done_before = line_counts(stage2_log).size();

  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"}, address, pub);
  const bool all_done = wait_until(
      [&] {
        const auto done = line_counts(stage2_log);
        for (int i : accepted)
          if (!done.count(input_line(i))) return false;
        return true;
      },
      60s, 50ms);
  const auto stage1 = line_counts(stage1_log), stage2 = line_counts(stage2_log);
  int stage1_twice = 0, stage2_twice = 0;
  for (const auto& [line, n] : stage1) stage1_twice += n > 1;
  for (const auto& [line, n] : stage2) stage2_twice += n > 1;
  MESSAGE("kill -9 after " << accepted.size() << " accepted flows (" << done_before
                           << " finished before the kill); recovered " << cluster.status().recovered
                           << " jobs; delivered twice: stage 1 " << stage1_twice << ", stage 2 " << stage2_twice);
  REQUIRE(all_done);
  CHECK(cluster.status().recovered > 0);
  // At-least-once: a job runs again only if the broker died between its
  // delivery and the commit of its DONE, a window of one loop turn.
  for (const auto& [line, n] : stage2) CHECK(n <= 2);
}

TEST_CASE("durability: a second broker on the same store refuses to start and names the first") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  Process& first = cluster.start_broker({"--store", store});
  REQUIRE(cluster.mw({"submit", "held", "1"}).exit_status == 0);
  Process& second = cluster.start("second-broker", {binaries().broker, "--bind", "tcp://127.0.0.1:*", "--pub",
                                                    "tcp://127.0.0.1:*", "--store", store});
  CHECK(second.wait_exit(10s) == 1);
  const std::string err = second.stderr_text();
  CHECK(err.find("is in use by process " + std::to_string(first.pid())) != std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  // The first one is unaffected, and once it is gone (even by kill -9) the store is free.
  CHECK(cluster.status().submitted == 1);
  first.signal(SIGKILL);
  REQUIRE(first.wait_exit(5s).has_value());
  cluster.start_broker({"--store", store});
  CHECK(cluster.status().recovered == 1);
}

TEST_CASE("durability: delayed jobs, retries and keys survive a kill -9") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  const auto log = cluster.dir() / "later.log";
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"});
  const std::string address = cluster.address(), pub = cluster.pub_address();

  std::uint64_t delayed_flow = 0, keyed_flow = 0;
  // Long enough that a slow (ASan) kill and restart still finds it delayed.
  const auto submitted_at = Clock::now();
  {
    mw::Client client({address});
    mw::SubmitOptions later;
    later.delay = 5000ms;
    delayed_flow = client.submit("later", mw::Payload::parse_json(input_line(1)), later);
    mw::SubmitOptions keyed;
    keyed.key = "order-17";
    keyed_flow = client.submit("keyed", mw::Payload::parse_json(input_line(2)), keyed);
    CHECK(client.submit("keyed", mw::Payload::parse_json(input_line(3)), keyed) == keyed_flow);
  }
  cluster.broker().signal(SIGKILL);
  REQUIRE(cluster.broker().wait_exit(5s) == 128 + SIGKILL);
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"}, address, pub);
  CHECK(cluster.status().recovered == 2);
  CHECK(cluster.status().delayed == 1);

  mw::Client client({address});
  mw::SubmitOptions keyed;
  keyed.key = "order-17";
  CHECK(client.submit("keyed", mw::Payload::parse_json(input_line(4)), keyed) == keyed_flow);

  cluster.start_exec("later", {}, logging_echo(log));
  REQUIRE(wait_until([&] { return line_counts(log).count(input_line(1)) == 1; }, 20s, 20ms));
  CHECK(Clock::now() - submitted_at >= 4900ms);  // its time was kept, not restarted or dropped
  // The flow kept its id across the restart: its outcome is found by it.
  const auto later_outcome = client.wait(delayed_flow, 10s);
  REQUIRE(later_outcome.has_value());
  CHECK(later_outcome->done);
  CHECK(cluster.status().delayed == 0);
}

TEST_CASE("durability: a dead job leaves a record that mw dead lists") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--type-max-attempts", "doomed=2", "--retry-base-ms", "10"});
  cluster.start_exec("doomed", {}, {"/bin/sh", "-c", "echo 'the API is down' >&2; exit 1"});
  REQUIRE(cluster.wait_for_workers("doomed", 1));

  mw::Client client({cluster.address()});
  const auto outcome = client.submit_and_wait("doomed", mw::Payload::parse_json(R"({"n": 50})"), 20s);
  REQUIRE(outcome.has_value());
  CHECK_FALSE(outcome->done);
  CHECK(outcome->attempts == 2);
  const auto record = client.call("sync", "get", "dead-" + std::to_string(outcome->flow_id));
  CHECK(record.at("kind") == "dead");
  CHECK(record.at("type") == "doomed");
  CHECK(record.at("payload") == nlohmann::json::parse(R"({"n": 50})"));
  CHECK(record.at("attempts") == 2);
  CHECK(record.at("retried") == false);
  CHECK(record.at("error").get<std::string>().find("the API is down") != std::string::npos);
  const auto listed = cluster.mw({"dead", "doomed", "--json"});
  REQUIRE(listed.exit_status == 0);
  CHECK(listed.out.find("dead-" + std::to_string(outcome->flow_id)) != std::string::npos);
}

TEST_CASE("durability: SIGTERM stops the broker within a second, and nothing accepted is lost") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  cluster.start_broker({"--store", store});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  {
    mw::Client client({address});
    for (int i = 0; i < 50; ++i) client.submit("nobody-yet", mw::Payload::parse_json(input_line(i)));
  }
  const auto asked = Clock::now();
  cluster.broker().signal(SIGTERM);
  REQUIRE(cluster.broker().wait_exit(10s) == 0);
  const auto took = Clock::now() - asked;
  MESSAGE("broker stopped " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                            << " ms after SIGTERM");
  // The broker itself takes a few ms; the bound leaves room for sanitizer
  // builds and loaded CI machines, the figure above is what it took.
  CHECK(took < 3s);
  cluster.start_broker({"--store", store}, address, pub);
  CHECK(cluster.status().recovered == 50);
  const auto t = type_stats(cluster.status(), "nobody-yet");
  REQUIRE(t.has_value());
  CHECK(t->queued == 50);
}

TEST_CASE("durability: a job held past its lease runs elsewhere; the late answer is ignored") {
  Cluster cluster;
  INFO(cluster.report());
  // The lease leaves a slow machine room to finish the second delivery in it.
  cluster.start_broker({"--type-lease", "stuck=2"});
  // The first delivery takes 5 s, past the lease; a later one is quick.
  const std::vector<std::string> slow_first{"/bin/sh", "-c", "[ \"$MW_ATTEMPT\" = 1 ] && sleep 5; cat"};
  cluster.start_exec("stuck", {}, slow_first);
  cluster.start_exec("stuck", {}, slow_first);
  REQUIRE(cluster.wait_for_workers("stuck", 2));

  mw::Client client({cluster.address()});
  const auto outcome = client.submit_and_wait("stuck", mw::Payload::parse_json(input_line(7)), 20s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  CHECK(outcome->result.to_json() == nlohmann::json::parse(input_line(7)));
  CHECK(outcome->attempts == 2);  // the second delivery finished the flow
  REQUIRE(wait_until([&] { return cluster.status().stale >= 1; }, 10s, 20ms));
  const auto s = cluster.status();
  CHECK(s.lease_expired >= 1);
  CHECK(s.done == 1);  // the late answer of the first holder did not finish it again
}

TEST_CASE("durability: a job held past its lease that comes back to the same worker: the first run's late answer is stale") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--type-lease", "stuck=2"});
  // One worker with room for two runs. The first run outlives the 2 s
  // lease, and the job comes back here as attempt 2. The order of the two
  // answers is fixed by a file, not by timing: the first run answers (late)
  // as soon as the second has started and said so in the file; the second
  // answers a second later, well within its own lease.
  const std::string started = (cluster.dir() / "second-run-started").string();
  cluster.start_exec("stuck", {"--concurrency", "2"},
                     {"/bin/sh", "-c",
                      "cat >/dev/null; if [ \"$MW_ATTEMPT\" = 1 ]; then "
                      "  i=0; while [ ! -e \"$0\" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; "
                      "else touch \"$0\"; sleep 1; fi; "
                      "echo \"{\\\"attempt\\\": $MW_ATTEMPT}\"",
                      started});
  REQUIRE(cluster.wait_for_workers("stuck", 1));

  mw::Client client({cluster.address()});
  const auto outcome = client.submit_and_wait("stuck", mw::Payload::parse_json("{}"), 30s);
  REQUIRE(outcome.has_value());
  CHECK(outcome->done);
  CHECK(outcome->result.to_json() == nlohmann::json{{"attempt", 2}});  // not the late first run's
  CHECK(outcome->attempts == 2);
  REQUIRE(wait_until([&] { return cluster.status().stale >= 1; }, 10s, 20ms));
  const auto s = cluster.status();
  CHECK(s.lease_expired == 1);
  CHECK(s.stale == 1);
  CHECK(s.done == 1);
}

TEST_CASE("durability: mw submit --wait that loses its broker names the accepted flow, which a restart runs") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  Process& waiting = cluster.start_mw("waiting", {"submit", "later", "{\"n\":1}", "--wait", "--timeout", "60"});
  REQUIRE(wait_until([&] { return cluster.status().submitted == 1; }, 10s));
  // STATUS counts the SUBMIT before the commit that holds it, and ACCEPTED
  // follows that commit: give the commit and the ACCEPTED time to happen
  // (a broker killed before them leaves a submitter that cannot name a
  // flow, and says the job may or may not be accepted: the next test case).
  std::this_thread::sleep_for(1s);
  cluster.broker().signal(SIGKILL);
  REQUIRE(cluster.broker().wait_exit(5s).has_value());
  REQUIRE(waiting.wait_exit(20s) == 3);  // no outcome: the flow goes on if the broker comes back
  const std::string err = waiting.stderr_text();
  const auto at = err.find("while waiting for flow ");
  REQUIRE(at != std::string::npos);
  const std::string flow = err.substr(at + 23, err.find(' ', at + 23) - at - 23);

  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"}, address, pub);
  const auto ran = cluster.dir() / "ran.flows";
  cluster.start_exec("later", {}, {"/bin/sh", "-c", "echo $MW_FLOW_ID >> '" + ran.string() + "'; cat"});
  REQUIRE(wait_until([&] { return cluster.status().done == 1; }, 15s));
  std::ifstream ran_flows(ran);
  std::string ran_flow;
  std::getline(ran_flows, ran_flow);
  CHECK(ran_flow == flow);  // the flow the message named is the one the restarted broker ran

  // The message says how to get the result: mw result (the broker keeps the outcome).
  CHECK(err.find("mw result " + flow + " --wait") != std::string::npos);
  const auto result = cluster.mw({"result", flow, "--wait", "--timeout", "10"});
  CHECK(result.exit_status == 0);
  CHECK(result.out == "{\"n\":1}\n");
}

TEST_CASE("durability: mw submit --wait outlives a quick broker restart: it asks for its flow again and prints the result") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  // The waiting client gives a silent broker 10 s before it gives up.
  cluster.start_broker({"--store", store, "--heartbeat-ms", "1000"});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  Process& waiting = cluster.start_mw("waiting", {"submit", "later", "{\"n\":2}", "--wait", "--timeout", "60"});
  REQUIRE(wait_until([&] { return cluster.status().submitted == 1; }, 10s));
  std::this_thread::sleep_for(1s);  // the commit and the ACCEPTED (see the test case above)
  cluster.broker().signal(SIGKILL);
  REQUIRE(cluster.broker().wait_exit(5s).has_value());
  cluster.start_broker({"--store", store, "--heartbeat-ms", "1000"}, address, pub);
  cluster.start_exec("later", {}, {"/bin/cat"});
  REQUIRE(waiting.wait_exit(30s) == 0);
  CHECK(waiting.stdout_text() == "{\"n\":2}\n");
  CHECK(cluster.status().recovered == 1);
}

TEST_CASE("durability: mw submit --wait whose broker restarts on :memory: says at once that the flow is gone") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--store", ":memory:", "--heartbeat-ms", "1000"});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  Process& waiting = cluster.start_mw("waiting", {"submit", "later", "{\"n\":3}", "--wait", "--timeout", "60"});
  REQUIRE(wait_until([&] { return cluster.status().submitted == 1; }, 10s));
  std::this_thread::sleep_for(1s);  // the ACCEPTED: a client still waiting for it has no flow to ask for
  cluster.broker().signal(SIGKILL);
  REQUIRE(cluster.broker().wait_exit(5s).has_value());
  cluster.start_broker({"--store", ":memory:", "--heartbeat-ms", "1000"}, address, pub);
  // Told by the new broker within a heartbeat or two, long before its 60 s.
  REQUIRE(waiting.wait_exit(20s) == 1);
  CHECK(waiting.stderr_text().find("the broker restarted (or forgot this client) while it waited") != std::string::npos);
  CHECK(waiting.stderr_text().find(":memory: forgets its unfinished flows") != std::string::npos);
}

TEST_CASE("mw result: how a flow ended, or that it has not; --wait waits for it") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--type-max-attempts", "doomed=1"});
  const auto submitted = cluster.mw({"submit", "echo", "{\"k\":\"v\"}"});
  REQUIRE(submitted.exit_status == 0);
  const std::string flow = submitted.out.substr(0, submitted.out.find('\n'));

  const auto waiting = cluster.mw({"result", flow});  // no worker yet
  CHECK(waiting.exit_status == 3);
  CHECK(waiting.err.find("has not ended: it is queued at echo") != std::string::npos);
  // --wait that gives up, with --json: the flow's record as it is now.
  const auto gave_up = cluster.mw({"result", flow, "--wait", "--timeout", "0.5", "--json"});
  CHECK(gave_up.exit_status == 3);
  CHECK(nlohmann::json::parse(gave_up.out).at("state") == "queued");
  Process& waiter = cluster.start_mw("result-wait", {"result", flow, "--wait", "--timeout", "30"});
  cluster.start_exec("echo", {}, {"/bin/cat"});
  REQUIRE(waiter.wait_exit(20s) == 0);
  CHECK(waiter.stdout_text() == "{\"k\":\"v\"}\n");

  const auto again = cluster.mw({"result", flow});
  CHECK(again.exit_status == 0);
  CHECK(again.out == "{\"k\":\"v\"}\n");
  const auto json = cluster.mw({"result", flow, "--json"});
  REQUIRE(json.exit_status == 0);
  const auto record = nlohmann::json::parse(json.out);
  CHECK(record.at("state") == "done");
  CHECK(record.at("type") == "echo");
  CHECK(record.at("result") == nlohmann::json{{"k", "v"}});
  CHECK(lines_of(json.out).size() == 1);  // one document per line, as every --json prints
  const auto pretty = cluster.mw({"result", flow, "--json", "--pretty"});
  REQUIRE(pretty.exit_status == 0);
  CHECK(lines_of(pretty.out).size() > 1);
  CHECK(nlohmann::json::parse(pretty.out) == record);

  cluster.start_exec("doomed", {}, {"/bin/sh", "-c", "echo 'no such order' >&2; exit 1"});
  const auto died = cluster.mw({"submit", "doomed", "1", "--wait"});
  REQUIRE(died.exit_status == 1);
  const auto dead_flow = died.err.substr(died.err.find("flow ") + 5, died.err.find(" died") - died.err.find("flow ") - 5);
  const auto dead = cluster.mw({"result", dead_flow});
  CHECK(dead.exit_status == 1);
  CHECK(dead.err.find("died at doomed after 1 attempt(s)") != std::string::npos);
  CHECK(dead.err.find("no such order") != std::string::npos);

  const auto unknown = cluster.mw({"result", "12345"});
  CHECK(unknown.exit_status == 4);  // not known: neither failed (1) nor going on (3)
  CHECK(cluster.mw({"result", "12345", "--wait", "--timeout", "5"}).exit_status == 4);
  CHECK(unknown.err.find("flow 12345 is not known here") != std::string::npos);
  CHECK(unknown.out.empty());
  // A script that asked for JSON gets a document for the flow all the same.
  for (const auto& json_args : {std::vector<std::string>{"result", "12345", "--json"},
                                std::vector<std::string>{"result", "12345", "--json", "--wait", "--timeout", "5"}}) {
    const auto unknown_json = cluster.mw(json_args);
    CHECK(unknown_json.exit_status == 4);
    CHECK(nlohmann::json::parse(unknown_json.out) == nlohmann::json::parse(R"({"id": 12345, "state": "unknown"})"));
  }
  CHECK(lines_of(cluster.mw({"result", "12345", "--json", "--pretty"}).out).size() > 1);
  CHECK(cluster.mw({"result", "abc"}).exit_status == 2);  // not a flow id: the command line is wrong
}

TEST_CASE("durability: mw submit to a broker that never acknowledges says the job may or may not be accepted") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--store", (cluster.dir() / "mw.db").string(), "--heartbeat-ms", "200"});
  cluster.broker().signal(SIGSTOP);  // takes the SUBMIT into its socket, answers nothing
  Process& submitting = cluster.start_mw("submitting", {"submit", "later", "{\"n\":1}", "--wait"});
  const auto code = submitting.wait_exit(20s);
  cluster.broker().signal(SIGCONT);
  REQUIRE(code == 1);
  CHECK(submitting.stderr_text().find("may or may not have been accepted") != std::string::npos);
  CHECK(submitting.stderr_text().find("while waiting for flow") == std::string::npos);
}

TEST_CASE("durability: mw result answers after a kill -9 and restart for flows that ended before it") {
  Cluster cluster;
  INFO(cluster.report());
  const auto store = (cluster.dir() / "mw.db").string();
  cluster.start_broker({"--store", store});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  cluster.start_exec("echo", {}, {"cat"});
  REQUIRE(cluster.wait_for_workers("echo", 1));
  std::uint64_t ended = 0;
  {
    mw::Client client({address});
    const auto outcome = client.submit_and_wait("echo", mw::Payload::parse_json(R"({"kept":true})"), 20s);
    REQUIRE(outcome.has_value());
    REQUIRE(outcome->done);
    ended = outcome->flow_id;
  }
  const auto submitted = cluster.mw({"submit", "nobody-serves-this", "{}"});
  REQUIRE(submitted.exit_status == 0);
  const std::uint64_t unfinished = std::stoull(submitted.out);
  REQUIRE(cluster.mw({"result", std::to_string(ended)}).exit_status == 0);

  cluster.broker().signal(SIGKILL);
  REQUIRE(cluster.broker().wait_exit(5s) == 128 + SIGKILL);
  cluster.start_broker({"--store", store}, address, pub);
  const auto after = cluster.mw({"result", std::to_string(ended)});
  INFO("stderr: ", after.err);
  CHECK(after.exit_status == 0);
  CHECK(nlohmann::json::parse(after.out) == nlohmann::json{{"kept", true}});
  CHECK(cluster.mw({"result", std::to_string(unfinished)}).exit_status == 3);  // recovered, not ended
}
