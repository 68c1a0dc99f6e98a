#include "schedule_entity.hpp"

#include <cstdio>

#include "mw/error.hpp"
#include "mw/json_objects.hpp"
#include "mw/protocol.hpp"

namespace mw::cli {
namespace {

using Json = nlohmann::ordered_json;
using std::chrono::milliseconds;

// The broker ignores a schedule asking for more (a typo, not a policy).
constexpr std::int64_t kMaxScheduleAttempts = 1'000'000;
// The broker's own fields: a replaced schedule keeps them.
// 9999-12-31T23:59:59.999Z: later times (or earlier than 1970) show as numbers.
constexpr std::int64_t kLastShownMs = 253'402'300'799'999;
constexpr std::string_view kBrokerFields[] = {"runs", "skipped", "last_run_at", "last_flow"};

[[noreturn]] void bad(const std::string& message) { throw UsageError(message); }

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == ':' || c == '-';
}

// The first run on the grid `at` + k × `every` that is not before `now`.
TimePoint first_run_on_grid(TimePoint at, milliseconds every, TimePoint now) {
  if (at >= now) return at;
  const auto periods = (now - at + every - milliseconds{1}) / every;  // ceil; every > 0
  return at + periods * every;
}

// A forgiving read of an integer field, as text; "-" when absent or not one.
std::string integer_text(const Json& document, std::string_view field) {
  const auto it = document.find(field);
  if (it == document.end() || !it->is_number_integer()) return "-";
  return it->is_number_unsigned() ? std::to_string(it->get<std::uint64_t>()) : std::to_string(it->get<std::int64_t>());
}

}  // namespace

void check_schedule_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxScheduleNameBytes)
    bad("schedule NAME must be 1 to " + std::to_string(kMaxScheduleNameBytes) + " characters");
  for (const char c : name)
    if (!is_name_char(c))
      bad("schedule NAME '" + std::string(name) + "' may hold only letters, digits and _ . : -");
}

Schedule check_schedule(const ScheduleArgs& args, TimePoint now) {
  Schedule s;
  check_schedule_name(args.name);
  s.name = args.name;
  if (auto problem = type_name_problem(args.type); !problem.empty()) bad("TYPE: " + problem);
  s.type = args.type;
  try {
    s.payload = parse_ordered_json(args.payload_json);
  } catch (const nlohmann::json::exception& e) {
    bad("JSON payload is not valid JSON: " + json_error_text(e));
  }
  if (args.every.empty()) bad("--every SECONDS is required: how often the job runs");
  s.every = parse_seconds("--every", args.every, {kMinScheduleEvery, "0.1"});
  s.next_at = now;
  if (args.at) {
    const TimePoint at = parse_time(*args.at);
    (void)delay_until(at, now);  // refuses a first run more than 10 years away
    s.next_at = first_run_on_grid(at, s.every, now);
  }
  if (args.priority) {
    if (*args.priority < -kMaxPriority || *args.priority > kMaxPriority)
      bad("--priority: " + std::to_string(*args.priority) + " is out of range: give -1000 to 1000 (higher runs first)");
    s.priority = static_cast<std::int32_t>(*args.priority);
  }
  if (args.max_attempts) {
    if (*args.max_attempts < 1 || *args.max_attempts > kMaxScheduleAttempts)
      bad("--max-attempts: " + std::to_string(*args.max_attempts) + " is out of range: give 1 to " +
          std::to_string(kMaxScheduleAttempts));
    s.max_attempts = static_cast<std::uint32_t>(*args.max_attempts);
  }
  s.paused = args.paused;
  return s;
}

Json schedule_document(const Schedule& schedule, const Json& existing) {
  Json doc = {{"id", schedule.name},
              {"type", schedule.type},
              {"payload", schedule.payload},
              {"every_ms", schedule.every.count()},
              {"next_at", schedule.next_at.time_since_epoch().count()}};
  if (schedule.priority) doc["priority"] = *schedule.priority;
  if (schedule.max_attempts) doc["max_attempts"] = *schedule.max_attempts;
  doc["paused"] = schedule.paused;
  if (existing.is_object())
    for (const auto field : kBrokerFields)
      if (const auto it = existing.find(field); it != existing.end()) doc[std::string(field)] = *it;
  return doc;
}

std::string schedule_summary(const Schedule& schedule) {
  return "schedule " + schedule.name + ": " + schedule.type + " every " + seconds_text(schedule.every) +
         "s, next run " + utc_time_text(schedule.next_at) + (schedule.paused ? " (paused)" : "");
}

std::string seconds_text(milliseconds duration) {
  const auto ms = duration.count();
  std::string text = std::to_string(ms / 1000);
  if (const auto fraction = ms % 1000; fraction != 0) {
    char digits[8];
    std::snprintf(digits, sizeof digits, ".%03d", static_cast<int>(fraction < 0 ? -fraction : fraction));
    text += digits;
    while (text.back() == '0') text.pop_back();
  }
  return text;
}

std::string utc_time_text(TimePoint at) {
  using namespace std::chrono;
  const sys_days day = floor<days>(at);
  const year_month_day date{day};
  const hh_mm_ss<milliseconds> time{at - day};
  char text[40];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                static_cast<int>(time.seconds().count()), static_cast<int>(time.subseconds().count()));
  return text;
}

ScheduleRow schedule_row(const Json& document) {
  ScheduleRow row{"-", "-", "-", "-", "-", "-", "-"};
  if (!document.is_object()) return row;
  auto string_field = [&](std::string_view field, std::string& out) {
    if (const auto it = document.find(field); it != document.end() && it->is_string()) out = it->get<std::string>();
  };
  string_field("id", row.name);
  string_field("type", row.type);
  if (const auto it = document.find("every_ms"); it != document.end() && it->is_number_integer())
    row.every = seconds_text(milliseconds{it->get<std::int64_t>()}) + "s";
  if (const auto it = document.find("next_at"); it != document.end() && it->is_number_integer()) {
    const auto ms = it->get<std::int64_t>();
    row.next_run = ms >= 0 && ms <= kLastShownMs ? utc_time_text(TimePoint{milliseconds{ms}}) : std::to_string(ms);
  }
  row.runs = integer_text(document, "runs");
  row.skipped = integer_text(document, "skipped");
  if (row.runs == "-") row.runs = "0";  // not run yet
  if (row.skipped == "-") row.skipped = "0";
  const auto paused = document.find("paused");
  row.paused = paused != document.end() && paused->is_boolean() && paused->get<bool>() ? "yes" : "no";
  return row;
}

}  // namespace mw::cli
