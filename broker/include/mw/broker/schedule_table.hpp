// mw/broker/schedule_table.hpp — periodic jobs, as the broker runs them.
//
// A schedule is an entity of the schedules endpoint (default "schedules";
// `mw schedule` writes them), its id the schedule's name:
//
//   {"id": "nightly", "type": "report", "payload": {...}, "every_ms": 86400000,
//    "next_at": <wall ms>, "priority": 0, "max_attempts": 5, "paused": false,
//    "runs": 12, "skipped": 0, "last_run_at": <ms>, "last_flow": <id>}
//
// The table holds the valid ones in memory; the broker reloads it after any
// write to the endpoint, asks it which are due, and writes each run back
// (runs, next_at …) in the same transaction as the job it submits, so a
// restart neither loses nor repeats a committed run. Missed runs (the broker
// was down) are not made up: one run, then the next on the interval.
//
// Thread safety: none; the broker thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mw/broker/query.hpp"

namespace mw::broker {

inline constexpr std::int64_t kMinScheduleEveryMs = 100;

struct Schedule {
  std::string name;
  std::string type;
  std::string payload;  // msgpack of the document's "payload"
  std::int64_t every_ms = 0;
  std::int64_t next_at = 0;  // wall clock ms
  std::int32_t priority = 0;
  std::uint32_t max_attempts = 0;  // 0: the type's default
  bool paused = false;
  std::uint64_t runs = 0;
  std::uint64_t skipped = 0;

  // Reads a stored document; nullopt (and `why`) when it is not a valid schedule.
  static std::optional<Schedule> from_document(const Json& doc, std::string& why);
};

class ScheduleTable {
 public:
  // Replaces the table with the valid schedules among `docs`. Returns one
  // line per invalid document, for the log.
  std::vector<std::string> load(const std::vector<Json>& docs);

  // The schedules due at `wall_now` (not paused, next_at passed), each with
  // next_at already advanced past `wall_now`. Call run by run.
  std::vector<Schedule*> due(std::int64_t wall_now);

  // The earliest next_at of an active schedule; nullopt when none.
  std::optional<std::int64_t> next_due() const;

  std::size_t size() const noexcept { return by_name_.size(); }

 private:
  std::map<std::string, Schedule> by_name_;
};

}  // namespace mw::broker
