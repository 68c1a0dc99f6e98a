// columns.hpp — lining up table columns that hold names people chose.
//
// Type names, schedule names and host names may be any UTF-8 (a type
// "résumé" or "画像"), and a terminal gives a character one column or two,
// never one per byte: printf's %-24s and std::setw count bytes, so a row
// with such a name would shift every column after it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mw::cli {

// The columns `text` takes on a terminal: one per character, two for East
// Asian wide and fullwidth ones (and emoji), none for combining marks. A
// byte that is not valid UTF-8 counts one, as a terminal shows it.
std::size_t display_width(std::string_view text);

// `text` followed by spaces up to `width` columns; as it is when wider.
std::string pad_right(std::string_view text, std::size_t width);

}  // namespace mw::cli
