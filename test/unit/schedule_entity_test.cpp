// Unit tests of `mw schedule`'s pure part (bin/mw/schedule_entity.hpp):
// checking the arguments, working out the first run, building the document
// (a replaced schedule keeps the broker's counters) and reading rows back.
// The clock is passed in: no sleeps, no sockets.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>

#include "bad_request.hpp"
#include "mw/error.hpp"
#include "schedule_entity.hpp"

namespace {

using namespace std::chrono_literals;
using mw::cli::check_schedule;
using mw::cli::Schedule;
using mw::cli::ScheduleArgs;
using mw::cli::TimePoint;
using Json = nlohmann::ordered_json;

constexpr std::int64_t kDec1st2026At10 = 1796119200;  // 2026-12-01T10:00:00Z
const TimePoint kNow = TimePoint{std::chrono::seconds{kDec1st2026At10}};

ScheduleArgs args_of(std::string name, std::string type, std::string every) {
  ScheduleArgs a;
  a.name = std::move(name);
  a.type = std::move(type);
  a.every = std::move(every);
  return a;
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a plain schedule: payload null, first run now, not paused") {
  const Schedule s = check_schedule(args_of("tick", "ticker", "0.3"), kNow);
  CHECK(s.name == "tick");
  CHECK(s.type == "ticker");
  CHECK(s.payload.is_null());
  CHECK(s.every == 300ms);
  CHECK(s.next_at == kNow);
  CHECK_FALSE(s.priority);
  CHECK_FALSE(s.max_attempts);
  CHECK_FALSE(s.paused);
  CHECK(mw::cli::schedule_summary(s) == "schedule tick: ticker every 0.3s, next run 2026-12-01T10:00:00.000Z");
}

TEST_CASE("every option reaches the schedule") {
  ScheduleArgs a = args_of("reports.daily:eu-1", "report", "86400");
  a.payload_json = R"({"n": 1, "list": [1, 2]})";
  a.at = "2026-12-02T00:00:00+01:00";
  a.priority = -1000;
  a.max_attempts = 3;
  a.paused = true;
  const Schedule s = check_schedule(a, kNow);
  CHECK(s.payload == Json{{"n", 1}, {"list", {1, 2}}});
  CHECK(s.every == 86'400'000ms);
  CHECK(s.next_at == TimePoint{std::chrono::seconds{kDec1st2026At10 + 13 * 3600}});
  CHECK(s.priority == -1000);
  CHECK(s.max_attempts == 3u);
  CHECK(s.paused);
  CHECK(mw::cli::schedule_summary(s) ==
        "schedule reports.daily:eu-1: report every 86400s, next run 2026-12-01T23:00:00.000Z (paused)");
}

TEST_CASE("a past --at keeps its place on the grid: the first run is its next time not before now") {
  ScheduleArgs a = args_of("nightly", "backup", "86400");
  a.at = "2020-01-01T00:00:00Z";
  CHECK(check_schedule(a, kNow).next_at == TimePoint{std::chrono::seconds{kDec1st2026At10 + 14 * 3600}});
  a.at = "@" + std::to_string(kDec1st2026At10);  // exactly now: now
  CHECK(check_schedule(a, kNow).next_at == kNow);
  a.every = "7";
  a.at = "@" + std::to_string(kDec1st2026At10 - 10);  // 10 s ago, every 7 s: 4 s from now
  CHECK(check_schedule(a, kNow).next_at == kNow + 4s);
}

TEST_CASE("names: 1..128 of letters, digits and _ . : -") {
  CHECK_NOTHROW(mw::cli::check_schedule_name("a"));
  CHECK_NOTHROW(mw::cli::check_schedule_name("Az09_.:-"));
  CHECK_NOTHROW(mw::cli::check_schedule_name(std::string(128, 'n')));
  CHECK(contains(error_of([] { mw::cli::check_schedule_name(""); }), "1 to 128"));
  CHECK(contains(error_of([] { mw::cli::check_schedule_name(std::string(129, 'n')); }), "1 to 128"));
  for (const char* bad : {"a b", "a/b", "ä", "a\n", "tick!", "$schedule"}) {
    CAPTURE(bad);
    CHECK(contains(error_of([&] { mw::cli::check_schedule_name(bad); }), "letters, digits"));
  }
}

TEST_CASE("bad arguments fail with one line naming what is wrong") {
  auto message = [](ScheduleArgs a) { return error_of([&] { (void)check_schedule(a, kNow); }); };
  CHECK(contains(message(args_of("bad name", "t", "1")), "NAME"));
  CHECK(contains(message(args_of("n", "", "1")), "TYPE"));
  CHECK(contains(message(args_of("n", std::string(129, 't'), "1")), "TYPE"));
  CHECK_NOTHROW((void)check_schedule(args_of("n", std::string(128, 't'), "1"), kNow));

  CHECK(contains(message(args_of("n", "t", "")), "--every"));
  for (const char* bad_every : {"0", "0.05", "-1", "315360001", "1e9"}) {
    CAPTURE(bad_every);
    CHECK(contains(message(args_of("n", "t", bad_every)), "--every: "));
  }
  CHECK(contains(message(args_of("n", "t", "0.05")), "give 0.1 to 315360000 seconds"));
  CHECK(contains(message(args_of("n", "t", "soon")), "not a number of seconds"));
  CHECK(check_schedule(args_of("n", "t", "0.1"), kNow).every == 100ms);
  CHECK(check_schedule(args_of("n", "t", "315360000"), kNow).every == 315'360'000'000ms);

  ScheduleArgs a = args_of("n", "t", "1");
  a.payload_json = "{x";
  CHECK(contains(message(a), "not valid JSON"));
  a.payload_json = "";
  CHECK(contains(message(a), "not valid JSON"));

  a = args_of("n", "t", "1");
  a.at = "2026-12-01T10:00:00";
  CHECK(contains(message(a), "zone"));
  a.at = "@" + std::to_string(kDec1st2026At10 + 11LL * 366 * 86400);
  CHECK(contains(message(a), "10 years"));

  a = args_of("n", "t", "1");
  a.priority = 1001;
  CHECK(contains(message(a), "--priority"));
  a.priority = -1001;
  CHECK(contains(message(a), "--priority"));
  a = args_of("n", "t", "1");
  a.max_attempts = 0;
  CHECK(contains(message(a), "--max-attempts"));
  a.max_attempts = 1'000'001;
  CHECK(contains(message(a), "--max-attempts"));
}

TEST_CASE("the document of a new schedule") {
  ScheduleArgs a = args_of("tick", "ticker", "0.3");
  a.payload_json = R"({"n":1})";
  const Json doc = mw::cli::schedule_document(check_schedule(a, kNow), nullptr);
  CHECK(doc == Json{{"id", "tick"},
                    {"type", "ticker"},
                    {"payload", {{"n", 1}}},
                    {"every_ms", 300},
                    {"next_at", kDec1st2026At10 * 1000},
                    {"paused", false}});

  a.priority = 5;
  a.max_attempts = 2;
  const Json with_options = mw::cli::schedule_document(check_schedule(a, kNow), nullptr);
  CHECK(with_options["priority"] == 5);
  CHECK(with_options["max_attempts"] == 2);
}

TEST_CASE("replacing keeps the broker's fields and drops the old settings") {
  const Json old = {{"id", "tick"},      {"type", "old"},        {"payload", 7},      {"every_ms", 1000},
                    {"next_at", 5},      {"priority", 9},        {"paused", true},    {"runs", 12},
                    {"skipped", 3},      {"last_run_at", 4000},  {"last_flow", 77},   {"created_at", 1},
                    {"updated_at", 2},   {"note", "someone's"}};
  const Json doc = mw::cli::schedule_document(check_schedule(args_of("tick", "new", "2"), kNow), old);
  CHECK(doc["type"] == "new");
  CHECK(doc["payload"].is_null());
  CHECK(doc["every_ms"] == 2000);
  CHECK(doc["next_at"] == kDec1st2026At10 * 1000);
  CHECK(doc["paused"] == false);
  CHECK_FALSE(doc.contains("priority"));
  CHECK(doc["runs"] == 12);
  CHECK(doc["skipped"] == 3);
  CHECK(doc["last_run_at"] == 4000);
  CHECK(doc["last_flow"] == 77);
  CHECK_FALSE(doc.contains("note"));
  CHECK_FALSE(doc.contains("created_at"));  // the broker keeps its own
}

TEST_CASE("seconds_text and utc_time_text") {
  CHECK(mw::cli::seconds_text(300ms) == "0.3");
  CHECK(mw::cli::seconds_text(1250ms) == "1.25");
  CHECK(mw::cli::seconds_text(60'000ms) == "60");
  CHECK(mw::cli::seconds_text(100'001ms) == "100.001");
  CHECK(mw::cli::utc_time_text(TimePoint{250ms}) == "1970-01-01T00:00:00.250Z");
}

TEST_CASE("rows for --list: forgiving of documents written by hand") {
  const auto row = mw::cli::schedule_row(Json{{"id", "tick"},   {"type", "ticker"}, {"every_ms", 300},
                                              {"next_at", 1000}, {"runs", 4},        {"skipped", 1},
                                              {"paused", true}});
  CHECK(row.name == "tick");
  CHECK(row.type == "ticker");
  CHECK(row.every == "0.3s");
  CHECK(row.next_run == "1970-01-01T00:00:01.000Z");
  CHECK(row.runs == "4");
  CHECK(row.skipped == "1");
  CHECK(row.paused == "yes");

  const auto odd = mw::cli::schedule_row(Json{{"id", "x"}, {"type", 5}, {"every_ms", "often"}, {"next_at", -5},
                                              {"paused", "yes"}});
  CHECK(odd.type == "-");
  CHECK(odd.every == "-");
  CHECK(odd.next_run == "-5");
  CHECK(odd.runs == "0");
  CHECK(odd.skipped == "0");
  CHECK(odd.paused == "no");
  CHECK(mw::cli::schedule_row(Json::array()).name == "-");
}
