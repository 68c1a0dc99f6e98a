// type_hint.hpp — for a type no worker serves: the served type it was
// probably meant to be, and which types are served at all.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::cli {

// The type of `served` nearest to `type` by edits (a character inserted,
// removed, changed, or two neighbours swapped), when it is near enough to
// be a typo: at most one edit per three characters, and at most three. The
// first of equally near ones. nullopt when none is.
std::optional<std::string> nearest_type(std::string_view type, const std::vector<std::string>& served);

// " (did you mean 'square'? workers serve: square, sin)", " (workers serve:
// square, sin)" when none is near, or "" when no type is served. At most
// eight served types are named.
std::string served_types_hint(std::string_view type, const std::vector<std::string>& served);

}  // namespace mw::cli
