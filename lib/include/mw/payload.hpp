// mw/payload.hpp — the msgpack value a job carries.
//
// A Payload owns the raw msgpack bytes of one value. Build it from JSON, from
// any type msgpack-c can pack (including structs with MSGPACK_DEFINE_MAP), or
// from bytes you already have; read it back the same ways. The broker never
// looks inside a payload: only workers and clients decode it.
//
//   struct Order { std::string id; double total; MSGPACK_DEFINE_MAP(id, total); };
//   auto p = mw::Payload::of(Order{"o1", 9.5});
//   Order o = p.as<Order>();
//   nlohmann::json j = p.to_json();      // {"id":"o1","total":9.5}
//
// Thread safety: a const Payload may be read from many threads.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "mw/error.hpp"

namespace mw {
namespace detail {
// What Payload::of packs into. msgpack-c's packer writes a whole double as
// an integer (1.0 as 1, -0.0 as 0), so a value would come back, and reach
// other languages, as another type; the packer of this buffer is
// specialised below to write floats as floats.
struct FloatKeepingBuffer {
  std::string bytes;
  void write(const char* data, std::size_t size) { bytes.append(data, size); }
};
using FloatKeepingPacker = msgpack::v1::packer<FloatKeepingBuffer>;

// A msgpack float 64 (0xcb) or float 32 (0xca): the tag, then the bits big-endian.
template <typename Float>
std::array<char, 1 + sizeof(Float)> msgpack_float(Float value) noexcept {
  using Bits = std::conditional_t<sizeof(Float) == 8, std::uint64_t, std::uint32_t>;
  Bits bits = std::bit_cast<Bits>(value);
  std::array<char, 1 + sizeof(Float)> bytes{};
  bytes[0] = static_cast<char>(sizeof(Float) == 8 ? 0xcb : 0xca);
  for (std::size_t i = sizeof(Float); i > 0; --i, bits >>= 8) bytes[i] = static_cast<char>(bits & 0xff);
  return bytes;
}
}  // namespace detail

class Payload {
 public:
  // The msgpack nil value.
  Payload();

  // Takes `msgpack_bytes` as they are. Throws mw::Error unless they hold
  // exactly one well-formed msgpack value.
  static Payload from_msgpack(std::string msgpack_bytes);

  // Takes bytes without checking them; for bytes that came from the broker
  // and will be checked when decoded.
  static Payload adopt(std::string msgpack_bytes) noexcept;

  static Payload from_json(const nlohmann::json& value);
  // Keeps the objects' key order (it matters for queries' $sort).
  static Payload from_json(const nlohmann::ordered_json& value);

  // Parses JSON text. Throws mw::Error with the parser's message on bad JSON.
  static Payload parse_json(std::string_view json_text);

  // Packs any value msgpack-c knows how to pack. A double or float stays
  // one, also when it is whole (msgpack-c alone packs 1.0 as the integer 1).
  template <typename T>
  static Payload of(const T& value) {
    detail::FloatKeepingBuffer buffer;
    msgpack::pack(buffer, value);
    return adopt(std::move(buffer.bytes));
  }

  // Unpacks into T. Throws mw::Error when the bytes are malformed or do not
  // convert to T (msgpack's type_error names no field; the message says so).
  template <typename T>
  T as() const {
    msgpack::object_handle handle = unpack();
    try {
      return handle.get().as<T>();
    } catch (const std::exception& e) {
      throw Error(std::string("payload does not convert to the requested type: ") + e.what(),
                  ErrorCode::BadRequest);
    }
  }

  // Throws mw::Error when the bytes are malformed. Binary strings become
  // arrays of byte values; map keys that are not strings are written as JSON text.
  nlohmann::json to_json() const;
  // As to_json(), keeping the order of map keys as they are in the bytes.
  nlohmann::ordered_json to_ordered_json() const;
  // As to_ordered_json() for bytes that are not held in a Payload (a frame
  // just received, say), without copying them first.
  static nlohmann::ordered_json ordered_json_of(std::string_view msgpack_bytes);
  // Sets record[key] to the JSON form of `msgpack_bytes`; when they have
  // none, record[key] is null and record[key + "_error"] says why. For
  // records shown to people, which one odd payload must not spoil.
  static void put_json(nlohmann::ordered_json& record, const std::string& key, std::string_view msgpack_bytes);
  // One line of JSON text, map keys in the order of the bytes (as written).
  std::string to_json_text() const;

  const std::string& bytes() const noexcept { return bytes_; }
  // Moves the bytes out, leaving the payload empty (not even nil).
  std::string take_bytes() && noexcept { return std::move(bytes_); }
  std::size_t size() const noexcept { return bytes_.size(); }

  // Decodes with hostile-input limits (see mw/wire.hpp). Throws mw::Error.
  msgpack::object_handle unpack() const;
  // The same for bytes held elsewhere, decoded into `zone` (reuse one to
  // spare an allocation per decode). Strings of the object point into the
  // bytes: both must outlive it.
  static msgpack::object unpack_into(msgpack::zone& zone, std::string_view msgpack_bytes);

  friend bool operator==(const Payload&, const Payload&) = default;

 private:
  explicit Payload(std::string bytes) noexcept : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

}  // namespace mw

// The packer of Payload::of's buffer: float 64 (0xcb) and float 32 (0xca),
// big-endian, whatever the value. (msgpack-c's packer lives in msgpack::v1.)
template <>
inline mw::detail::FloatKeepingPacker& mw::detail::FloatKeepingPacker::pack_double(double d) {
  const auto bytes = mw::detail::msgpack_float(d);
  append_buffer(bytes.data(), bytes.size());
  return *this;
}
template <>
inline mw::detail::FloatKeepingPacker& mw::detail::FloatKeepingPacker::pack_float(float d) {
  const auto bytes = mw::detail::msgpack_float(d);
  append_buffer(bytes.data(), bytes.size());
  return *this;
}
