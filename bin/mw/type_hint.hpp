// type_hint.hpp — for a type no worker serves: the served type it was
// probably meant to be, and which types are served at all.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mw::cli {

// The type of `served` nearest to `type` by edits (a byte inserted,
// removed, changed, or two neighbours swapped), when it is near enough to
// be a typo: one edit for 3 to 5 bytes, one per three bytes beyond, at most
// three; none under three bytes. The first of equally near ones. nullopt
// when none is.
std::optional<std::string> nearest_type(std::string_view type, const std::vector<std::string>& served);

// " (did you mean 'square'? workers serve: square, sin)", " (workers serve:
// square, sin)" when none is near, or "" when no type is served. At most
// eight served types are named. A type that `ran_before` (it has done,
// failed or dead jobs: its workers are gone) is no typo: no guess then.
std::string served_types_hint(std::string_view type, const std::vector<std::string>& served, bool ran_before);

// `word` as a shell takes it back: as it is when it holds only letters,
// digits and _ . : / @ % + = - (or bytes beyond ASCII) and does not start
// with = (zsh expands that), else in single quotes.
std::string shell_word(std::string_view word);

// "--type WORD" for a command a message suggests, shell-quoted; "--type=WORD"
// when the type starts with - (the option parser would take it for a flag).
std::string type_option(std::string_view type);

}  // namespace mw::cli
