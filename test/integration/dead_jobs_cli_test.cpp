// Dead jobs and submit options through the CLI, end to end: a real
// mw-broker, `mw` runs, and in-process workers.
//
//   - `mw dead` lists the dead-job records not yet replayed (table, --json,
//     TYPE, --limit, more records than one page)
//   - `mw retry ID` submits the job again to a worker of its type and marks
//     the record; a second retry is a Conflict, an unknown id NotFound
//   - `mw retry --type T` replays every dead job of a type
//   - `mw submit --delay/--at/--priority/--key/--lease`: accepted values
//     reach a worker; bad ones fail before anything is sent
//
// Dead records are created with `mw create sync …`: they are ordinary
// entities, so these tests do not need a job to die first.
#include <algorithm>
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


// A dead-job record as the broker writes it (mw/dead_jobs.hpp).
json dead_record(const std::string& id, const std::string& type, std::int64_t died_at, json payload) {
  return {{"id", id},           {"kind", "dead"},  {"type", type},         {"flow", 1},
          {"job", 2},           {"payload", std::move(payload)},           {"error", "gave up"},
          {"attempts", 5},      {"died_at", died_at}, {"retried", false}};
}

void create(Cluster& cluster, const json& record) {
  const auto r = cluster.mw({"create", "sync", record.dump()});
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  REQUIRE(r.exit_status == 0);
}

// The ids of --json lines, in order.
std::vector<std::string> ids_of(const std::vector<json>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.at("id").get<std::string>());
  return ids;
}

// The flow id out of "ID -> flow N".
std::uint64_t flow_in(const std::string& line, const std::string& id) {
  const std::string prefix = id + " -> flow ";
  REQUIRE_MESSAGE(line.rfind(prefix, 0) == 0, "'" << line << "' does not start with '" << prefix << "'");
  return std::stoull(line.substr(prefix.size()));
}

mw::WorkerOptions worker_options(const std::string& broker, const std::string& type) {
  mw::WorkerOptions options;
  options.broker = broker;
  options.types = {type};
  return options;
}

}  // namespace

TEST_CASE("mw dead lists dead jobs not yet replayed, oldest first") {
  Cluster cluster;
  INFO(cluster.report());
  // A page of 2: three records take two finds.
  cluster.start_broker({"--page-max", "2"});

  json first = dead_record("dead-1", "resize", 1000, {{"w", 10}});
  first["error"] = "out of memory\nat line 2";
  create(cluster, first);
  create(cluster, dead_record("dead-3", "resize", 3000, {{"w", 30}}));
  create(cluster, dead_record("dead-2", "mail", 2000, "hello"));
  json replayed = dead_record("dead-0", "resize", 500, nullptr);
  replayed["retried"] = true;
  replayed["retried_as"] = 99;
  create(cluster, replayed);
  create(cluster, {{"id", "note"}, {"kind", "note"}, {"type", "resize"}});

  SUBCASE("a table") {
    const auto rows = lines_of(mw_ok(cluster, {"dead"}));
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].rfind("ID", 0) == 0);
    CHECK(rows[0].find("ERROR") != std::string::npos);
    CHECK(rows[1].rfind("dead-1 ", 0) == 0);
    CHECK(rows[1].find("resize") != std::string::npos);
    CHECK(rows[1].find("1970-01-01T00:00:01.000Z") != std::string::npos);
    CHECK(rows[1].find("out of memory at line 2") != std::string::npos);  // one row, even for a two-line error
    CHECK(rows[2].rfind("dead-2 ", 0) == 0);
    CHECK(rows[3].rfind("dead-3 ", 0) == 0);
  }

  SUBCASE("--json, a TYPE, --limit") {
    const auto all = json_lines(mw_ok(cluster, {"dead", "--json"}));
    CHECK(ids_of(all) == std::vector<std::string>{"dead-1", "dead-2", "dead-3"});
    REQUIRE(all.size() == 3);
    CHECK(all[0]["type"] == "resize");
    CHECK(all[0]["payload"] == json{{"w", 10}});
    CHECK(all[0]["attempts"] == 5);
    CHECK(all[0]["died_at"] == 1000);
    CHECK(all[0]["error"] == "out of memory\nat line 2");
    CHECK(all[1]["payload"] == "hello");

    CHECK(ids_of(json_lines(mw_ok(cluster, {"dead", "resize", "--json"}))) ==
          std::vector<std::string>{"dead-1", "dead-3"});
    CHECK(ids_of(json_lines(mw_ok(cluster, {"dead", "--json", "--limit", "1"}))) == std::vector<std::string>{"dead-1"});
    CHECK(mw_ok(cluster, {"dead", "nosuchtype", "--json"}).empty());
  }

  SUBCASE("bad arguments") {
    check_cli_error(cluster.mw({"dead", "--limit", "0"}), "--limit");
    check_cli_error(cluster.mw({"dead", "a", "b"}), "unexpected argument");
  }
}

TEST_CASE("mw retry ID submits the dead job again, once") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  JobLog received;
  InProcessWorker worker(worker_options(cluster.address(), "resize"), received.handler());

  mw_ok(cluster, {"create", "orders", R"({"id": "o1"})"});
  json record = dead_record("dead-1", "resize", 1000, {{"w", 10}, {"name", "a"}});
  record["entity"] = "orders/o1";
  create(cluster, record);
  create(cluster, {{"id", "note"}, {"kind", "note"}, {"type", "resize"}});

  const auto out = lines_of(mw_ok(cluster, {"retry", "dead-1"}));
  REQUIRE(out.size() == 1);
  const std::uint64_t flow = flow_in(out[0], "dead-1");
  CHECK(flow > 0);

  REQUIRE(received.wait_for(1));
  const auto job = received.jobs().at(0);
  CHECK(job.flow_id == flow);
  CHECK(job.type == "resize");
  CHECK(job.payload.to_json() == json{{"w", 10}, {"name", "a"}});
  CHECK(job.entity == "orders/o1");

  const auto marked = json::parse(mw_ok(cluster, {"get", "sync", "dead-1"}));
  CHECK(marked["retried"] == true);
  CHECK(marked["retried_as"] == flow);
  CHECK(marked["retried_at"].is_number_integer());
  CHECK(mw_ok(cluster, {"dead", "--json"}).empty());

  check_cli_error(cluster.mw({"retry", "dead-1"}), "replayed already as flow " + std::to_string(flow));
  check_cli_error(cluster.mw({"retry", "nope"}), "no dead job 'nope'");
  check_cli_error(cluster.mw({"retry", "999"}), "no dead job '999'");
  check_cli_error(cluster.mw({"retry", "note"}), "not a dead-job record");
  check_cli_error(cluster.mw({"retry"}), "--type");
  check_cli_error(cluster.mw({"retry", "dead-1", "--type", "resize"}), "--type");
  check_cli_error(cluster.mw({"retry", "dead-1", "--limit", "3"}), "--limit");
  // None of the failures submitted anything.
  pause_for(300ms);
  CHECK(received.jobs().size() == 1);

  // The flow id that `mw submit --wait` printed when the flow died (its
  // second stage's job has another id) names the record too.
  json second_stage = dead_record("dead-7", "resize", 2000, {{"w", 7}});
  second_stage["flow"] = 5;
  second_stage["job"] = 7;
  create(cluster, second_stage);
  const auto by_flow = lines_of(mw_ok(cluster, {"retry", "5"}));
  REQUIRE(by_flow.size() == 1);
  (void)flow_in(by_flow[0], "dead-7");
  REQUIRE(received.wait_for(2));
}

TEST_CASE("mw retry --type T replays every dead job of that type, oldest first") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--page-max", "2"});
  JobLog received;
  InProcessWorker worker(worker_options(cluster.address(), "mail"), received.handler());

  create(cluster, dead_record("m3", "mail", 3000, {{"to", "c"}}));
  create(cluster, dead_record("m1", "mail", 1000, {{"to", "a"}}));
  create(cluster, dead_record("m2", "mail", 2000, {{"to", "b"}}));
  create(cluster, dead_record("r1", "resize", 1500, {{"w", 1}}));

  const auto out = lines_of(mw_ok(cluster, {"retry", "--type", "mail"}));
  REQUIRE(out.size() == 3);
  std::vector<std::uint64_t> flows = {flow_in(out[0], "m1"), flow_in(out[1], "m2"), flow_in(out[2], "m3")};

  REQUIRE(received.wait_for(3));
  std::vector<std::string> to;
  for (const auto& job : received.jobs()) {
    CHECK(std::find(flows.begin(), flows.end(), job.flow_id) != flows.end());
    to.push_back(job.payload.to_json().at("to").get<std::string>());
  }
  std::sort(to.begin(), to.end());
  CHECK(to == std::vector<std::string>{"a", "b", "c"});

  CHECK(mw_ok(cluster, {"dead", "mail", "--json"}).empty());
  CHECK(ids_of(json_lines(mw_ok(cluster, {"dead", "--json"}))) == std::vector<std::string>{"r1"});

  // Nothing left of that type: nothing printed, a note on stderr, success.
  const auto again = cluster.mw({"retry", "--type", "mail"});
  CHECK(again.exit_status == 0);
  CHECK(again.out.empty());
  CHECK(again.err.find("no dead jobs of type 'mail'") != std::string::npos);

  // --limit replays the oldest N only.
  create(cluster, dead_record("r0", "resize", 100, {{"w", 0}}));
  const auto limited = lines_of(mw_ok(cluster, {"retry", "--type", "resize", "--limit", "1"}));
  REQUIRE(limited.size() == 1);
  (void)flow_in(limited[0], "r0");
  CHECK(ids_of(json_lines(mw_ok(cluster, {"dead", "--json"}))) == std::vector<std::string>{"r1"});
}

TEST_CASE("mw submit --delay/--at/--priority/--key/--lease: accepted values reach a worker") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  JobLog received;
  InProcessWorker worker(worker_options(cluster.address(), "echo"), received.handler());

  // Not timed: a delayed job is done within a bound far above its delay.
  CHECK(json::parse(mw_ok(cluster, {"submit", "echo", R"({"n": 1})", "--delay", "1", "--wait", "--timeout", "30"})) ==
        json{{"n", 1}});
  CHECK(json::parse(mw_ok(cluster, {"submit", "echo", R"({"n": 2})", "--delay", "0.25", "--wait", "--timeout", "30"})) ==
        json{{"n", 2}});
  // A time in the past means now.
  CHECK(json::parse(mw_ok(cluster, {"submit", "echo", "3", "--at", "2020-01-01T00:00:00Z", "--wait", "--timeout", "30"})) == 3);
  CHECK(json::parse(mw_ok(cluster, {"submit", "echo", "4", "--at", "@0", "--wait", "--timeout", "30"})) == 4);
  // A negative priority is the option's value, not a payload.
  CHECK(json::parse(mw_ok(cluster, {"submit", "echo", "5", "--priority", "-5", "--key", "k5", "--lease", "30", "--wait",
                                    "--timeout", "30"})) == 5);
  CHECK(json::parse(mw_ok(cluster, {"submit", "echo", "-6", "--priority", "7", "--wait", "--timeout", "30"})) == -6);
  CHECK(received.jobs().size() == 6);
}

TEST_CASE("mw submit: bad option values fail with one line before anything is sent") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();

  check_cli_error(cluster.mw({"submit", "echo", "1", "--delay", "-1"}), "--delay");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--delay", "soon"}), "--delay");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--priority", "5000"}), "--priority");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--priority", "-1001"}), "--priority");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--at", "garbage"}), "--at");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--at", "2026-12-01T10:00:00"}), "zone");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--delay", "1", "--at", "@0"}), "--delay and --at");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--lease", "0"}), "--lease");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--key", std::string(300, 'k')}), "--key");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--max-attempts", "0"}), "--max-attempts must be at least 1");
  check_cli_error(cluster.mw({"submit", "echo", "1", "--entity", ""}), "--entity is empty");  // an unset "$ORDER"
  check_cli_error(cluster.mw({"submit", "echo", "1", "--timeout", "5"}), "give --wait too");
  CHECK(cluster.status().submitted == 0);
}

// These need the broker's support for the options (being written alongside
// the CLI): they fail against a broker that ignores them.
TEST_CASE("mw submit --delay holds a job back; --priority orders waiting jobs; --key submits once") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});

  SUBCASE("a job an hour away is held, not given to the worker") {
    JobLog received;
    InProcessWorker worker(worker_options(cluster.address(), "later"), received.handler());
    REQUIRE(cluster.wait_for_workers("later", 1));
    mw_ok(cluster, {"submit", "later", "1", "--delay", "3600"});
    mw_ok(cluster, {"submit", "later", "2"});
    REQUIRE(received.wait_for(1));
    pause_for(500ms);  // room for a wrong delivery to show
    REQUIRE(received.jobs().size() == 1);
    CHECK(received.jobs()[0].payload.to_json() == 2);
    CHECK(cluster.status().delayed == 1);
  }

  SUBCASE("higher priority first among jobs waiting together") {
    for (const auto& [payload, priority] : std::vector<std::pair<std::string, std::string>>{
             {"\"low\"", "-5"}, {"\"mid\"", "0"}, {"\"high\"", "5"}})
      mw_ok(cluster, {"submit", "ranked", payload, "--priority", priority});
    JobLog received;  // one job at a time: credit 1
    InProcessWorker worker(worker_options(cluster.address(), "ranked"), received.handler());
    REQUIRE(received.wait_for(3));
    std::vector<std::string> order;
    for (const auto& job : received.jobs()) order.push_back(job.payload.to_json().get<std::string>());
    CHECK(order == std::vector<std::string>{"high", "mid", "low"});
  }

  SUBCASE("a second submit with the key of an unfinished flow returns that flow") {
    const auto first = mw_ok(cluster, {"submit", "nobody", "1", "--key", "order-7"});
    const auto second = mw_ok(cluster, {"submit", "nobody", "2", "--key", "order-7"});
    CHECK(second == first);
    CHECK(mw_ok(cluster, {"submit", "nobody", "3", "--key", "order-8"}) != first);
  }
}
