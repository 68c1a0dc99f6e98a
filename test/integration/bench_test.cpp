// `mw bench` end to end: the figures a user reads come from flows that
// really went through the broker, with payloads small enough to travel
// inside a BATCH index and large enough to keep frames of their own.
#include <string>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cluster.hpp"

using namespace mwtest;
using nlohmann::json;

namespace {

// The flows `mw bench` ran, timed and warm-up, are all done at the broker.
void check_bench_json(const Finished& run, Cluster& cluster, std::uint64_t jobs, std::uint64_t total_flows) {
  INFO(run.err);
  REQUIRE(run.exit_status == 0);
  const json figures = json::parse(run.out);
  CHECK(figures["jobs"] == jobs);
  CHECK(figures["jobs_per_second"].get<double>() > 0);
  const json& latency = figures["latency_us"];
  CHECK(latency["p50"].get<double>() > 0);
  CHECK(latency["p50"].get<double>() <= latency["p99"].get<double>());
  CHECK(latency["p99"].get<double>() <= latency["max"].get<double>());
  const json status = cluster.status_json();
  CHECK(status["submitted"] == total_flows);
  CHECK(status["done"] == total_flows);
  CHECK(status["dead"] == 0);
}

}  // namespace

TEST_CASE("mw bench runs its flows through the broker and reports them; --serial says when workers idle") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();

  SUBCASE("small payloads, pipelined, two workers per stage") {
    const auto run = cluster.mw({"bench", "--stages", "3", "--workers", "2", "--jobs", "2000", "--warmup", "100",
                                 "--payload", "40", "--json"},
                                120s);
    check_bench_json(run, cluster, 2000, 2100);
    CHECK(run.err.find("--serial") == std::string::npos);  // the note is for --serial only
  }
  SUBCASE("payloads too large to go inside a BATCH index") {
    const auto run = cluster.mw({"bench", "--jobs", "300", "--warmup", "20", "--payload", "3000", "--json"}, 120s);
    check_bench_json(run, cluster, 300, 320);
  }
  SUBCASE("--serial with more than one worker runs, and says only one is busy at a time") {
    const auto run =
        cluster.mw({"bench", "--serial", "--workers", "2", "--jobs", "50", "--warmup", "5", "--json"}, 120s);
    check_bench_json(run, cluster, 50, 55);
    CHECK(json::parse(run.out)["window"] == 1);
    CHECK(run.err.find("one worker of each stage's 2 is busy at a time") != std::string::npos);
  }
}
