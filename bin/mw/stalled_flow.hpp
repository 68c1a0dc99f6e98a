// stalled_flow.hpp — telling a person who waits for a flow that it cannot
// move: it is queued at a type no worker serves (a worker not started yet,
// or a --next / nextWorkerType naming a type nobody runs).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mw/client.hpp"
#include "mw/wire.hpp"

namespace mw::cli {

// The types some worker serves now, in STATUS's order.
std::vector<std::string> served_types(const wire::Stats& stats);

// True when `t` has done, failed or dead jobs: a type that ran before and
// has no worker now lost its workers, and is no typo to guess at.
bool ran_before(const wire::TypeStats& t) noexcept;

// For a person who just gave the broker work of `type` (mw schedule):
// "no worker serves 'resize' now (did you mean …)…", or nullopt when one
// does or the broker cannot say (best effort). Throws Interrupted.
std::optional<std::string> unserved_type_note(Client& client, const std::string& type);

// "flow 7 is queued at type 'resize', which no worker serves", or nullopt
// when the flow is not queued at such a type, or the broker cannot say
// (the hint is best effort: it never fails a wait). Throws Interrupted.
std::optional<std::string> why_flow_is_stalled(Client& client, std::uint64_t flow);

// A ClientOptions::on_still_waiting for `command` ("mw submit"): asks the
// broker at `broker`, on a connection of its own, where the flow is, and
// says so on stderr when it is stalled. `stop` (not owned) interrupts it.
std::function<void(std::uint64_t)> say_why_stalled(std::string command, std::string broker, const StopSignal* stop);

}  // namespace mw::cli
