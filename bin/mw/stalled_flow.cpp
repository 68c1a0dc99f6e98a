#include "stalled_flow.hpp"

#include <chrono>
#include <cstdio>
#include <vector>

#include "type_hint.hpp"

namespace mw::cli {

namespace {

// A hint must not hold up the wait it interrupts for long: its two calls
// take at most twice this, well within the broker's liveness period for
// the waiting connection (three heartbeats, whose sending pauses meanwhile).
constexpr std::chrono::milliseconds kHintTimeout{1000};

}  // namespace

std::optional<std::string> why_flow_is_stalled(Client& client, std::uint64_t flow) {
  try {
    const auto record = client.call(kFlowsEndpoint, "get", std::to_string(flow));
    if (record.value("state", "") != "queued") return std::nullopt;
    const auto type = record.value("type", "");
    std::vector<std::string> served;
    bool ran_before = false;
    for (const auto& t : client.status().types) {
      if (t.type == type) ran_before = t.done + t.failed + t.dead > 0;
      if (t.workers == 0) continue;
      if (t.type == type) return std::nullopt;
      served.push_back(t.type);
    }
    return "flow " + std::to_string(flow) + " is queued at type '" + type + "', which no worker serves" +
           (ran_before ? " any more" : "") + served_types_hint(type, served, ran_before) +
           "; it runs once one connects (a worker or mw-exec started with " + type_option(type) + ")";
  } catch (const Interrupted&) {
    throw;
  } catch (const std::exception&) {
    return std::nullopt;  // ended meanwhile, an old broker, a lost one: the wait says what matters
  }
}

std::function<void(std::uint64_t)> say_why_stalled(std::string command, std::string broker, const StopSignal* stop) {
  return [command = std::move(command), broker = std::move(broker), stop](std::uint64_t flow) {
    ClientOptions options{.broker = broker, .timeout = kHintTimeout, .stop = stop};
    std::optional<std::string> why;
    try {
      Client asking(options);
      why = why_flow_is_stalled(asking, flow);
    } catch (const Interrupted&) {
      throw;
    } catch (const std::exception&) {
      return;
    }
    if (why)
      std::fprintf(stderr, "%s: %s. Waiting on.\n", command.c_str(), why->c_str());
  };
}

}  // namespace mw::cli
