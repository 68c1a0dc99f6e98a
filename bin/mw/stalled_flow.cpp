#include "stalled_flow.hpp"

#include <cstdio>

namespace mw::cli {

std::optional<std::string> why_flow_is_stalled(Client& client, std::uint64_t flow) {
  try {
    const auto record = client.call("$flows", "get", std::to_string(flow));
    if (record.value("state", "") != "queued") return std::nullopt;
    const auto type = record.value("type", "");
    for (const auto& t : client.status().types)
      if (t.type == type && t.workers > 0) return std::nullopt;
    return "flow " + std::to_string(flow) + " is queued at type '" + type + "', which no worker serves";
  } catch (const Interrupted&) {
    throw;
  } catch (const std::exception&) {
    return std::nullopt;  // ended meanwhile, an old broker, a lost one: the wait says what matters
  }
}

std::optional<Outcome> wait_on_saying_why(std::string_view command, Client& client, std::uint64_t flow,
                                          std::chrono::milliseconds rest) {
  if (const auto why = why_flow_is_stalled(client, flow)) {
    std::fprintf(stderr,
                 "%.*s: %s; it runs once one connects (a worker or mw-exec started with that --type). "
                 "Waiting on.\n",
                 static_cast<int>(command.size()), command.data(), why->c_str());
  }
  return client.wait(flow, rest);
}

}  // namespace mw::cli
