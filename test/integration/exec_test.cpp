// mw-exec: any command as a worker. Its stdout is the result; a non-zero
// exit fails the job with stderr's last lines; 65 and non-JSON are final.
#include <doctest/doctest.h>

#include "cluster.hpp"

using namespace mwtest;

namespace {

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("mw-exec: stdout is the result; failures are retried, reported and buried") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--retry-base-ms", "20", "--max-attempts", "3"});

  SUBCASE("tr a-z A-Z transforms the payload's JSON") {
    cluster.start_exec("up", {}, {"tr", "a-z", "A-Z"});
    const auto r = cluster.mw({"submit", "up", R"({"msg":"hello","list":["a","b"]})", "--wait", "--timeout", "20"});
    REQUIRE(r.exit_status == 0);
    CHECK(nlohmann::json::parse(r.out) == nlohmann::json{{"MSG", "HELLO"}, {"LIST", {"A", "B"}}});
  }

  SUBCASE("exit 1: retried up to --max-attempts, then dead with the last stderr lines") {
    cluster.start_exec("fails", {}, {"/bin/sh", "-c",
                                     "cat >/dev/null; echo 'some noise' >&2; "
                                     "echo \"disk on fire (attempt $MW_ATTEMPT)\" >&2; exit 1"});
    const auto r = cluster.mw({"submit", "fails", "{}", "--wait", "--timeout", "20"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "disk on fire (attempt 3)"));
    CHECK(contains(r.err, "after 3 attempt(s)"));
    auto s = cluster.status();
    CHECK(type_stats(s, "fails").value().failed == 3);
    CHECK(type_stats(s, "fails").value().dead == 1);
    CHECK(s.retried == 2);

    // The submitter's --max-attempts wins over the broker's default.
    const auto r2 = cluster.mw({"submit", "fails", "{}", "--wait", "--timeout", "20", "--max-attempts", "2"});
    CHECK(r2.exit_status == 1);
    CHECK(contains(r2.err, "disk on fire (attempt 2)"));
    CHECK(contains(r2.err, "after 2 attempt(s)"));
  }

  SUBCASE("exit 65 (EX_DATAERR): dead after one attempt") {
    cluster.start_exec("baddata", {}, {"/bin/sh", "-c", "cat >/dev/null; echo 'record 7 is corrupt' >&2; exit 65"});
    const auto r = cluster.mw({"submit", "baddata", "{}", "--wait", "--timeout", "20"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "record 7 is corrupt"));
    CHECK(contains(r.err, "after 1 attempt(s)"));
    const auto s = cluster.status();
    CHECK(type_stats(s, "baddata").value().failed == 1);
    CHECK(s.retried == 0);
    CHECK(s.dead == 1);
  }

  SUBCASE("stdout that is not JSON: dead after one attempt") {
    cluster.start_exec("notjson", {}, {"/bin/sh", "-c", "cat >/dev/null; echo 'this is not json'"});
    const auto r = cluster.mw({"submit", "notjson", "{}", "--wait", "--timeout", "20"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "not JSON"));
    CHECK(contains(r.err, "after 1 attempt(s)"));
    const auto s = cluster.status();
    CHECK(s.retried == 0);
    CHECK(s.dead == 1);
  }
}
