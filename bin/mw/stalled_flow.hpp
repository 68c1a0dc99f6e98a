// stalled_flow.hpp — telling a person who waits for a flow that it cannot
// move: it is queued at a type no worker serves (a worker not started yet,
// or a --next / nextWorkerType naming a type nobody runs).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mw/client.hpp"

namespace mw::cli {

// How long `mw submit --wait` and `mw result --wait` wait before they look
// where the flow is.
inline constexpr std::chrono::milliseconds kStalledHintAfter{3000};

// "flow 7 is queued at type 'resize', which no worker serves", or nullopt
// when the flow is not queued at such a type (or the broker cannot be
// asked: the hint is best effort and never fails the wait).
std::optional<std::string> why_flow_is_stalled(Client& client, std::uint64_t flow);

// Waits up to `rest` more for flow `flow`'s end (Client::wait), after
// saying on stderr, prefixed by `command`, why it is stalled, if it is.
std::optional<Outcome> wait_on_saying_why(std::string_view command, Client& client, std::uint64_t flow,
                                          std::chrono::milliseconds rest);

}  // namespace mw::cli
