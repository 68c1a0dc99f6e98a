// bin/mw/type_hint.cpp: the served type a mistyped one was meant to be.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "type_hint.hpp"

using mw::cli::nearest_type;
using mw::cli::served_types_hint;

TEST_CASE("nearest_type finds a typo: a swap, a missing, an extra or a changed character") {
  const std::vector<std::string> served{"sin", "square", "resize-image", "nextworker"};
  CHECK(nearest_type("sqaure", served) == "square");
  CHECK(nearest_type("squre", served) == "square");
  CHECK(nearest_type("squares", served) == "square");
  CHECK(nearest_type("resize_image", served) == "resize-image");
  CHECK(nearest_type("next-workr", served) == "nextworker");
}

TEST_CASE("nearest_type does not guess at a name far from every served one") {
  const std::vector<std::string> served{"sin", "square"};
  CHECK_FALSE(nearest_type("thumbnail", served).has_value());
  CHECK_FALSE(nearest_type("cos", served).has_value());  // every character differs
  CHECK_FALSE(nearest_type("sin", served).has_value());  // itself is no typo
  CHECK_FALSE(nearest_type("x", {}).has_value());
  CHECK_FALSE(nearest_type("x", {"y"}).has_value());  // too short to be a typo of anything
  CHECK(nearest_type("sim", {"sin"}) == "sin");
}

TEST_CASE("served_types_hint names the guess and the types served, at most eight") {
  CHECK(served_types_hint("sqaure", {"sin", "square"}, false) == " (did you mean 'square'? workers serve: sin, square)");
  CHECK(served_types_hint("thumbnail", {"sin", "square"}, false) == " (workers serve: sin, square)");
  CHECK(served_types_hint("thumbnail", {}, false).empty());
  std::vector<std::string> many;
  for (int i = 0; i < 10; ++i) many.push_back("type" + std::to_string(i) + "xx");
  CHECK(served_types_hint("zzz", many, false).ends_with("type7xx, and 2 more)"));
}

TEST_CASE("a type that ran before lost its workers: no guess at a typo") {
  CHECK(served_types_hint("stage1", {"stage2"}, true) == " (workers serve: stage2)");
  CHECK(served_types_hint("stage1", {"stage2"}, false) == " (did you mean 'stage2'? workers serve: stage2)");
}

TEST_CASE("shell_word quotes what a shell would split or expand") {
  CHECK(mw::cli::shell_word("resize-image") == "resize-image");
  CHECK(mw::cli::shell_word("billing.invoice/v2") == "billing.invoice/v2");
  CHECK(mw::cli::shell_word("caf\u00e9") == "caf\u00e9");
  CHECK(mw::cli::shell_word("$mw.flow") == "'$mw.flow'");
  CHECK(mw::cli::shell_word("a;b") == "'a;b'");
  CHECK(mw::cli::shell_word("it's") == "'it'\\''s'");
  CHECK(mw::cli::shell_word("=x") == "'=x'");
  CHECK(mw::cli::type_option("resize") == "--type resize");
  CHECK(mw::cli::type_option("-x") == "--type=-x");
}
