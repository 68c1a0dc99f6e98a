#include "mw/payload.hpp"

#include <nlohmann/json.hpp>

#include "mw/wire.hpp"

namespace mw {
namespace {

// Payloads nest at most this deep; deeper input is rejected before any
// recursive conversion can exhaust the stack.
constexpr std::size_t kMaxPayloadDepth = 64;

template <typename J>
J object_to_json(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return nullptr;
    case msgpack::type::BOOLEAN: return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return o.via.f64;
    case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: {
      auto array = J::array();
      for (std::uint32_t i = 0; i < o.via.bin.size; ++i) array.push_back(static_cast<unsigned char>(o.via.bin.ptr[i]));
      return array;
    }
    case msgpack::type::EXT: return nullptr;
    case msgpack::type::ARRAY: {
      auto array = J::array();
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) array.push_back(object_to_json<J>(o.via.array.ptr[i]));
      return array;
    }
    case msgpack::type::MAP: {
      auto map = J::object();
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        std::string key = kv.key.type == msgpack::type::STR ? std::string(kv.key.via.str.ptr, kv.key.via.str.size)
                                                            : object_to_json<J>(kv.key).dump();
        map[std::move(key)] = object_to_json<J>(kv.val);
      }
      return map;
    }
  }
  return nullptr;
}

}  // namespace

Payload::Payload() : bytes_(1, '\xc0') {}

Payload Payload::from_msgpack(std::string msgpack_bytes) {
  try {
    wire::check_msgpack(msgpack_bytes, kMaxPayloadDepth);
  } catch (const wire::DecodeError& e) {
    throw Error(std::string("payload is not valid msgpack: ") + e.what(), ErrorCode::BadRequest);
  }
  return Payload(std::move(msgpack_bytes));
}

Payload Payload::adopt(std::string msgpack_bytes) noexcept { return Payload(std::move(msgpack_bytes)); }

Payload Payload::from_json(const nlohmann::json& value) {
  std::string bytes;
  nlohmann::json::to_msgpack(value, bytes);
  return Payload(std::move(bytes));
}

Payload Payload::parse_json(std::string_view json_text) {
  try {
    // ordered: keeps the key order the user wrote (it matters for $sort).
    return from_json(nlohmann::ordered_json::parse(json_text));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("invalid JSON: ") + e.what(), ErrorCode::BadRequest);
  }
}

msgpack::object_handle Payload::unpack() const {
  std::size_t n = bytes_.empty() ? 1 : bytes_.size();
  try {
    std::size_t offset = 0;
    auto handle = msgpack::unpack(bytes_.data(), bytes_.size(), offset, nullptr, nullptr,
                                  msgpack::unpack_limit(n, n, n, n, n, kMaxPayloadDepth));
    if (offset != bytes_.size()) throw Error("payload has trailing bytes after its msgpack value", ErrorCode::BadRequest);
    return handle;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(std::string("payload is not valid msgpack: ") + e.what(), ErrorCode::BadRequest);
  }
}

nlohmann::json Payload::to_json() const { return object_to_json<nlohmann::json>(unpack().get()); }

nlohmann::ordered_json Payload::to_ordered_json() const {
  return object_to_json<nlohmann::ordered_json>(unpack().get());
}

Payload Payload::from_json(const nlohmann::ordered_json& value) {
  std::string bytes;
  nlohmann::ordered_json::to_msgpack(value, bytes);
  return Payload(std::move(bytes));
}

std::string Payload::to_json_text() const {
  return to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace mw
