// mw/json_objects.hpp — filling ordered JSON objects in linear time.
//
// nlohmann::ordered_json keeps an object's keys in a vector and finds one by
// scanning every key before it, so setting n keys one `operator[]` at a
// time costs O(n²): for the keys one 16 MiB message can hold, hours of one
// broker thread. Everything that builds or merges objects from input (a
// decoded payload, a stored document, a patch) goes through these instead.
//
//   mw::ObjectWriter out(doc);          // doc: an object, possibly not empty
//   out.set("name", "Ada");              // replaces the value if "name" exists
//   out.set("id", 7);
//
//   auto doc = mw::parse_ordered_json(text);   // as ordered_json::parse, linear
//
// Thread safety: none; one writer per object at a time.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mw {

// Sets keys of one ordered_json object. Small objects are scanned as
// nlohmann does; once an object holds more than a few keys, they are
// indexed (O(log n) per key). The object must not be changed by other means
// while the writer is in use.
class ObjectWriter {
 public:
  // REQUIRES: object.is_object().
  explicit ObjectWriter(nlohmann::ordered_json& object);

  // The value stored under `key`, appended (null) if there was none.
  nlohmann::ordered_json& slot(std::string key);
  void set(std::string key, nlohmann::ordered_json value) { slot(std::move(key)) = std::move(value); }
  // Whether `key` is present.
  bool contains(std::string_view key);

 private:
  static constexpr std::size_t kScanLimit = 16;
  std::ptrdiff_t position(std::string_view key);
  // ordered_map hides the vector's operator[] behind its by-key one.
  auto& entry(std::size_t i) { return *(entries_.begin() + static_cast<std::ptrdiff_t>(i)); }
  void index_all();

  nlohmann::ordered_json::object_t& entries_;
  bool indexed_ = false;
  // key → position. A tree, not a hash table: keys come from the network,
  // and keys made to collide in a hash with a fixed seed would bring the
  // quadratic cost back. std::less<> finds by string_view.
  std::map<std::string, std::size_t, std::less<>> index_;
};

// Parses JSON text into an ordered_json in linear time (nlohmann parses it,
// ObjectWriter fills the objects). A key repeated within one object keeps
// its last value, as ordered_json::parse does. Throws
// nlohmann::json::exception (a parse error) on malformed text.
nlohmann::ordered_json parse_ordered_json(std::string_view text);

// What a JSON exception says for people: its message without the library's
// "[json.exception.parse_error.101] " prefix ("parse error at line 1,
// column 5: syntax error while parsing object ...").
std::string json_error_text(const nlohmann::json::exception& error);

}  // namespace mw
