// mw status and mw status --json: workers per type with host, pid and
// in-flight; queue depth and age; done, failed and dead counts.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <doctest/doctest.h>

#include "cli_output.hpp"
#include "cluster.hpp"
#include "mw/options.hpp"

using namespace mwtest;

namespace {

// The whitespace-separated fields of the first line of `table` that starts
// with `first` (a type name) or holds `inner` (a pid).
std::vector<std::string> row(const std::string& table, std::string_view key, bool at_start) {
  std::istringstream in(table);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> out;
    for (std::string f; fields >> f;) out.push_back(f);
    if (out.empty()) continue;
    if (at_start ? out.front() == key : std::find(out.begin(), out.end(), key) != out.end()) return out;
  }
  return {};
}

}  // namespace

TEST_CASE("status: queues, workers and counters, as a table and as JSON") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});

  // Jobs nobody serves wait in their queue.
  for (int i = 0; i < 3; ++i) {
    const auto r = cluster.mw({"submit", "nobody", "{\"i\":" + std::to_string(i) + "}"});
    REQUIRE(r.exit_status == 0);
    CHECK(std::stoull(r.out) > 0);  // the flow id
  }
  pause_for(150ms);
  {
    const auto status = cluster.status_json();
    const auto nobody = type_json(status, "nobody");
    REQUIRE(nobody.is_object());
    CHECK(nobody.at("queued") == 3);
    CHECK(nobody.at("oldest_queued_ms").get<std::uint64_t>() >= 100);
    CHECK(nobody.at("workers") == 0);
    CHECK(nobody.at("in_flight") == 0);
    CHECK(status.at("submitted") == 3);
    CHECK(status.at("workers").empty());

    const auto table = cluster.mw({"status"});
    REQUIRE(table.exit_status == 0);
    // TYPE WORKERS QUEUED OLDEST IN-FLIGHT DONE FAILED DEAD DONE/S
    const auto fields = row(table.out, "nobody", true);
    REQUIRE(fields.size() == 9);
    CHECK(fields[1] == "0");
    CHECK(fields[2] == "3");
    CHECK(fields[3] != "-");  // an age
    // Jobs that cannot move are named below the table.
    CHECK(table.out.find("! nobody: 3 job(s) queued and no worker serves it (start one with --type nobody)") !=
          std::string::npos);
  }

  // A worker holding a job: host, pid, credit and in-flight.
  // It sleeps until killed: however slow the checks below, it still holds its job.
  const auto busy_pid_file = cluster.dir() / "busy.pid";
  Process& busy = cluster.start_exec("busy", {"--concurrency", "2"},
                                     {"/bin/sh", "-c", "echo $$ > '" + busy_pid_file.string() + "'; exec sleep 600"});
  REQUIRE(cluster.wait_for_workers("busy", 1));
  REQUIRE(cluster.mw({"submit", "busy", "{}"}).exit_status == 0);
  REQUIRE(wait_until(
      [&] {
        const auto w = worker_stats(cluster.status(), busy.pid());
        return w && w->in_flight == 1;
      },
      5s));
  {
    const auto status = cluster.status_json();
    const auto worker = worker_json(status, busy.pid());
    REQUIRE(worker.is_object());
    CHECK(worker.at("host") == mw::host_name());
    CHECK(worker.at("types") == nlohmann::json{"busy"});
    CHECK(worker.at("credit") == 2);
    CHECK(worker.at("in_flight") == 1);
    CHECK(worker.at("next") == "");
    const auto type = type_json(status, "busy");
    REQUIRE(type.is_object());
    CHECK(type.at("workers") == 1);
    CHECK(type.at("in_flight") == 1);
    CHECK(type.at("queued") == 0);

    const auto table = cluster.mw({"status"});
    REQUIRE(table.exit_status == 0);
    // WORKER TYPES NEXT HOST PID IN-FLIGHT DONE
    const auto fields = row(table.out, std::to_string(busy.pid()), false);
    REQUIRE(fields.size() == 7);
    CHECK(fields[1] == "busy");
    CHECK(fields[3] == mw::host_name());
    CHECK(fields[5] == "1/2");
    CHECK(table.out.find("! busy") == std::string::npos);  // served: nothing to say
  }
  busy.signal(SIGKILL);  // its job would hold up the end of the test
  REQUIRE(busy.wait_exit(5s).has_value());
  // The command is its own process group, which outlives a worker killed with -9.
  REQUIRE(wait_until([&] { return std::filesystem::exists(busy_pid_file) && std::filesystem::file_size(busy_pid_file) > 0; }, 5s));
  pid_t command_group = 0;
  std::ifstream(busy_pid_file) >> command_group;
  REQUIRE(command_group > 1);
  ::kill(-command_group, SIGKILL);

  // Done, failed and dead counts per type and in total.
  cluster.start_worker("sample_worker", binaries().sample_worker);
  cluster.start_worker("next_worker", binaries().next_worker);
  REQUIRE(cluster.mw({"submit", "sampleworker", "0.5", "--wait", "--timeout", "20"}).exit_status == 0);
  REQUIRE(cluster.mw({"submit", "sampleworker", "\"x\"", "--wait", "--timeout", "20"}).exit_status == 1);
  {
    const auto status = cluster.status_json();
    const auto sample = type_json(status, "sampleworker");
    REQUIRE(sample.is_object());
    CHECK(sample.at("done") == 1);
    CHECK(sample.at("failed") == 1);
    CHECK(sample.at("dead") == 1);
    CHECK(sample.at("workers") == 1);
    const auto next = type_json(status, "nextworker");
    REQUIRE(next.is_object());
    CHECK(next.at("done") == 1);
    CHECK(next.at("dead") == 0);
    CHECK(status.at("submitted") == 6);
    CHECK(status.at("done") == 1);
    CHECK(status.at("failed") == 1);
    CHECK(status.at("dead") == 1);
    CHECK(type_json(status, "nobody").at("queued") == 3);

    const auto table = cluster.mw({"status"});
    REQUIRE(table.exit_status == 0);
    CHECK(table.out.find("6 submitted, 1 done, 1 dead, 0 cancelled; 1 failures") != std::string::npos);
    const auto fields = row(table.out, "sampleworker", true);
    REQUIRE(fields.size() == 9);
    CHECK(fields[5] == "1");  // done
    CHECK(fields[6] == "1");  // failed
    CHECK(fields[7] == "1");  // dead
  }
}

TEST_CASE("mw submit --wait and mw result --wait say when the flow waits at a type no worker serves, and wait on") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  // A type one edit away is served: the hint guesses it was meant.
  cluster.start_exec("unserve", {}, {"/bin/cat"});
  REQUIRE(cluster.wait_for_workers("unserve", 1));
  Process& waiting = cluster.start_mw("waiting", {"submit", "unserved", "{\"n\":1}", "--wait", "--timeout", "60"});
  const auto hint = waiting.wait_for_stderr_line("is queued at type 'unserved', which no worker serves", 20s);
  REQUIRE(hint.has_value());
  CHECK(hint->find("(did you mean 'unserve'? workers serve: unserve)") != std::string::npos);
  CHECK(waiting.running());  // it says so and waits on
  const auto table = cluster.mw({"status"});
  CHECK(table.out.find("! unserved: 1 job(s) queued and no worker serves it "
                       "(start one with --type unserved; or did you mean 'unserve'?)") != std::string::npos);
  const auto listed = cluster.mw({"flows", "--json"});
  REQUIRE(listed.exit_status == 0);
  const auto id = json_lines(listed.out).at(0).at("id").get<std::uint64_t>();
  Process& asking = cluster.start_mw("asking", {"result", std::to_string(id), "--wait", "--timeout", "60"});
  REQUIRE(asking.wait_for_stderr_line("flow " + std::to_string(id) + " is queued at type 'unserved'", 20s).has_value());

  // A worker of that type comes: both get the result.
  cluster.start_exec("unserved", {}, {"/bin/cat"});
  REQUIRE(waiting.wait_exit(20s) == 0);
  CHECK(waiting.stdout_text() == "{\"n\":1}\n");
  REQUIRE(asking.wait_exit(20s) == 0);
  CHECK(asking.stdout_text() == "{\"n\":1}\n");

  // A served type's slow flow is not called stalled.
  cluster.start_exec("slow", {}, {"/bin/sh", "-c", "sleep 5; cat"});
  REQUIRE(cluster.wait_for_workers("slow", 1));
  const auto slow = cluster.mw({"submit", "slow", "2", "--wait", "--timeout", "30"});
  CHECK(slow.exit_status == 0);
  CHECK(slow.err.find("no worker serves") == std::string::npos);
}

TEST_CASE("a full broker refuses mw submit with one line and exit 1 until a worker makes room") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--max-waiting", "2"});
  REQUIRE(cluster.mw({"submit", "later", "1"}).exit_status == 0);
  REQUIRE(cluster.mw({"submit", "later", "2"}).exit_status == 0);
  const auto refused = cluster.mw({"submit", "later", "3"});
  CHECK(refused.exit_status == 1);
  CHECK(refused.out.empty());
  CHECK(refused.err.find("the broker is full") != std::string::npos);
  CHECK(refused.err.find("(507)") != std::string::npos);
  CHECK(std::count(refused.err.begin(), refused.err.end(), '\n') == 1);
  {
    const auto status = cluster.status_json();
    CHECK(status.at("waiting") == 2);
    CHECK(status.at("max_waiting") == 2);
    CHECK(status.at("refused") == 1);
    CHECK(status.at("submitted") == 2);
    const auto table = cluster.mw({"status"});
    CHECK(table.out.find("waiting: 2 jobs (limit 2)") != std::string::npos);
    CHECK(table.out.find("1 submits refused (full)") != std::string::npos);
  }
  // A worker takes them: the same SUBMIT goes through, and every flow ends.
  cluster.start_exec("later", {"--concurrency", "4"}, {"/bin/cat"});
  REQUIRE(cluster.wait_for_workers("later", 1));
  REQUIRE(wait_until([&] { return cluster.status_json().at("waiting") == 0; }, 10s));
  const auto accepted = cluster.mw({"submit", "later", "3", "--wait", "--timeout", "20"});
  CHECK(accepted.exit_status == 0);
  CHECK(accepted.out == "3\n");
  REQUIRE(wait_until([&] { return cluster.status_json().at("done") == 3; }, 10s));
}

TEST_CASE("a type at its --type-max-waiting is refused while other types are taken") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--max-waiting-per-type", "2", "--type-max-waiting", "bulk=1"});
  for (const char* type : {"later", "later", "bulk", "other"}) REQUIRE(cluster.mw({"submit", type, "1"}).exit_status == 0);
  for (const char* type : {"later", "bulk"}) {
    const auto refused = cluster.mw({"submit", type, "2"});
    CHECK(refused.exit_status == 1);
    CHECK(refused.err.find(std::string("type ") + type + " is full") != std::string::npos);
    CHECK(refused.err.find("(507)") != std::string::npos);
  }
  CHECK(cluster.mw({"submit", "other", "2"}).exit_status == 0);
  const auto status = cluster.status_json();
  CHECK(status.at("refused") == 2);
  CHECK(type_json(status, "bulk").at("max_waiting") == 1);
  CHECK(type_json(status, "later").at("max_waiting") == 2);
  CHECK(type_json(status, "later").at("refused") == 1);
  CHECK(type_json(status, "other").at("refused") == 0);
  const auto table = cluster.mw({"status"});
  CHECK(table.out.find("waiting per type (--max-waiting-per-type, --type-max-waiting): bulk 1 of 1 (1 submits "
                       "refused), later 2 of 2 (1 submits refused), other 2 of 2\n") != std::string::npos);
}

TEST_CASE("mw flows lists what waits and runs; mw cancel takes a flow out, and its waiting submitter says so") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  const auto queued_first = cluster.mw({"submit", "nobody", "{\"n\":1}"});
  REQUIRE(queued_first.exit_status == 0);
  const std::string first = queued_first.out.substr(0, queued_first.out.find('\n'));
  REQUIRE(cluster.mw({"submit", "later", "{}", "--delay", "600"}).exit_status == 0);
  Process& waiting = cluster.start_mw("waiting", {"submit", "nobody", "{\"n\":2}", "--wait", "--timeout", "60"});
  REQUIRE(wait_until([&] { return cluster.status().waiting == 3; }, 10s));
  pause_for(1s);  // its ACCEPTED reaches it (STATUS counts the job before it is sent)

  const auto table = cluster.mw({"flows"});
  REQUIRE(table.exit_status == 0);
  const auto first_row = row(table.out, first, true);
  REQUIRE(first_row.size() == 7);  // FLOW STATE TYPE ATTEMPTS PRIORITY AGE WORKER
  CHECK(first_row[1] == "queued");
  CHECK(first_row[2] == "nobody");
  CHECK(row(table.out, "later", false).at(1) == "delayed");

  const auto bad_state = cluster.mw({"flows", "--state", "bogus"});
  CHECK(bad_state.exit_status == 2);  // said in the flag's words, not the broker's query's
  CHECK(bad_state.err == "mw flows: --state must be queued, delayed or in_flight, not 'bogus'\n");

  const auto listed = cluster.mw({"flows", "nobody", "--json"});
  REQUIRE(listed.exit_status == 0);
  std::vector<nlohmann::json> records;
  std::istringstream lines(listed.out);
  for (std::string line; std::getline(lines, line);) records.push_back(nlohmann::json::parse(line));
  REQUIRE(records.size() == 2);
  CHECK(records[0].at("id").get<std::uint64_t>() == std::stoull(first));
  CHECK(records[1].at("submitter_waits") == true);
  const std::string waited = std::to_string(records[1].at("id").get<std::uint64_t>());

  const auto cancelled = cluster.mw({"cancel", waited, "12345"});
  CHECK(cancelled.exit_status == 4);  // one of the two is not known, as for mw result
  CHECK(cancelled.out.find("flow " + waited + " cancelled (was queued, nobody)") != std::string::npos);
  CHECK(cancelled.err.find("flow 12345 is not known here") != std::string::npos);
  REQUIRE(waiting.wait_exit(10s) == 1);
  CHECK(waiting.stderr_text().find("flow " + waited + " was cancelled") != std::string::npos);

  const auto s = cluster.status();
  CHECK(s.cancelled == 1);
  CHECK(s.waiting == 2);
  CHECK(cluster.mw({"cancel", "abc"}).err.find("'abc' is not a flow id") != std::string::npos);
  const auto again = cluster.mw({"cancel", waited});
  CHECK(again.exit_status == 1);  // known, and ended: not the same as unknown
  CHECK(again.err.find("flow " + waited + " has ended already (cancelled): there is nothing to cancel") !=
        std::string::npos);

  // With nothing left of it, nobody's row is history: shown with --all (and in --json) only.
  // later's, with a delayed job and no worker, stays.
  REQUIRE(cluster.mw({"cancel", first}).exit_status == 0);
  const auto brief = cluster.mw({"status"});
  REQUIRE(brief.exit_status == 0);
  CHECK(row(brief.out, "nobody", true).empty());
  CHECK(row(brief.out, "later", true).size() == 9);
  CHECK(brief.out.find("(1 idle type(s) without workers not shown: mw status --all)") != std::string::npos);
  CHECK(row(cluster.mw({"status", "--all"}).out, "nobody", true).size() == 9);
  CHECK(type_json(cluster.status_json(), "later").at("delayed") == 1);
}

TEST_CASE("mw --broker ADDR COMMAND: the broker may be named before the command, and the command's own wins") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  const std::string cli = binaries().cli;
  const auto before = run_to_exit("mw-global", {cli, "--broker", cluster.address(), "status", "--json"}, cluster.dir(), 20s);
  INFO("stderr: ", before.err);
  REQUIRE(before.exit_status == 0);
  CHECK(nlohmann::json::parse(before.out).contains("types"));

  const auto joined = run_to_exit("mw-global", {cli, "--broker=" + cluster.address(), "submit", "later", "{}"}, cluster.dir(), 20s);
  CHECK(joined.exit_status == 0);
  CHECK(cluster.status().submitted == 1);

  // Nothing listens on port 1: only the command's own --broker can answer.
  const auto both = run_to_exit("mw-global", {cli, "--broker", "tcp://127.0.0.1:1", "status", "--broker", cluster.address()},
                                cluster.dir(), 20s);
  CHECK(both.exit_status == 0);

  const auto twice = run_to_exit("mw-global", {cli, "--broker", "tcp://127.0.0.1:1", "--broker=" + cluster.address(), "status"},
                                 cluster.dir(), 20s);
  CHECK(twice.exit_status == 0);  // the last one given wins

  const auto alone = run_to_exit("mw-global", {cli, "--broker", cluster.address()}, cluster.dir(), 20s);
  CHECK(alone.exit_status == 2);
  CHECK(alone.err == "mw: a command must follow --broker ADDR: mw --broker ADDR COMMAND ... (see mw --help)\n");
  const auto no_address = run_to_exit("mw-global", {cli, "--broker"}, cluster.dir(), 20s);
  CHECK(no_address.exit_status == 2);
  CHECK(no_address.err == "mw: --broker needs an address: mw --broker ADDR COMMAND ...\n");
}

TEST_CASE("a command line that cannot run exits 2 with one line, in every program; failed work exits 1") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  const auto& bin = binaries();
  const std::string at = "--broker=" + cluster.address();
  const std::vector<std::vector<std::string>> usage_errors = {
      {bin.cli, "submit", at},                                   // no TYPE
      {bin.cli, "submit", at, "t", "{not json"},                 // a payload that is not JSON
      {bin.cli, "submit", at, "t", "--max-attempts", "0"},       // a bad value, checked by mw
      {bin.cli, "submit", at, "t", "--priority", "high"},        // a bad value, checked by the option parser
      {bin.cli, "submit", at, "a,b", "{}"},                      // no type name: no --type could serve it
      {bin.broker, "--type-max-waiting", "a b=3"},               // nor here
      {bin.cli, "status", at, "--bogus"},                        // an option nobody has
      {bin.cli, "status", "--broker=tcp://127.0.0.1:99999"},     // no such port: said at once, not after a wait
      {bin.sample_worker, "--broker=tcp://127.0.0.1:", "--type", "t"},  // no port at all
      {bin.cli, "result", at, "abc"},                            // not a flow id
      {bin.cli, "cancel", at, "abc"},                            // not a flow id either
      {bin.cli, "get", at, "users"},                             // no ID
      {bin.exec, at, "--type", "t"},                             // no command
      {bin.exec, at, "--type", "q,", "--", "cat"},               // an empty type in the list
      {bin.exec, at, "--type", "t", "--timeout", "1e300", "--", "cat"},  // no time fits that
      {bin.cli, "create", at, "users", "{}", "--id", "x"},       // a word of another method: refused, not ignored
      {bin.sample_worker, at, "--type", "a,,b"},                 // there too
      {bin.exec, at, "--type", "t", "--", "no-such-command"},    // a command that cannot run
      {bin.broker, "--heartbeat-ms", "1"},                       // out of range
      {bin.sample_worker, at, "--concurrency", "0"},             // a worker's standard flags
      {bin.cli, "listen", at, ""},                               // an unset "$TOPIC": it would wait forever
      {bin.cli, "bench", at, "--window", "0"},                   // not "the default" in disguise
      {bin.cli, "bench", at, "--backlog", "--stages", "3"},      // an option of another mode: refused, not ignored
      {bin.cli, "bench", at, "--entities", "--payload", "5"},    // and named as such, not as unknown
  };
  for (const auto& argv : usage_errors) {
    std::string line;
    for (const auto& word : argv) line += word + " ";
    INFO(line);
    const auto r = run_to_exit("usage", argv, cluster.dir(), 20s);
    check_cli_error(r, "");
    CHECK(r.exit_status == 2);
  }
  // More than 10 ms of spinning, refused by name in each program that spins.
  for (const auto& argv : std::vector<std::vector<std::string>>{{bin.broker, "--spin-us", "10001"},
                                                                {bin.sample_worker, at, "--spin-us", "10001"},
                                                                {bin.cli, "bench", at, "--spin-us", "10001"}}) {
    INFO(argv.front());
    const auto r = run_to_exit("usage", argv, cluster.dir(), 20s);
    check_cli_error(r, "--spin-us must be between 0 (never) and 10000");
    CHECK(r.exit_status == 2);
  }
  // Nothing of it reached the broker.
  CHECK(cluster.status().submitted == 0);

  // Work that fails is 1: a flow that died.
  cluster.start_exec("doomed", {}, {"/bin/sh", "-c", "exit 65"});
  CHECK(cluster.mw({"submit", "doomed", "1", "--wait", "--timeout", "20"}).exit_status == 1);
}
