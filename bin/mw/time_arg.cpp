#include "time_arg.hpp"

#include <charconv>
#include <cmath>
#include <string>

#include "mw/error.hpp"
#include "mw/protocol.hpp"

namespace mw::cli {
namespace {

using std::chrono::milliseconds;

constexpr const char* kTimeForms =
    "write e.g. 2026-12-01T10:00:00Z, 2026-12-01T12:00:00+02:00 or @UNIXSECONDS";
// Unix seconds beyond this are no time anyone means (year 33658), and would
// overflow milliseconds arithmetic long before int64 does.
constexpr double kMaxUnixSeconds = 1e12;

[[noreturn]] void bad_time(std::string_view text, std::string_view why) {
  throw UsageError("--at: '" + std::string(text) + "' " + std::string(why) + "; " + kTimeForms);
}

// A whole string read as a finite decimal number, or nothing.
bool parse_decimal(std::string_view text, double& out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out, std::chars_format::fixed);
  return ec == std::errc() && ptr == end && std::isfinite(out);
}

// Reads fixed-width fields of an ISO 8601 time left to right.
class TimeReader {
 public:
  explicit TimeReader(std::string_view text) : text_(text) {}

  // Exactly `width` digits.
  bool number(int width, int& out) {
    if (text_.size() - at_ < static_cast<std::size_t>(width)) return false;
    out = 0;
    for (int i = 0; i < width; ++i) {
      const char c = text_[at_ + i];
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    at_ += width;
    return true;
  }

  // A decimal fraction after '.' or ',' as milliseconds (digits past the
  // third are dropped). 0 when there is none.
  bool fraction(milliseconds& out) {
    out = milliseconds{0};
    if (!take('.') && !take(',')) return true;
    int digits = 0, ms = 0;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') {
      if (digits < 3) ms = ms * 10 + (text_[at_] - '0');
      ++digits, ++at_;
    }
    if (digits == 0) return false;
    for (int d = digits; d < 3; ++d) ms *= 10;
    out = milliseconds{ms};
    return true;
  }

  bool take(char c) {
    if (at_ < text_.size() && text_[at_] == c) return ++at_, true;
    return false;
  }
  bool take_any(std::string_view chars) {
    if (at_ < text_.size() && chars.find(text_[at_]) != std::string_view::npos) return ++at_, true;
    return false;
  }
  bool at_end() const { return at_ == text_.size(); }

 private:
  std::string_view text_;
  std::size_t at_ = 0;
};

// How far the zone designator ("Z", "+HH:MM", "+HHMM", "+HH") is ahead of UTC.
std::chrono::minutes zone_offset(TimeReader& in, std::string_view text) {
  if (in.take_any("Zz")) return std::chrono::minutes{0};
  int sign = 0;
  if (in.take('+')) sign = 1;
  else if (in.take('-')) sign = -1;
  else bad_time(text, "has no zone (add Z for UTC, or an offset like +02:00)");
  int hh = 0, mm = 0;
  if (!in.number(2, hh)) bad_time(text, "has a bad zone offset");
  if (!in.at_end()) {
    in.take(':');
    if (!in.number(2, mm)) bad_time(text, "has a bad zone offset");
  }
  if (hh > 23 || mm > 59) bad_time(text, "has a zone offset out of range");
  return sign * (std::chrono::hours{hh} + std::chrono::minutes{mm});
}

TimePoint parse_iso_time(std::string_view text) {
  using namespace std::chrono;
  TimeReader in(text);
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!(in.number(4, y) && in.take('-') && in.number(2, mo) && in.take('-') && in.number(2, d)))
    bad_time(text, "is not a time");
  if (!in.take_any("Tt ")) bad_time(text, "has no time of day after the date");
  if (!(in.number(2, h) && in.take(':') && in.number(2, mi))) bad_time(text, "has a bad time of day");
  milliseconds fraction{0};
  if (in.take(':') && !(in.number(2, s) && in.fraction(fraction))) bad_time(text, "has bad seconds");
  const year_month_day date{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!date.ok()) bad_time(text, "is not a calendar date");
  if (h > 23 || mi > 59 || s > 59) bad_time(text, "has a time of day out of range");
  const minutes offset = zone_offset(in, text);
  if (!in.at_end()) bad_time(text, "has extra text after the zone");
  return TimePoint{sys_days{date}} + hours{h} + minutes{mi} + seconds{s} + fraction - offset;
}

}  // namespace

milliseconds parse_seconds(std::string_view option, std::string_view text, SecondsFloor floor) {
  double seconds = 0;
  if (!parse_decimal(text, seconds))
    throw UsageError(std::string(option) + ": '" + std::string(text) + "' is not a number of seconds (write e.g. 30 or 1.5)");
  const double max_seconds = static_cast<double>(kMaxSubmitDelayMs) / 1000;
  const auto out_of_range = [&] {
    return UsageError(std::string(option) + ": " + std::string(text) + " is out of range: give " +
                      std::string(floor.least_text) + " to " +
                      std::to_string(static_cast<std::uint64_t>(max_seconds)) + " seconds (10 years)" +
                      (floor.hint.empty() ? "" : "; " + std::string(floor.hint)));
  };
  if (seconds < 0 || seconds > max_seconds) throw out_of_range();
  const milliseconds value{static_cast<std::int64_t>(std::ceil(seconds * 1000))};
  if (value < floor.least) throw out_of_range();
  return value;
}

TimePoint parse_time(std::string_view text) {
  if (text.empty()) bad_time(text, "is empty");
  if (text[0] != '@') return parse_iso_time(text);
  // from_chars takes no '+': allow a leading '-' only (a time before 1970).
  double seconds = 0;
  if (!parse_decimal(text.substr(1), seconds)) bad_time(text, "is not @ followed by a number of seconds");
  if (std::abs(seconds) > kMaxUnixSeconds) bad_time(text, "is out of range");
  return TimePoint{milliseconds{static_cast<std::int64_t>(std::llround(seconds * 1000))}};
}

milliseconds delay_until(TimePoint at, TimePoint now) {
  if (at <= now) return milliseconds{0};
  const milliseconds delay = at - now;
  if (static_cast<std::uint64_t>(delay.count()) > kMaxSubmitDelayMs)
    throw UsageError("--at: the time is more than 10 years away");
  return delay;
}

}  // namespace mw::cli
