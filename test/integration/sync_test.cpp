// mw::Sync against a real broker: which entities it picks, what it records,
// stamps and fixes, dead jobs it replays, a broker that is down, and the
// seed's SampleSync example.
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <doctest/doctest.h>

#include "cluster.hpp"
#include "in_process_worker.hpp"
#include "mw/client.hpp"
#include "mw/error.hpp"
#include "mw/sync.hpp"

using namespace mwtest;
using Json = nlohmann::ordered_json;

namespace {

constexpr std::int64_t kInterval = 30000;
// Any fixed instant works: the Sync's clock is injected, so nothing sleeps.
constexpr std::int64_t kNow = 1'800'000'000'000;

std::optional<std::string> n_is_50(const Json& entity) {
  const auto n = entity.value("n", Json());
  if (n == 50) return std::nullopt;
  return "n is " + n.dump() + ", not 50";
}

mw::SyncOptions options_for(const Cluster& cluster) {
  mw::SyncOptions o;
  o.broker = cluster.address();
  o.entity_endpoint = "items";
  o.name = "items-sync";
  o.checks = {n_is_50};
  o.interval = std::chrono::milliseconds(kInterval);
  o.now_ms = [] { return kNow; };
  return o;
}

// Every record of `kind` in the sync endpoint.
std::vector<Json> records(mw::Client& client, const std::string& kind) {
  const auto page = client.call("sync", "find", std::nullopt, nullptr, Json{{"kind", kind}, {"$limit", 100}});
  return page.at("data").get<std::vector<Json>>();
}

void create_items(mw::Client& client) {
  client.call("items", "create", std::nullopt,
              Json::array({{{"id", "a"}, {"n", 50}},                                      // never synced, passes
                           {{"id", "b"}, {"n", 7}},                                       // never synced, fails
                           {{"id", "c"}, {"n", 7}, {"last_sync_at", kNow - 1000}},        // fresh
                           {{"id", "d"}, {"n", 50}, {"last_sync_at", kNow - 2 * kInterval}}}));  // overdue
}

class RepairingSync : public mw::Sync {
 public:
  using Sync::Sync;
  Json fix_entity(const Json& entity) override {
    fixed_ids.push_back(entity.at("id").get<std::string>());
    Json repaired = entity;
    repaired["n"] = 50;
    return repaired;
  }
  std::vector<std::string> fixed_ids;
};

const char* sample_sync_binary() {
  const char* path = std::getenv("MW_SAMPLE_SYNC_BIN");
  if (!path || !*path) throw std::runtime_error("MW_SAMPLE_SYNC_BIN is not set: run through `meson test`");
  return path;
}

}  // namespace

TEST_CASE("sync: overdue entities are checked, failures recorded, last_sync_at stamped") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  mw::Client client({cluster.address()});
  create_items(client);

  SUBCASE("fix_errors off: the failure is recorded, nothing is fixed") {
    mw::Sync sync(options_for(cluster));
    const auto report = sync.run_once();
    CHECK(report.checked == 3);  // a, b, d: c is fresh
    CHECK(report.failed == 1);
    CHECK(report.fixed == 0);
    CHECK(report.replayed == 0);
    CHECK(report.errors.empty());

    const auto recs = records(client, "sync");
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].at("name") == "items-sync");
    CHECK(recs[0].at("entity") == "items/b");
    CHECK(recs[0].at("failed") == Json::array({"n is 7, not 50"}));
    CHECK(recs[0].at("fixed") == false);
    CHECK(recs[0].at("at") == kNow);
    CHECK_FALSE(recs[0].at("id").get<std::string>().empty());  // the broker's id

    for (const char* id : {"a", "b", "d"}) {
      CAPTURE(id);
      CHECK(client.call("items", "get", id).at("last_sync_at") == kNow);
    }
    CHECK(client.call("items", "get", "c").at("last_sync_at") == kNow - 1000);
    CHECK(client.call("items", "get", "b").at("n") == 7);

    // Everything is fresh now; one interval later, everything is overdue.
    CHECK(sync.run_once().checked == 0);
    auto later = options_for(cluster);
    later.now_ms = [] { return kNow + kInterval + 1; };
    const auto again = mw::Sync(later).run_once();
    CHECK(again.checked == 4);
    CHECK(again.failed == 2);  // b and c
    CHECK(records(client, "sync").size() == 3);
  }

  SUBCASE("fix_errors on: fix_entity() is called on the failing entity, its fields written, the record says fixed") {
    auto o = options_for(cluster);
    o.fix_errors = true;
    RepairingSync sync(o);
    const auto report = sync.run_once();
    CHECK(report.checked == 3);
    CHECK(report.failed == 1);
    CHECK(report.fixed == 1);
    CHECK(sync.fixed_ids == std::vector<std::string>{"b"});

    const auto recs = records(client, "sync");
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].at("entity") == "items/b");
    CHECK(recs[0].at("fixed") == true);
    CHECK(recs[0].at("failed").size() == 1);
    const auto b = client.call("items", "get", "b");
    CHECK(b.at("n") == 50);
    CHECK(b.at("last_sync_at") == kNow);
  }

  SUBCASE("fix_errors on with a fix that throws: recorded as not fixed, with why") {
    auto o = options_for(cluster);
    o.fix_errors = true;
    mw::Sync sync(o);
    sync.fix_with([](const Json&) -> Json { throw std::runtime_error("the API is still down"); });
    const auto report = sync.run_once();
    CHECK(report.failed == 1);
    CHECK(report.fixed == 0);
    REQUIRE(report.errors.size() == 1);
    CHECK(report.errors[0].find("the API is still down") != std::string::npos);
    const auto recs = records(client, "sync");
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].at("fixed") == false);
    CHECK(recs[0].at("fix_error") == "the API is still down");
  }

  SUBCASE("a custom find: its entities are checked, plain values recorded by value") {
    mw::Sync sync(options_for(cluster));
    sync.find_with([] { return std::vector<Json>{Json{{"n", 50}}, Json{{"n", 3}}, Json(3)}; });
    const auto report = sync.run_once();
    CHECK(report.checked == 3);
    CHECK(report.failed == 2);
    const auto recs = records(client, "sync");
    REQUIRE(recs.size() == 2);
    CHECK(recs[0].at("value") == Json{{"n", 3}});
    CHECK_FALSE(recs[0].contains("entity"));
    // Nothing from the endpoint was touched.
    CHECK_FALSE(client.call("items", "get", "a").contains("last_sync_at"));
  }
}

TEST_CASE("sync: a dead job whose payload now passes the checks is replayed once") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  mw::Client client({cluster.address()});

  std::mutex mutex;
  std::vector<Json> charged;
  mw::WorkerOptions wo;
  wo.broker = cluster.address();
  wo.types = {"charge"};
  InProcessWorker worker(wo, [&](const mw::Job& job) {
    std::lock_guard lock(mutex);
    charged.push_back(job.payload.to_ordered_json());
    return job.payload;
  });
  REQUIRE(cluster.wait_for_workers("charge", 1));

  auto dead = [&](const std::string& id, const std::string& type, const Json& payload) {
    client.call("sync", "create", std::nullopt,
                Json{{"id", id}, {"kind", "dead"}, {"type", type}, {"flow", 1}, {"job", 1}, {"payload", payload},
                     {"error", "the API is down"}, {"attempts", 5}, {"died_at", kNow - 5000}, {"retried", false}});
  };
  dead("dead-1", "charge", {{"n", 50}});  // passes now: replayed
  dead("dead-2", "charge", {{"n", 7}});   // still fails: left alone
  dead("dead-3", "refund", {{"n", 50}});  // not a listed type: left alone

  auto o = options_for(cluster);
  o.replay_types = {"charge"};
  mw::Sync sync(o);
  sync.find_with([] { return std::vector<Json>{}; });

  const auto first = sync.run_once();
  CHECK(first.replayed == 1);
  CHECK(first.checked == 0);
  CHECK(first.errors.empty());
  REQUIRE(wait_until(
      [&] {
        std::lock_guard lock(mutex);
        return !charged.empty();
      },
      10s));

  const auto replayed = client.call("sync", "get", "dead-1");
  CHECK(replayed.at("retried") == true);
  CHECK(replayed.at("retried_as").get<std::uint64_t>() > 0);
  CHECK(client.call("sync", "get", "dead-2").at("retried") == false);
  CHECK(client.call("sync", "get", "dead-3").at("retried") == false);

  CHECK(sync.run_once().replayed == 0);  // once only
  pause_for(300ms);                      // a second delivery would have arrived by now
  std::lock_guard lock(mutex);
  REQUIRE(charged.size() == 1);
  CHECK(charged[0] == Json{{"n", 50}});
  CHECK(records(client, "sync").empty());  // replaying writes no sync record
}

TEST_CASE("sync: the seed's case end to end: a job that died while the API was down is replayed once it is back") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  mw::Client client({cluster.address()});

  std::atomic<bool> api_up{false};
  std::atomic<int> charged{0};
  mw::WorkerOptions wo;
  wo.broker = cluster.address();
  wo.types = {"charge"};
  InProcessWorker worker(wo, [&](const mw::Job& job) {
    if (!api_up.load()) throw mw::JobError("the API is down", /*retryable=*/false);
    ++charged;
    return job.payload;
  });
  REQUIRE(cluster.wait_for_workers("charge", 1));

  const auto flow = client.submit("charge", mw::Payload::from_json(Json{{"n", 50}}));
  std::vector<mw::DeadJob> dead;
  REQUIRE(wait_until(
      [&] {
        dead = mw::find_dead_jobs(client, "sync", "charge", 10);
        return !dead.empty();
      },
      10s, 50ms));
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].flow_id == flow);

  auto o = options_for(cluster);
  o.replay_types = {"charge"};
  o.checks.push_back([&](const Json&) -> std::optional<std::string> {
    if (api_up.load()) return std::nullopt;
    return "the API is down";
  });
  mw::Sync sync(o);
  sync.find_with([] { return std::vector<Json>{}; });

  CHECK(sync.run_once().replayed == 0);  // still down: left dead
  api_up = true;
  CHECK(sync.run_once().replayed == 1);
  REQUIRE(wait_until([&] { return charged.load() == 1; }, 10s));
  const auto record = client.call("sync", "get", dead[0].id);
  CHECK(record.at("retried") == true);
  CHECK(sync.run_once().replayed == 0);
  CHECK(mw::find_dead_jobs(client, "sync", "charge", 10).empty());
}

TEST_CASE("sync: a broker that is down fails the run, not the program; the next run finds it back") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  const std::string address = cluster.address();
  cluster.broker().stop();

  auto o = options_for(cluster);
  o.timeout = 1s;  // short, but room for a slow machine once the broker is back

  SUBCASE("run_once throws Unavailable; after a restart on the same port it works") {
    mw::Sync sync(o);
    try {
      (void)sync.run_once();
      FAIL("run_once did not throw with the broker down");
    } catch (const mw::Error& e) {
      CHECK(e.code() == mw::ErrorCode::Unavailable);
    }
    cluster.start_broker({}, address);
    mw::Client client({cluster.address()});
    create_items(client);
    const auto report = sync.run_once();
    CHECK(report.checked == 3);
    CHECK(report.failed == 1);
    CHECK(records(client, "sync").size() == 1);
  }

  SUBCASE("run() logs each failed run, tries again every interval and stops when asked") {
    class CountingSync : public mw::Sync {
     public:
      using Sync::Sync;
      std::vector<Json> find_entities_to_sync() override {
        ++attempts;
        return Sync::find_entities_to_sync();
      }
      std::atomic<int> attempts{0};
    };
    o.interval = 100ms;
    CountingSync sync(o);
    mw::StopSignal stop;
    {
      std::jthread runner([&] { sync.run(stop); });
      CHECK(wait_until([&] { return sync.attempts.load() >= 3; }, 10s));
      stop.notify();
    }  // joined: run() returned
    CHECK(sync.attempts.load() >= 3);
  }
}

TEST_CASE("sync: examples/sample_sync --once, the seed's SampleSync") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();

  const auto r = run_to_exit("sample_sync", {sample_sync_binary(), "--broker", cluster.address(), "--once"},
                             cluster.dir(), 20s);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_status == 0);
  for (const char* n : {"10", "20", "30", "40"})
    CHECK(r.out.find(std::string("The number ") + n + " value isn't 50") != std::string::npos);
  CHECK(r.out.find("checked 4, failed 4, fixed 4, replayed 0") != std::string::npos);

  mw::Client client({cluster.address()});
  const auto recs = records(client, "sync");
  REQUIRE(recs.size() == 4);
  std::vector<int> values;
  for (const auto& rec : recs) {
    CHECK(rec.at("name") == "data");
    CHECK(rec.at("fixed") == true);
    values.push_back(rec.at("value").get<int>());
  }
  std::sort(values.begin(), values.end());
  CHECK(values == std::vector<int>{10, 20, 30, 40});

  SUBCASE("with no broker there, it says so and exits 1") {
    cluster.broker().stop();
    const auto down = run_to_exit("sample_sync-down", {sample_sync_binary(), "--broker", cluster.address(), "--once"},
                                  cluster.dir(), 20s);
    CHECK(down.exit_status == 1);
    CHECK(down.err.find("sample_sync: ") != std::string::npos);
  }
}

TEST_CASE("sync: SIGTERM ends a pass that waits for a broker that is not there at once, looping or --once") {
  // A pass asks the broker with a 5 s timeout; the stop used to wait it out.
  Cluster cluster;
  cluster.start_broker();
  const std::string address = cluster.address();
  cluster.broker().stop();  // nobody answers there now
  for (const bool once : {false, true}) {
    CAPTURE(once);
    std::vector<std::string> argv{sample_sync_binary(), "--broker", address};
    if (once) argv.push_back("--once");
    Process sync(once ? "sample_sync-once" : "sample_sync-loop", argv, cluster.dir());
    REQUIRE(sync.wait_for_stderr_line("failed 1 check(s)", 10s).has_value());  // in its pass: the checks ran
    mwtest::pause_for(200ms);  // and it waits for the broker's answer to its first record
    const auto asked = std::chrono::steady_clock::now();
    sync.signal(SIGTERM);
    const auto status = sync.wait_exit(10s);
    REQUIRE(status.has_value());
    CHECK(std::chrono::steady_clock::now() - asked < 2s);
    CHECK(*status == (once ? 1 : 0));  // --once did not finish its pass
  }
}

TEST_CASE("sync: an address no broker can have is refused before any pass, with exit 2") {
  Cluster cluster;
  for (const char* address : {"--broker=tcp://*:5555", "--broker=tcp://127.0.0.1:99999"}) {
    CAPTURE(address);
    const auto r = run_to_exit("sample-sync", {sample_sync_binary(), "--once", address}, cluster.dir(), 20s);
    CHECK(r.exit_status == 2);
    CHECK(r.err.find("cannot connect to broker") != std::string::npos);
    CHECK(r.out.empty());  // not a pass that recorded every entity as failed
  }
}
