#include "mw/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "mw/error.hpp"

namespace mw {
namespace {

std::atomic<LogLevel> g_threshold{LogLevel::info};

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info ";
    case LogLevel::warn: return "warn ";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off  ";
  }
  return "?    ";
}

bool has_controls(std::string_view message) {
  for (const char ch : message) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 && c != '\t') return true;
  }
  return false;
}

}  // namespace

std::string escaped_controls(std::string_view message) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(message.size() + 8);
  for (const char ch : message) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 || c == '\t') out.push_back(ch);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

void set_log_level(LogLevel level) noexcept { g_threshold.store(level, std::memory_order_relaxed); }

bool log_enabled(LogLevel level) noexcept {
  return level != LogLevel::off && level >= g_threshold.load(std::memory_order_relaxed);
}

LogLevel parse_log_level(std::string_view text) {
  if (text == "debug") return LogLevel::debug;
  if (text == "info") return LogLevel::info;
  if (text == "warn" || text == "warning") return LogLevel::warn;
  if (text == "error") return LogLevel::error;
  if (text == "off") return LogLevel::off;
  throw Error("unknown log level '" + std::string(text) + "': use debug, info, warn, error or off",
              ErrorCode::BadRequest);
}

std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    if (text[i] == '\n' || text[i] == '\r') {
      if (i + 1 < text.size()) out += " | ";
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::string shortened(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;  // not inside a character
  return std::string(text.substr(0, cut)) + "…";
}

void log(LogLevel level, std::string_view component, std::string_view message) {
  if (!log_enabled(level)) return;
  std::string escaped;
  if (has_controls(message)) {
    escaped = escaped_controls(message);
    message = escaped;
  }
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  // One fprintf per line keeps lines from different threads whole.
  std::fprintf(stderr, "%s.%03dZ %.*s %.*s: %.*s\n", stamp, static_cast<int>(ms % 1000),
               static_cast<int>(level_name(level).size()), level_name(level).data(),
               static_cast<int>(component.size()), component.data(), static_cast<int>(message.size()),
               message.data());
}

std::string sanitized_sample(std::string_view bytes, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  const std::size_t n = bytes.size() < max_bytes ? bytes.size() : max_bytes;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (n < bytes.size()) out += "…(" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

bool LogLimiter::allow(std::int64_t now_ms, std::uint64_t& suppressed) noexcept {
  if (now_ms - window_start_ms_ >= window_ms_) {
    window_start_ms_ = now_ms;
    used_ = 0;
  }
  if (used_ < burst_) {
    ++used_;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }
  ++suppressed_;
  return false;
}

}  // namespace mw
