// Unit tests of the CLI's time and duration arguments (bin/mw/time_arg.hpp):
// the forms `mw submit --delay/--lease/--at` accept, and the ones they refuse
// with a message naming the option. The clock is passed in: no sleeps.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>

#include "bad_request.hpp"
#include "mw/error.hpp"
#include "time_arg.hpp"

namespace {

using namespace std::chrono_literals;
using mw::cli::delay_until;
using mw::cli::parse_seconds;
using mw::cli::parse_time;
using mw::cli::TimePoint;

constexpr std::int64_t kDec1st2026At10 = 1796119200;  // 2026-12-01T10:00:00Z

TimePoint unix_seconds(std::int64_t s) { return TimePoint{std::chrono::seconds{s}}; }

TEST_CASE("parse_seconds takes whole and decimal seconds, rounding up to milliseconds") {
  CHECK(parse_seconds("--delay", "0") == 0ms);
  CHECK(parse_seconds("--delay", "90") == 90'000ms);
  CHECK(parse_seconds("--delay", "1.5") == 1500ms);
  CHECK(parse_seconds("--delay", ".25") == 250ms);
  CHECK(parse_seconds("--delay", "0.0001") == 1ms);  // never rounds a real delay to none
  CHECK(parse_seconds("--delay", "315360000") == 315'360'000'000ms);  // 10 years
}

TEST_CASE("parse_seconds refuses what is not 0..10 years of seconds, naming the option") {
  for (const char* bad : {"", "abc", "1s", "1.5.2", " 1", "1 ", "nan", "inf", "1e3", "0x10", "+1"}) {
    CAPTURE(bad);
    const auto message = error_of([&] { (void)parse_seconds("--lease", bad); });
    CHECK(message.find("--lease") != std::string::npos);
    CHECK(message.find("not a number of seconds") != std::string::npos);
  }
  for (const char* out_of_range : {"-1", "-0.5", "315360000.5", "99999999999999999999"}) {
    CAPTURE(out_of_range);
    const auto message = error_of([&] { (void)parse_seconds("--delay", out_of_range); });
    CHECK(message.find("--delay") != std::string::npos);
    CHECK(message.find("out of range") != std::string::npos);
  }
}

TEST_CASE("parse_time reads ISO 8601 with a zone") {
  const TimePoint expected = unix_seconds(kDec1st2026At10);
  CHECK(parse_time("2026-12-01T10:00:00Z") == expected);
  CHECK(parse_time("2026-12-01t10:00:00z") == expected);
  CHECK(parse_time("2026-12-01 10:00:00Z") == expected);
  CHECK(parse_time("2026-12-01T10:00Z") == expected);  // seconds left out
  CHECK(parse_time("2026-12-01T10:00:00.250Z") == expected + 250ms);
  CHECK(parse_time("2026-12-01T10:00:00,5Z") == expected + 500ms);
  CHECK(parse_time("2026-12-01T10:00:00.123456789Z") == expected + 123ms);  // past milliseconds: dropped
  CHECK(parse_time("2026-12-01T12:00:00+02:00") == expected);
  CHECK(parse_time("2026-12-01T12:30:00+0230") == expected);
  CHECK(parse_time("2026-12-01T07:00:00-03") == expected);
  CHECK(parse_time("2026-12-01T00:30:00-09:30") == expected);
  CHECK(parse_time("2024-02-29T23:59:59Z") == unix_seconds(1709251199));  // a leap day
  CHECK(parse_time("1970-01-01T00:00:00Z") == unix_seconds(0));
}

TEST_CASE("parse_time reads @UNIXSECONDS") {
  CHECK(parse_time("@1796119200") == unix_seconds(kDec1st2026At10));
  CHECK(parse_time("@1796119200.5") == unix_seconds(kDec1st2026At10) + 500ms);
  CHECK(parse_time("@0") == unix_seconds(0));
  CHECK(parse_time("@-10") == unix_seconds(-10));
}

TEST_CASE("parse_time refuses bad times with a message saying what to write") {
  for (const char* bad : {"", "garbage", "@", "@abc", "@1e9", "@ 5", "@1e13", "@99999999999999",
                          "2026-12-01",                 // no time of day
                          "2026-12-01T10:00:00",        // no zone: the local zone would be a guess
                          "2026-12-01T10:00:00 Z", "2026-12-01T10:00:00Zjunk", "2026-12-01T10:00:00+2",
                          "2026-12-01T10:00:00+02:0", "2026-12-01T10:00:00+24:00", "2026-12-01T10:00:00.Z",
                          "2026-13-01T10:00:00Z", "2026-02-30T10:00:00Z", "2025-02-29T10:00:00Z",
                          "2026-12-01T24:00:00Z", "2026-12-01T10:60:00Z", "2026-12-01T10:00:60Z",
                          "26-12-01T10:00:00Z", "2026-1-01T10:00:00Z", "2026/12/01T10:00:00Z", "now"}) {
    CAPTURE(bad);
    const auto message = error_of([&] { (void)parse_time(bad); });
    CHECK(message.rfind("--at: '", 0) == 0);
    CHECK(message.find("@UNIXSECONDS") != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("delay_until: 0 for the past, the difference for the future, refused beyond 10 years") {
  const TimePoint now = unix_seconds(kDec1st2026At10) + 123ms;
  CHECK(delay_until(unix_seconds(0), now) == 0ms);
  CHECK(delay_until(now, now) == 0ms);
  CHECK(delay_until(now - 1ms, now) == 0ms);
  CHECK(delay_until(now + 1500ms, now) == 1500ms);
  CHECK(delay_until(now + std::chrono::hours{24 * 365 * 10}, now) == std::chrono::hours{24 * 365 * 10});
  const auto message = error_of([&] { (void)delay_until(now + std::chrono::hours{24 * 365 * 11}, now); });
  CHECK(message.find("--at") != std::string::npos);
  CHECK(message.find("10 years") != std::string::npos);
}

}  // namespace
