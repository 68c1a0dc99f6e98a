// Unit tests of mw/json_objects.hpp: objects are filled in linear time and
// come out exactly as nlohmann's own (quadratic) ordered_json would make them.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <iterator>
#include <string>

#include <msgpack.hpp>

#include "mw/json_objects.hpp"
#include "mw/payload.hpp"

using Json = nlohmann::ordered_json;

namespace {

// An object of `n` keys "k0" … "k<n-1>", values their index; as JSON text and as msgpack.
std::string wide_object_text(int n) {
  std::string text = "{";
  for (int i = 0; i < n; ++i) text += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  return text + "}";
}

std::string wide_object_msgpack(int n, bool repeat_first_key_last) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_map(static_cast<std::uint32_t>(n + (repeat_first_key_last ? 1 : 0)));
  for (int i = 0; i < n; ++i) {
    packer.pack("k" + std::to_string(i));
    packer.pack(i);
  }
  if (repeat_first_key_last) {
    packer.pack(std::string("k0"));
    packer.pack(std::string("last"));
  }
  return std::string(buffer.data(), buffer.size());
}

// Sizes where a scan per key (n²/2 string compares) would run for minutes.
constexpr int kWide = 300'000;

}  // namespace

TEST_CASE("ObjectWriter: sets, replaces in place and keeps order, below and above the scan limit") {
  for (int n : {3, 40}) {
    Json object = Json::object();
    mw::ObjectWriter writer(object);
    for (int i = 0; i < n; ++i) writer.set("k" + std::to_string(i), i);
    writer.set("k1", "again");  // replaced where it was, not appended
    REQUIRE(object.size() == static_cast<std::size_t>(n));
    CHECK(object.begin().key() == "k0");
    CHECK(object["k1"] == "again");
    CHECK(std::prev(object.end()).key() == "k" + std::to_string(n - 1));
    CHECK(writer.contains("k0"));
    CHECK_FALSE(writer.contains("missing"));
    writer.slot("new") = true;
    CHECK(std::prev(object.end()).key() == "new");
  }
  // A writer over an object that already has many keys indexes them first.
  Json big = mw::parse_ordered_json(wide_object_text(100));
  mw::ObjectWriter writer(big);
  writer.set("k99", -1);
  CHECK(big.size() == 100);
  CHECK(big["k99"] == -1);
}

TEST_CASE("parse_ordered_json gives what ordered_json::parse gives") {
  for (const char* text : {
           R"({"b": 1, "a": [1, 2.5, "x", null, true, {"z": {}, "y": []}], "c": {"d": -7, "e": 18446744073709551615}})",
           R"([])", R"("just a string")", R"(42)", R"({"dup": 1, "other": 2, "dup": 3})",
           R"({"unicode": "h\u00e9llo \ud83d\ude00", "esc": "a\"b\\c\n"})"}) {
    CAPTURE(text);
    CHECK(mw::parse_ordered_json(text).dump() == Json::parse(text).dump());
  }
  CHECK_THROWS_AS(mw::parse_ordered_json(R"({"a": )"), nlohmann::json::exception);
  CHECK_THROWS_AS(mw::parse_ordered_json("nope"), nlohmann::json::exception);
}

TEST_CASE("an object of 300,000 keys is parsed, decoded and merged in linear time") {
  const Json parsed = mw::parse_ordered_json(wide_object_text(kWide));
  REQUIRE(parsed.size() == static_cast<std::size_t>(kWide));
  CHECK(std::prev(parsed.end()).value() == kWide - 1);

  // From msgpack (a CALL body): the repeated key takes its last value, in its first place.
  const Json decoded = mw::Payload::ordered_json_of(wide_object_msgpack(kWide, true));
  REQUIRE(decoded.size() == static_cast<std::size_t>(kWide));
  CHECK(decoded.begin().key() == "k0");
  CHECK(decoded.begin().value() == "last");

  Json merged = parsed;
  mw::ObjectWriter writer(merged);
  for (const auto& [key, value] : decoded.items()) writer.set(key, value);
  CHECK(merged.size() == static_cast<std::size_t>(kWide));
  CHECK(merged["k0"] == "last");
}

TEST_CASE("json_error_text says what is wrong without the library's exception id") {
  try {
    (void)mw::parse_ordered_json("{bad");
    FAIL("malformed JSON parsed");
  } catch (const nlohmann::json::exception& e) {
    const std::string text = mw::json_error_text(e);
    CHECK(text.rfind("parse error at line 1, column 2", 0) == 0);
    CHECK(text.find("[json.exception") == std::string::npos);
  }
}
