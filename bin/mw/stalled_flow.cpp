#include "stalled_flow.hpp"

#include <algorithm>
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

std::vector<std::string> served_types(const wire::Stats& stats) {
  std::vector<std::string> served;
  for (const auto& t : stats.types)
    if (t.workers > 0) served.push_back(t.type);
  return served;
}

bool ran_before(const wire::TypeStats& t) noexcept { return t.done + t.failed + t.dead > 0; }

namespace {

// What STATUS says of a type for a hint: nullopt when a worker serves it;
// else whether it ran before (its workers are gone) and the served types,
// with the one it was probably meant to be (served_types_hint).
struct Unserved {
  bool ran = false;
  std::string hint;
};

std::optional<Unserved> unserved_in(const wire::Stats& stats, const std::string& type) {
  const auto it = std::find_if(stats.types.begin(), stats.types.end(), [&](const auto& t) { return t.type == type; });
  if (it != stats.types.end() && it->workers > 0) return std::nullopt;
  const bool ran = it != stats.types.end() && ran_before(*it);
  return Unserved{ran, served_types_hint(type, served_types(stats), ran)};
}

}  // namespace

std::optional<std::string> unserved_type_note(Client& client, const std::string& type) {
  try {
    const auto unserved = unserved_in(client.status(), type);
    if (!unserved) return std::nullopt;
    return "no worker serves '" + type + "'" + (unserved->ran ? " any more" : " now") + unserved->hint +
           "; its jobs wait until one connects (a worker or mw-exec started with " + type_option(type) + ")";
  } catch (const Interrupted&) {
    throw;
  } catch (const std::exception&) {
    return std::nullopt;  // an old broker, a lost one: what was asked for is done
  }
}

std::optional<std::string> why_flow_is_stalled(Client& client, std::uint64_t flow) {
  try {
    const auto record = client.call(kFlowsEndpoint, "get", std::to_string(flow));
    if (record.value("state", "") != "queued") return std::nullopt;
    const auto type = record.value("type", "");
    const auto unserved = unserved_in(client.status(), type);
    if (!unserved) return std::nullopt;
    return "flow " + std::to_string(flow) + " is queued at type '" + type + "', which no worker serves" +
           (unserved->ran ? " any more" : "") + unserved->hint +
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
