// Periodic jobs through the CLI, end to end: a real mw-broker, `mw schedule`
// runs, and an in-process worker.
//
//   - `mw schedule NAME TYPE [JSON] --every S` writes the schedule entity;
//     again with the same NAME replaces it and keeps the broker's counters
//   - `mw schedule --list` (table, --json) pages through every schedule
//   - `--pause`/`--resume` patch `paused`; `--remove` removes
//   - bad arguments fail with one line before anything is sent
//   - the broker runs a schedule: jobs reach a worker, `runs` counts them
//
// Schedules that must not run during a test start an hour from now.
#include <chrono>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cluster.hpp"
#include "cli_checks.hpp"
#include "in_process_worker.hpp"

using namespace mwtest;
using nlohmann::json;

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// "@UNIXSECONDS" an hour from now: a schedule that will not run during the test.
std::string in_an_hour() { return "@" + std::to_string(now_ms() / 1000 + 3600); }

// The --json lines of `mw schedule --list`, by name.
std::map<std::string, json> listed(Cluster& cluster, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"schedule", "--list", "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::map<std::string, json> by_name;
  for (auto& doc : json_lines(mw_ok(cluster, args))) by_name[doc.at("id").get<std::string>()] = doc;
  return by_name;
}

}  // namespace

TEST_CASE("mw schedule creates, lists, replaces, pauses, resumes and removes schedules") {
  Cluster cluster;
  INFO(cluster.report());
  // A page of 2: three schedules take two finds.
  cluster.start_broker({"--page-max", "2"});
  const std::string later = in_an_hour();
  const std::int64_t before = now_ms();

  const auto created = lines_of(mw_ok(cluster, {"schedule", "tick", "ticker", R"({"n": 1})", "--every", "0.5"}));
  REQUIRE(created.size() == 1);
  CHECK(created[0].rfind("schedule tick: ticker every 0.5s, next run 20", 0) == 0);
  CHECK(created[0].back() == 'Z');
  mw_ok(cluster, {"schedule", "nightly", "backup", "--every", "86400", "--at", later, "--priority", "-5",
                  "--max-attempts", "2"});
  mw_ok(cluster, {"schedule", "a.b:c-d_e", "mail", "-1", "--every", "60", "--at", later, "--paused"});

  SUBCASE("the documents") {
    const json tick = json::parse(mw_ok(cluster, {"get", "schedules", "tick"}));
    CHECK(tick["type"] == "ticker");
    CHECK(tick["payload"] == json{{"n", 1}});
    CHECK(tick["every_ms"] == 500);
    CHECK(tick["next_at"].get<std::int64_t>() >= before);
    // First run now; the broker may have run it since and moved next_at on by every_ms.
    CHECK(tick["next_at"].get<std::int64_t>() <= now_ms() + 500);
    CHECK(tick["paused"] == false);
    CHECK_FALSE(tick.contains("priority"));

    const json nightly = json::parse(mw_ok(cluster, {"get", "schedules", "nightly"}));
    CHECK(nightly["payload"].is_null());
    CHECK(nightly["every_ms"] == 86'400'000);
    CHECK(nightly["next_at"] == std::stoll(later.substr(1)) * 1000);
    CHECK(nightly["priority"] == -5);
    CHECK(nightly["max_attempts"] == 2);

    const json odd = json::parse(mw_ok(cluster, {"get", "schedules", "a.b:c-d_e"}));
    CHECK(odd["payload"] == -1);  // a negative number is the payload
    CHECK(odd["paused"] == true);
  }

  SUBCASE("--list: a table, and --json, through pages") {
    const auto rows = lines_of(mw_ok(cluster, {"schedule", "--list"}));
    REQUIRE(rows.size() == 4);
    for (const char* column : {"NAME", "TYPE", "EVERY", "NEXT RUN (UTC)", "RUNS", "SKIPPED", "PAUSED"})
      CHECK(rows[0].find(column) != std::string::npos);
    CHECK(rows[1].rfind("a.b:c-d_e ", 0) == 0);
    CHECK(rows[1].find("60s") != std::string::npos);
    CHECK(rows[1].find("yes") != std::string::npos);
    CHECK(rows[2].rfind("nightly ", 0) == 0);
    CHECK(rows[2].find("86400s") != std::string::npos);
    CHECK(rows[3].rfind("tick ", 0) == 0);
    CHECK(rows[3].find("0.5s") != std::string::npos);

    const auto all = listed(cluster);
    CHECK(all.size() == 3);
    CHECK(all.at("tick")["every_ms"] == 500);
    CHECK(all.at("nightly")["type"] == "backup");
  }

  SUBCASE("the same NAME again replaces the schedule and keeps its counters") {
    // As the broker would have counted them.
    mw_ok(cluster, {"patch", "schedules", "nightly", R"({"runs": 5, "skipped": 2, "last_run_at": 1000, "last_flow": 9})"});
    const auto out = lines_of(mw_ok(cluster, {"schedule", "nightly", "backup2", R"("full")", "--every", "3600", "--at", later}));
    REQUIRE(out.size() == 1);
    CHECK(out[0].rfind("schedule nightly: backup2 every 3600s, next run ", 0) == 0);
    const json nightly = listed(cluster).at("nightly");
    CHECK(nightly["type"] == "backup2");
    CHECK(nightly["payload"] == "full");
    CHECK(nightly["every_ms"] == 3'600'000);
    CHECK_FALSE(nightly.contains("priority"));
    CHECK_FALSE(nightly.contains("max_attempts"));
    CHECK(nightly["runs"] == 5);
    CHECK(nightly["skipped"] == 2);
    CHECK(nightly["last_flow"] == 9);
    CHECK(listed(cluster).size() == 3);
  }

  SUBCASE("--pause and --resume") {
    CHECK(lines_of(mw_ok(cluster, {"schedule", "--pause", "nightly"})) == std::vector<std::string>{"schedule nightly paused"});
    CHECK(listed(cluster).at("nightly")["paused"] == true);
    CHECK(lines_of(mw_ok(cluster, {"schedule", "--resume", "nightly"})) ==
          std::vector<std::string>{"schedule nightly resumed"});
    CHECK(listed(cluster).at("nightly")["paused"] == false);
    check_cli_error(cluster.mw({"schedule", "--pause", "nope"}), "no schedule named 'nope'");
  }

  SUBCASE("--remove") {
    CHECK(lines_of(mw_ok(cluster, {"schedule", "--remove", "nightly"})) ==
          std::vector<std::string>{"schedule nightly removed"});
    const auto all = listed(cluster);
    CHECK(all.size() == 2);
    CHECK(all.count("nightly") == 0);
    check_cli_error(cluster.mw({"schedule", "--remove", "nightly"}), "no schedule named 'nightly'");
  }

  SUBCASE("--schedule-endpoint") {
    mw_ok(cluster, {"schedule", "other", "t", "--every", "1", "--at", later, "--schedule-endpoint", "timers"});
    CHECK(listed(cluster, {"--schedule-endpoint", "timers"}).count("other") == 1);
    CHECK(listed(cluster).count("other") == 0);
  }
}

TEST_CASE("mw schedule: bad arguments fail with one line before anything is sent") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();

  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "0.05"}), "--every");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "-1"}), "--every");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "soon"}), "--every");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "315360001"}), "--every");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker"}), "--every");
  check_cli_error(cluster.mw({"schedule", "bad name", "ticker", "--every", "1"}), "NAME");
  check_cli_error(cluster.mw({"schedule", "a/b", "ticker", "--every", "1"}), "NAME");
  check_cli_error(cluster.mw({"schedule", std::string(129, 'n'), "ticker", "--every", "1"}), "NAME");
  check_cli_error(cluster.mw({"schedule", "tick", std::string(129, 't'), "--every", "1"}), "TYPE");
  check_cli_error(cluster.mw({"schedule", "tick"}), "TYPE");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "{x", "--every", "1"}), "not valid JSON");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "1", "--at", "2026-12-01T10:00:00"}), "zone");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "1", "--priority", "1001"}), "--priority");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "1", "--max-attempts", "0"}), "--max-attempts");
  check_cli_error(cluster.mw({"schedule", "--list", "--remove", "tick"}), "--list and --remove");
  check_cli_error(cluster.mw({"schedule", "--pause", "a", "--resume", "a"}), "--pause and --resume");
  check_cli_error(cluster.mw({"schedule", "--list", "--every", "1"}), "--every");
  check_cli_error(cluster.mw({"schedule", "--remove", "tick", "extra"}), "unexpected argument");
  check_cli_error(cluster.mw({"schedule", "tick", "ticker", "--every", "1", "--json"}), "--json");
  check_cli_error(cluster.mw({"schedule", "--remove", "bad name"}), "NAME");
  check_cli_error(cluster.mw({"schedule", "--remove", "unknown"}), "no schedule named 'unknown'");

  // Nothing was written.
  CHECK(mw_ok(cluster, {"schedule", "--list", "--json"}).empty());
  const auto empty = cluster.mw({"schedule", "--list"});
  CHECK(empty.exit_status == 0);
  CHECK(empty.out.empty());
  CHECK(empty.err.find("no schedules") != std::string::npos);
}

// Needs the broker's schedule runner (being written alongside the CLI).
TEST_CASE("the broker runs a schedule: its jobs reach a worker and runs counts them") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  JobLog received;
  mw::WorkerOptions options;
  options.broker = cluster.address();
  options.types = {"ticker"};
  InProcessWorker worker(options, received.handler());
  REQUIRE(cluster.wait_for_workers("ticker", 1));

  const auto scheduled = cluster.mw({"schedule", "tick", "ticker", R"({"n":1})", "--every", "0.3"});
  REQUIRE(scheduled.exit_status == 0);
  CHECK(scheduled.err.empty());  // its type is served: nothing to say
  // One of a type nobody serves is written, and said, with the served type
  // it was probably meant to be.
  const auto typo = cluster.mw({"schedule", "typo", "tickr", "--every", "60", "--paused"});
  CHECK(typo.exit_status == 0);
  CHECK(typo.err.find("mw schedule: note: no worker serves 'tickr' now (did you mean 'ticker'?") != std::string::npos);
  auto runs = [&] {
    const auto all = listed(cluster);
    const auto it = all.find("tick");
    return it == all.end() ? 0 : it->second.value("runs", 0);
  };
  const bool ran = wait_until([&] { return received.jobs().size() >= 3 && runs() >= 3; }, 10s, 100ms);
  INFO("jobs received: ", received.jobs().size(), ", runs: ", runs());
  CHECK(ran);
  for (const auto& job : received.jobs()) {
    CHECK(job.type == "ticker");
    CHECK(job.payload.to_json() == json{{"n", 1}});
  }
}
