#include "mw/options.hpp"

#include <unistd.h>

#include <cstdlib>

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

}  // namespace

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

}  // namespace mw
