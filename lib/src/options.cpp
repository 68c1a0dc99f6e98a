#include "mw/options.hpp"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <system_error>

#include "mw/error.hpp"
#include "mw/protocol.hpp"

namespace mw {

std::string default_broker_address() {
  const char* env = std::getenv(std::string(kBrokerEnvVar).c_str());
  if (env && *env) return env;
  return std::string(kDefaultBrokerAddress);
}

namespace {

// "tcp://host:port" → "host"; empty for other transports.
std::string_view tcp_host(std::string_view address) {
  constexpr std::string_view scheme = "tcp://";
  if (address.substr(0, scheme.size()) != scheme) return {};
  address.remove_prefix(scheme.size());
  const auto colon = address.rfind(':');
  return colon == std::string_view::npos ? address : address.substr(0, colon);
}

// The port of a TCP address as a number, or nullopt when it is none from 0
// to 65535 (ZeroMQ reads "99999" as 34463, port 99999 modulo 65536).
std::optional<unsigned> tcp_port(std::string_view address) {
  const auto colon = address.rfind(':');
  const std::string_view port = colon == std::string_view::npos || colon < 6 ? "" : address.substr(colon + 1);
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || value > 65535) return std::nullopt;
  return value;
}

}  // namespace

void check_broker_address(std::string_view address) {
  if (!address.starts_with("tcp://")) return;
  // "*" (every interface) or no host is something to bind, not to reach.
  if (const std::string_view host = tcp_host(address); host == "*" || host.empty())
    throw Error("cannot connect to broker '" + std::string(address) + "': '" + std::string(host) +
                    "' is no host to connect to (a --bind address?); give the broker's host, like "
                    "tcp://127.0.0.1:5555",
                ErrorCode::BadRequest);
  if (const auto port = tcp_port(address); !port || *port == 0)
    throw Error("cannot connect to broker '" + std::string(address) +
                    "': its port must be a number from 1 to 65535 (expected an address like tcp://127.0.0.1:5555)",
                ErrorCode::BadRequest);
}

void check_spin_us(std::uint32_t spin_us, std::string_view what) {
  if (spin_us > kMaxSpinUs)
    throw UsageError(std::string(what) + " must be between 0 (never) and " + std::to_string(kMaxSpinUs));
}

void check_bind_address(std::string_view address, std::string_view what) {
  if (!address.starts_with("tcp://") || address.ends_with(":*") || tcp_port(address)) return;
  throw Error("cannot bind " + std::string(what) + " to " + std::string(address) +
                  ": its port must be a number from 0 to 65535, or * for any free one (like tcp://*:5555)",
              ErrorCode::BadRequest);
}

std::string connectable_address(std::string_view reported, std::string_view broker_address) {
  const auto host = tcp_host(reported);
  if (host != "0.0.0.0" && host != "*" && host != "[::]") return std::string(reported);
  auto broker_host = tcp_host(broker_address);
  if (broker_host.empty() || broker_host == "*" || broker_host == "0.0.0.0") broker_host = "127.0.0.1";
  const auto colon = reported.rfind(':');
  return "tcp://" + std::string(broker_host) + std::string(reported.substr(colon));
}

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown";
  return buffer;
}

namespace {

// cxxopts quotes with U+2018/U+2019; a terminal or a log may not show them.
std::string plain_quotes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto rest = text.substr(i);
    if (rest.starts_with("\u2018") || rest.starts_with("\u2019")) {
      out += '\'';
      i += 2;  // the quote is three bytes of UTF-8
    } else {
      out += text[i];
    }
  }
  return out;
}

// The flag whose value is `value`: "--name value", "--name=value", "-n value".
// Empty when none is, or when several are (naming one could blame the
// wrong one).
std::string flag_carrying(std::string_view value, int argc, const char* const* argv) {
  std::string found;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (!arg.starts_with("-")) continue;
    const auto eq = arg.find('=');
    std::string flag;
    if (eq != std::string_view::npos && arg.substr(eq + 1) == value) flag = arg.substr(0, eq);
    if (eq == std::string_view::npos && i + 1 < argc && argv[i + 1] == value) flag = arg;
    if (flag.empty()) continue;
    if (!found.empty()) return {};
    found = std::move(flag);
  }
  return found;
}

}  // namespace

double parse_decimal(std::string_view text, std::string_view flag) {
  // from_chars takes no sign for a positive number; people write one.
  const std::string_view digits = text.starts_with("+") ? text.substr(1) : text;
  double value = 0;
  const char* end = digits.data() + digits.size();
  const auto [at, ec] = std::from_chars(digits.data(), end, value);
  if (ec == std::errc::result_out_of_range)
    throw UsageError(std::string(flag) + " '" + std::string(text) + "' is out of range");
  if (digits.empty() || ec != std::errc() || at != end || !std::isfinite(value) || digits.starts_with("-") != text.starts_with("-"))
    throw UsageError(std::string(flag) + " '" + std::string(text) + "' is not a number");
  return value;
}

std::string option_error_text(std::string_view parser_message, int argc, const char* const* argv) {
  std::string message = plain_quotes(parser_message);
  constexpr std::string_view head = "Argument '", tail = "' failed to parse";
  if (message.starts_with(head) && message.ends_with(tail)) {
    const std::string value = message.substr(head.size(), message.size() - head.size() - tail.size());
    const std::string flag = flag_carrying(value, argc, argv);
    if (!flag.empty()) return flag + " '" + value + "' is not a valid value";
    return "'" + value + "' is not a valid value";
  }
  // "mw result -5": the parser takes a negative number for short options
  // (and names only the first of them: '1' for -12). Quote the word given.
  constexpr std::string_view option_head = "Option '", option_tail = "' does not exist";
  if (message.starts_with(option_head) && message.ends_with(option_tail)) {
    const std::string_view name =
        std::string_view(message).substr(option_head.size(), message.size() - option_head.size() - option_tail.size());
    for (int i = 1; i < argc && !name.empty(); ++i) {
      const std::string_view word = argv[i];
      const bool negative_number = word.size() > 1 && word[0] == '-' && word[1] >= '0' && word[1] <= '9' &&
                                   word.find_first_not_of("0123456789.", 1) == std::string_view::npos;
      if (negative_number && word.substr(1).starts_with(name))
        return "'" + std::string(word) + "' is not an option, and no value here may be a negative number";
    }
  }
  return message;
}

}  // namespace mw
