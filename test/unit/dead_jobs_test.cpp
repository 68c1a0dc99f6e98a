// Unit tests of mw::DeadJob::from_record (mw/dead_jobs.hpp): reading the
// records the broker writes, and refusing what is not one. Replaying and
// finding need a broker: test/integration/dead_jobs_cli_test.cpp.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "mw/dead_jobs.hpp"
#include "mw/error.hpp"

namespace {

using Json = nlohmann::ordered_json;

TEST_CASE("from_record reads every field the broker writes") {
  const auto record = Json::parse(R"({"id": "dead-18", "kind": "dead", "type": "resize", "flow": 17, "job": 18,
    "payload": {"w": 10, "tags": ["a"]}, "error": "out of memory", "attempts": 5, "entity": "orders/o1",
    "died_at": 1796119200000, "retried": true, "retried_as": 40, "retried_at": 1796119300000,
    "created_at": 1796119200000, "updated_at": 1796119300000})");
  const auto dead = mw::DeadJob::from_record(record);
  CHECK(dead.id == "dead-18");
  CHECK(dead.type == "resize");
  CHECK(dead.flow_id == 17);
  CHECK(dead.job_id == 18);
  CHECK(dead.payload == record["payload"]);
  CHECK(dead.error == "out of memory");
  CHECK(dead.attempts == 5);
  CHECK(dead.entity == "orders/o1");
  CHECK(dead.died_at_ms == 1796119200000);
  CHECK(dead.retried);
  CHECK(dead.retried_as == 40);
}

TEST_CASE("from_record: optional fields may be missing or null") {
  const auto dead = mw::DeadJob::from_record(Json::parse(R"({"id": "d", "kind": "dead", "type": "t", "entity": null})"));
  CHECK(dead.payload.is_null());
  CHECK(dead.entity.empty());
  CHECK(dead.attempts == 0);
  CHECK_FALSE(dead.retried);
}

TEST_CASE("from_record refuses what is not a dead-job record with BadRequest") {
  for (const char* bad : {R"([1])", R"("dead")", R"({"kind": "dead", "type": "t"})",
                          R"({"id": "d", "type": "t"})", R"({"id": "d", "kind": "user", "type": "t"})",
                          R"({"id": "d", "kind": "dead"})", R"({"id": "d", "kind": "dead", "type": ""})",
                          R"({"id": "d", "kind": "dead", "type": 5})", R"({"id": 5, "kind": "dead", "type": "t"})",
                          R"({"id": "d", "kind": "dead", "type": "t", "attempts": "5"})",
                          R"({"id": "d", "kind": "dead", "type": "t", "flow": -1})",
                          R"({"id": "d", "kind": "dead", "type": "t", "retried": "no"})"}) {
    CAPTURE(bad);
    try {
      (void)mw::DeadJob::from_record(Json::parse(bad));
      FAIL("accepted");
    } catch (const mw::Error& e) {
      CHECK(e.code() == mw::ErrorCode::BadRequest);
      CHECK(std::string(e.what()).find("not a dead-job record") != std::string::npos);
    }
  }
}

}  // namespace
