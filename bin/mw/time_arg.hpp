// time_arg.hpp — the time and duration arguments of `mw submit`
// (--delay, --lease, --at), parsed apart from the command so that tests can
// feed them bad input and a fixed clock.
//
// Every function throws mw::Error(BadRequest) with one line naming the
// option, the bad text and what to write instead.
#pragma once

#include <chrono>
#include <string_view>

namespace mw::cli {

using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

// The smallest value a seconds option takes, and how its range message
// says it ("0.1" gives "give 0.1 to 315360000 seconds (10 years)"). `hint`
// ends the message, when there is one.
struct SecondsFloor {
  std::chrono::milliseconds least{0};
  std::string_view least_text = "0";
  std::string_view hint = {};
};

// A number of seconds, decimals allowed ("90", "1.5", "0.25"), as whole
// milliseconds rounded up (a tiny positive delay is never 0). Accepts
// `floor` (0 unless given) .. 10 years (the broker's limit). `option` names
// the flag in messages.
std::chrono::milliseconds parse_seconds(std::string_view option, std::string_view text, SecondsFloor floor = {});

// A moment: ISO 8601 with a date, a time and a zone —
// "2026-12-01T10:00:00Z", "2026-12-01T10:00:00.250Z",
// "2026-12-01T12:00:00+02:00" (also "+0200", "+02", a space for the T, and
// seconds left out) — or "@UNIXSECONDS" with decimals allowed ("@1796119200").
// A time without a zone is refused: the local zone would be a guess.
TimePoint parse_time(std::string_view text);

// How long from `now` until `at`: 0 when `at` has passed. Throws when it is
// more than 10 years away (the broker's limit on a delay).
std::chrono::milliseconds delay_until(TimePoint at, TimePoint now);

}  // namespace mw::cli
