// schedule_entity.hpp — a periodic job as `mw schedule` writes it: an
// ordinary entity of the schedules endpoint whose id is the schedule's name,
//
//   {"id": NAME, "type": TYPE, "payload": JSON, "every_ms": N, "next_at": MS,
//    "priority": N, "max_attempts": N, "paused": BOOL,
//    "runs": N, "skipped": N, "last_run_at": MS, "last_flow": ID}   <- the broker's
//
// The broker submits a job of `type` with `payload` once `next_at` has
// passed and then moves `next_at` on by `every_ms`.
//
// Kept apart from the command so that tests can check the arguments and
// build documents with a fixed clock. Every check throws mw::Error
// (BadRequest) with one line naming what is wrong and what to give instead.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "time_arg.hpp"

namespace mw::cli {

inline constexpr std::string_view kDefaultScheduleEndpoint = "schedules";
inline constexpr std::size_t kMaxScheduleNameBytes = 128;
// The broker polls schedules: a shorter period would be a busy loop.
inline constexpr std::chrono::milliseconds kMinScheduleEvery{100};

// What `mw schedule NAME TYPE [JSON] --every S …` was given, unchecked.
struct ScheduleArgs {
  std::string name;
  std::string type;
  std::string payload_json = "null";  // the JSON text itself ("-" is read by the command)
  std::string every;                  // seconds, decimals allowed
  std::optional<std::string> at;      // a time as `mw submit --at` takes it
  std::optional<std::int64_t> priority;
  std::optional<std::int64_t> max_attempts;
  bool paused = false;
};

// A checked schedule, ready to become a document.
struct Schedule {
  std::string name;
  std::string type;
  nlohmann::ordered_json payload;
  std::chrono::milliseconds every{0};
  TimePoint next_at;
  std::optional<std::int32_t> priority;
  std::optional<std::uint32_t> max_attempts;
  bool paused = false;
};

// Throws unless `name` is 1..128 of A-Za-z0-9 _ . : -  (an entity id that
// reads the same in a shell, a URL and a log line).
void check_schedule_name(std::string_view name);

// Checks every field and works out the first run: `at` when given (a time
// already past means the first time of the grid at + k × every that is not
// before `now`, so "--at 2020-01-01T00:00:00Z --every 86400" is "daily at
// midnight UTC" and never a burst of catch-up runs), else `now`.
Schedule check_schedule(const ScheduleArgs& args, TimePoint now);

// The document to write for `schedule`. `existing` is the stored document
// when the name is taken (null when it is new): the broker's own fields
// (runs, skipped, last_run_at, last_flow) are carried over so that
// replacing a schedule keeps its history and the broker still sees the
// flow of the last run (it skips a run while that one is unfinished).
nlohmann::ordered_json schedule_document(const Schedule& schedule, const nlohmann::ordered_json& existing);

// "schedule NAME: TYPE every Xs, next run <UTC time>" — what creating prints.
std::string schedule_summary(const Schedule& schedule);

// "0.3", "60", "1.25": milliseconds as seconds, without trailing zeros.
std::string seconds_text(std::chrono::milliseconds duration);

// "2026-12-01T10:00:00.250Z".
std::string utc_time_text(TimePoint at);

// One row of `mw schedule --list`, read from a stored document. Forgiving
// (the endpoint is open to anyone with `mw create`): a field that is
// missing or of the wrong type shows as "-", except runs and skipped, which
// the broker writes only once they happen: 0 until then.
struct ScheduleRow {
  std::string name, type, every, next_run, runs, skipped, paused;
};
ScheduleRow schedule_row(const nlohmann::ordered_json& document);

}  // namespace mw::cli
