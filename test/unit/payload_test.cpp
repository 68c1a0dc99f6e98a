// Unit tests of mw::Payload (mw/payload.hpp): JSON and typed round trips,
// and hostile bytes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mw/error.hpp"
#include "mw/payload.hpp"

namespace {

using nlohmann::json;

struct Order {
  std::string id;
  double total = 0;
  std::vector<std::string> items;
  std::map<std::string, std::int64_t> counts;
  bool paid = false;
  MSGPACK_DEFINE_MAP(id, total, items, counts, paid)
};

struct Other {
  int x = 0;
  MSGPACK_DEFINE_MAP(x)
};

json round_trip(const json& value) { return mw::Payload::from_json(value).to_json(); }

std::string nested_arrays(std::size_t depth) {
  std::string bytes(depth, '\x91');
  bytes.push_back('\xc0');
  return bytes;
}

}  // namespace

TEST_CASE("JSON values survive a round trip through msgpack") {
  SUBCASE("numbers") {
    for (const json& v : {json(0), json(1), json(-1), json(127), json(128), json(-33), json(65536),
                          json(std::numeric_limits<std::int64_t>::min()),
                          json(std::numeric_limits<std::int64_t>::max()),
                          json(std::numeric_limits<std::uint64_t>::max()), json(1.5), json(-0.25),
                          json(3.141592653589793), json(1e300)}) {
      CAPTURE(v.dump());
      CHECK(round_trip(v) == v);
    }
    CHECK(round_trip(json(std::numeric_limits<std::uint64_t>::max())).get<std::uint64_t>() ==
          std::numeric_limits<std::uint64_t>::max());
    CHECK(round_trip(json(std::numeric_limits<std::int64_t>::min())).get<std::int64_t>() ==
          std::numeric_limits<std::int64_t>::min());
  }
  SUBCASE("strings, including unicode and empty") {
    for (const json& v : {json(""), json("plain"), json("héllo wörld"), json("日本語テキスト"), json("emoji 🎉"),
                          json(std::string("nul\0inside", 10)), json(std::string(70000, 'x'))}) {
      CHECK(round_trip(v) == v);
    }
  }
  SUBCASE("null and bool") {
    CHECK(round_trip(nullptr).is_null());
    CHECK(round_trip(true) == json(true));
    CHECK(round_trip(false) == json(false));
  }
  SUBCASE("nested objects and arrays") {
    const json v = json::parse(R"({
      "user": {"name": "Zoë", "tags": ["a", "b", {"deep": [1, [2, [3, null]]]}], "age": 42},
      "empty_obj": {}, "empty_arr": [], "mixed": [1, "two", 3.5, false, null, {"k": "v"}]
    })");
    CHECK(round_trip(v) == v);
  }
  SUBCASE("parse_json and to_json_text") {
    const auto p = mw::Payload::parse_json(R"({"a":[1,2,{"b":"ü"}],"c":null})");
    CHECK(p.to_json() == json::parse(R"({"a":[1,2,{"b":"ü"}],"c":null})"));
    CHECK(json::parse(p.to_json_text()) == p.to_json());
  }
}

TEST_CASE("a default Payload is msgpack nil") {
  const mw::Payload p;
  CHECK(p.bytes() == std::string("\xc0", 1));
  CHECK(p.to_json().is_null());
  CHECK(p.to_json_text() == "null");
  // A whole float stays a float (msgpack-c would pack 1.0 as the integer 1).
  CHECK(mw::Payload::parse_json(R"([1.0, -0.0, 2.5, 3])").to_json_text() == "[1.0,-0.0,2.5,3]");
  // Map keys keep the order they were written in, as parse_json keeps them.
  CHECK(mw::Payload::parse_json(R"({"z": 1, "a": {"y": 2, "b": 3}})").to_json_text() == R"({"z":1,"a":{"y":2,"b":3}})");
}

TEST_CASE("MSGPACK_DEFINE_MAP structs round trip through Payload::of and as<T>") {
  const Order in{"o-1", 9.5, {"apple", "pear"}, {{"apple", 3}, {"pear", -1}}, true};
  const auto p = mw::Payload::of(in);
  const Order out = p.as<Order>();
  CHECK(out.id == in.id);
  CHECK(out.total == doctest::Approx(in.total));
  CHECK(out.items == in.items);
  CHECK(out.counts == in.counts);
  CHECK(out.paid == in.paid);

  // A map on the wire, readable by name from JSON (what other languages see).
  const json j = p.to_json();
  CHECK(j["id"] == "o-1");
  CHECK(j["total"] == 9.5);
  CHECK(j["items"] == json({"apple", "pear"}));
  CHECK(j["paid"] == true);

  // And the other way: JSON written by hand converts into the struct.
  const auto from_json = mw::Payload::parse_json(R"({"id":"o-2","total":1.25,"items":[],"counts":{},"paid":false})");
  const Order o2 = from_json.as<Order>();
  CHECK(o2.id == "o-2");
  CHECK(o2.total == doctest::Approx(1.25));
  CHECK_FALSE(o2.paid);
}

TEST_CASE("as<T> throws mw::Error when the value does not convert") {
  CHECK_THROWS_AS((void)mw::Payload::parse_json(R"("a string")").as<Order>(), mw::Error);
  CHECK_THROWS_AS((void)mw::Payload::parse_json(R"([1,2,3])").as<std::string>(), mw::Error);
  CHECK_THROWS_AS((void)mw::Payload::parse_json(R"({"x":"not an int"})").as<Other>(), mw::Error);
  CHECK(mw::Payload::parse_json(R"({"x":5})").as<Other>().x == 5);
}

TEST_CASE("parse_json throws mw::Error on bad JSON") {
  for (const char* bad : {"", "{", "[1,2", "{\"a\":}", "nul", "'single'", "{\"a\":1}}", "[1,]", "\"unterminated"}) {
    CAPTURE(bad);
    try {
      (void)mw::Payload::parse_json(bad);
      FAIL("expected mw::Error");
    } catch (const mw::Error& e) {
      CHECK(e.code() == mw::ErrorCode::BadRequest);
      CHECK(std::string(e.what()).find("JSON") != std::string::npos);
    }
  }
}

TEST_CASE("from_msgpack takes one well-formed value and rejects garbage") {
  CHECK(mw::Payload::from_msgpack(std::string("\x92\x01\xa1x", 4)).to_json() == json({1, "x"}));
  for (const std::string& bad :
       {std::string(), std::string("\xc1"), std::string("\x92\x01"), std::string("\xc0\xc0"),
        std::string("\xdd\xff\xff\xff\xff", 5), std::string("\xdb\xff\xff\xff\xff", 5), std::string("garbage!"),
        nested_arrays(100000)}) {
    CAPTURE(bad.size());
    CHECK_THROWS_AS((void)mw::Payload::from_msgpack(bad), mw::Error);
  }
}

TEST_CASE("to_json on hostile adopted bytes throws mw::Error instead of crashing") {
  for (const std::string& bad :
       {nested_arrays(100000), std::string("\xdd\xff\xff\xff\xff", 5), std::string("\xdf\xff\xff\xff\xff", 5),
        std::string("\x92\x01"), std::string("\xc0\xc0"), std::string(), std::string("\xc1")}) {
    CAPTURE(bad.size());
    const auto p = mw::Payload::adopt(bad);
    CHECK_THROWS_AS((void)p.to_json(), mw::Error);
    CHECK_THROWS_AS((void)p.to_json_text(), mw::Error);
    CHECK_THROWS_AS((void)p.as<Order>(), mw::Error);
  }
  // Nesting within the limit still converts.
  CHECK(mw::Payload::adopt(nested_arrays(20)).to_json().is_array());
}

TEST_CASE("binary strings become arrays of byte values; non-string keys become JSON text") {
  // bin8 of 3 bytes, then a map {1: "one"}
  CHECK(mw::Payload::from_msgpack(std::string("\xc4\x03\x00\x7f\xff", 5)).to_json() == json({0, 127, 255}));
  CHECK(mw::Payload::from_msgpack(std::string("\x81\x01\xa3one", 6)).to_json() == json({{"1", "one"}}));
}

TEST_CASE("payloads compare by their bytes") {
  CHECK(mw::Payload::parse_json("[1,2]") == mw::Payload::from_json(json({1, 2})));
  CHECK_FALSE(mw::Payload::parse_json("[1,2]") == mw::Payload::parse_json("[2,1]"));
}

TEST_CASE("put_json writes a payload as JSON, or null and why when it has no JSON form") {
  nlohmann::ordered_json record;
  mw::Payload::put_json(record, "payload", mw::Payload::parse_json(R"({"b":1,"a":[true]})").bytes());
  CHECK(record.dump() == R"({"payload":{"b":1,"a":[true]}})");  // key order kept
  mw::Payload::put_json(record, "result", std::string_view("\xdd\xff\xff\xff\xff", 5));  // claims 4G elements
  CHECK(record.at("result").is_null());
  CHECK(record.at("result_error").get<std::string>().rfind("the payload is not representable as JSON: ", 0) == 0);
  CHECK(record.at("payload").at("b") == 1);  // the rest of the record stands
}

TEST_CASE("Payload::of keeps a whole double or float a float") {
  // 0xcb: float 64, 0xca: float 32 (msgpack-c alone writes 1.0 as 0x01).
  CHECK(mw::Payload::of(1.0).bytes() == std::string("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9));
  CHECK(mw::Payload::of(1.0f).bytes() == std::string("\xca\x3f\x80\x00\x00", 5));
  CHECK(mw::Payload::of(std::vector<double>{0.0, -0.0, 2.5, 3.0}).to_json_text() == "[0.0,-0.0,2.5,3.0]");
  CHECK(mw::Payload::of(1.0).as<double>() == 1.0);
  // Integers stay integers.
  CHECK(mw::Payload::of(3).to_json_text() == "3");
  CHECK(mw::Payload::of(std::uint64_t{1} << 40).bytes() == std::string("\xcf\x00\x00\x01\x00\x00\x00\x00\x00", 9));
}
