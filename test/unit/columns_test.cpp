// bin/mw/columns.cpp: table columns that line up whatever UTF-8 they hold.
#include <doctest/doctest.h>

#include "columns.hpp"

using mw::cli::display_width;
using mw::cli::pad_right;

TEST_CASE("display_width counts what a terminal shows, not bytes") {
  CHECK(display_width("") == 0);
  CHECK(display_width("resize") == 6);
  CHECK(display_width("r\u00e9sum\u00e9") == 6);            // two-byte letters
  CHECK(display_width("\u0440\u0435\u0437\u0430\u0442\u044c") == 6);  // Cyrillic
  CHECK(display_width("\u753b\u50cf") == 4);                // CJK: two columns each
  CHECK(display_width("\uff21") == 2);                      // a fullwidth letter
  CHECK(display_width("\U0001F600") == 2);                  // an emoji
  CHECK(display_width("e\u0301") == 1);                     // a combining accent adds nothing
  CHECK(display_width("a\xff" "b") == 3);                   // a byte that is not UTF-8 counts one
  CHECK(display_width("caf\xc3") == 4);                     // nor is a cut-off sequence
}

TEST_CASE("pad_right fills to the column, and leaves wider text as it is") {
  CHECK(pad_right("ab", 5) == "ab   ");
  CHECK(pad_right("\u753b\u50cf", 6) == "\u753b\u50cf  ");
  CHECK(pad_right("r\u00e9sum\u00e9", 8) == "r\u00e9sum\u00e9  ");
  CHECK(pad_right("toolong", 3) == "toolong");
}
