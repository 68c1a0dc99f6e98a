// outcome.hpp — how `mw submit --wait` and `mw result` report a flow's end.
#pragma once

#include <string_view>

#include "mw/client.hpp"

namespace mw::cli {

// Prints a done flow's result as JSON on stdout and returns 0; says on
// stderr, prefixed by `command` ("mw submit"), how a dead or cancelled
// flow ended and returns 1.
int report_outcome(std::string_view command, const Outcome& outcome);

}  // namespace mw::cli
