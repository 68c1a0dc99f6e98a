// mw/log.hpp — one-line log messages on stderr, with a level and a limiter.
//
// Lines look like `2026-11-28T10:00:00.123Z warn  broker: message`.
// Thread safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mw {

enum class LogLevel { debug, info, warn, error, off };

// Process-wide threshold; messages below it are skipped. Default: info.
void set_log_level(LogLevel level) noexcept;
bool log_enabled(LogLevel level) noexcept;

// Parses "debug", "info", "warn", "error" or "off". Throws mw::Error naming
// the accepted values otherwise.
LogLevel parse_log_level(std::string_view text);

// Writes one line: line breaks and other control characters in `message`
// (an error text a worker sent, say) are written as \n, \r or \xNN, so
// that every line of the log starts with its time.
void log(LogLevel level, std::string_view component, std::string_view message);

// `text` with its bytes below 0x20 other than tab written as \n, \r or
// \xNN: text from elsewhere (a child's stderr, say) that may hold any bytes.
// Other bytes (DEL, UTF-8) are left as they are.
std::string escaped_controls(std::string_view text);

// `text` on one line: each line break (\n, \r\n) becomes " | ". For
// messages shown to people that may hold several lines of someone else's.
std::string one_line(std::string_view text);

// `text` cut to at most `max_bytes` (at a UTF-8 character boundary) and
// ended with "…" when it was longer; as it is otherwise.
std::string shortened(std::string_view text, std::size_t max_bytes);

// Returns a printable sample of untrusted bytes: at most `max_bytes`, with
// anything outside printable ASCII written as \xNN, and "…(N bytes)" when cut.
std::string sanitized_sample(std::string_view bytes, std::size_t max_bytes = 32);

// Lets through at most `burst` events per window; counts what it holds back
// so the next line that passes can say how many were suppressed.
class LogLimiter {
 public:
  LogLimiter(std::uint32_t burst, std::int64_t window_ms) : burst_(burst), window_ms_(window_ms) {}

  // Returns true when the caller may log now. `suppressed` receives how many
  // events were dropped since the last one let through.
  [[nodiscard]] bool allow(std::int64_t now_ms, std::uint64_t& suppressed) noexcept;

 private:
  std::uint32_t burst_;
  std::int64_t window_ms_;
  std::int64_t window_start_ms_ = 0;
  std::uint32_t used_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace mw
