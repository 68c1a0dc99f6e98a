#include "mw/payload.hpp"

#include <memory>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mw/json_objects.hpp"
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
      array.template get_ref<typename J::array_t&>().reserve(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) array.push_back(object_to_json<J>(o.via.array.ptr[i]));
      return array;
    }
    case msgpack::type::MAP: {
      auto map = J::object();
      const auto key_of = [](const msgpack::object& key) {
        return key.type == msgpack::type::STR ? std::string(key.via.str.ptr, key.via.str.size)
                                              : object_to_json<J>(key).dump();
      };
      if constexpr (std::is_same_v<J, nlohmann::ordered_json>) {
        // Linear time however many keys (see mw/json_objects.hpp).
        map.template get_ref<typename J::object_t&>().reserve(o.via.map.size);
        ObjectWriter writer(map);
        for (std::uint32_t i = 0; i < o.via.map.size; ++i)
          writer.set(key_of(o.via.map.ptr[i].key), object_to_json<J>(o.via.map.ptr[i].val));
      } else {
        for (std::uint32_t i = 0; i < o.via.map.size; ++i)
          map[key_of(o.via.map.ptr[i].key)] = object_to_json<J>(o.via.map.ptr[i].val);
      }
      return map;
    }
  }
  return nullptr;
}

// Strings of the decoded object point into the bytes, which outlive it.
bool reference_everything(msgpack::type::object_type, std::size_t, void*) { return true; }

// Decodes exactly one msgpack value into `zone`, with hostile-input limits;
// `reference` says which strings point into `bytes` instead of being copied.
msgpack::object decode(msgpack::zone& zone, std::string_view bytes, msgpack::unpack_reference_func reference) {
  const std::size_t n = bytes.empty() ? 1 : bytes.size();
  try {
    std::size_t offset = 0;
    const msgpack::object object = msgpack::unpack(zone, bytes.data(), bytes.size(), offset, reference, nullptr,
                                                   msgpack::unpack_limit(n, n, n, n, n, kMaxPayloadDepth));
    if (offset != bytes.size()) throw Error("payload has trailing bytes after its msgpack value", ErrorCode::BadRequest);
    return object;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(std::string("payload is not valid msgpack: ") + e.what(), ErrorCode::BadRequest);
  }
}

// Converts through this thread's zone, cleared (keeping its first chunk)
// before each use: a fresh zone per call cost a large allocation every time.
// The object never outlives the call, so the next conversion may reuse it.
template <typename J>
J convert(std::string_view bytes) {
  thread_local msgpack::zone zone;
  zone.clear();
  return object_to_json<J>(Payload::unpack_into(zone, bytes));
}

// msgpack-c's packer writes into anything with write(); this one appends
// to the string that becomes the payload, so nothing is copied afterwards.
struct StringSink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};

// JSON to msgpack through msgpack-c's packer: nlohmann's own to_msgpack
// allocates for every value it writes, which showed in every entity call.
// Floats stay float64 (nlohmann writes float32 where that is exact; both
// decode to the same double), whole ones too (wire::float64_bytes): 1.0
// must come back as JSON 1.0, not 1.
template <typename J>
void pack_json(msgpack::packer<StringSink>& packer, const J& value) {
  using Type = typename J::value_t;
  switch (value.type()) {
    case Type::null:
    case Type::discarded: packer.pack_nil(); return;
    case Type::boolean:
      if (value.template get<bool>()) packer.pack_true();
      else packer.pack_false();
      return;
    case Type::number_integer: packer.pack_int64(value.template get<std::int64_t>()); return;
    case Type::number_unsigned: packer.pack_uint64(value.template get<std::uint64_t>()); return;
    case Type::number_float: {
      const auto bytes = wire::float64_bytes(value.template get<double>());
      packer.pack_bin_body(bytes.data(), bytes.size());  // raw bytes, no header of its own
      return;
    }
    case Type::string: {
      const auto& text = value.template get_ref<const std::string&>();
      packer.pack_str(static_cast<std::uint32_t>(text.size()));
      packer.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
      return;
    }
    case Type::binary: {
      const auto& bytes = value.get_binary();
      const auto* data = reinterpret_cast<const char*>(bytes.data());
      const auto size = static_cast<std::uint32_t>(bytes.size());
      if (bytes.has_subtype()) {
        packer.pack_ext(size, static_cast<std::int8_t>(bytes.subtype()));
        packer.pack_ext_body(data, size);
      } else {
        packer.pack_bin(size);
        packer.pack_bin_body(data, size);
      }
      return;
    }
    case Type::array:
      packer.pack_array(static_cast<std::uint32_t>(value.size()));
      for (const auto& item : value) pack_json(packer, item);
      return;
    case Type::object:
      packer.pack_map(static_cast<std::uint32_t>(value.size()));
      for (auto it = value.begin(); it != value.end(); ++it) {
        packer.pack_str(static_cast<std::uint32_t>(it.key().size()));
        packer.pack_str_body(it.key().data(), static_cast<std::uint32_t>(it.key().size()));
        pack_json(packer, it.value());
      }
      return;
  }
  packer.pack_nil();
}

template <typename J>
std::string msgpack_of(const J& value) {
  std::string bytes;
  StringSink sink{bytes};
  msgpack::packer<StringSink> packer(sink);
  pack_json(packer, value);
  return bytes;
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

Payload Payload::from_json(const nlohmann::json& value) { return Payload(msgpack_of(value)); }

Payload Payload::parse_json(std::string_view json_text) {
  try {
    // ordered: keeps the key order the user wrote (it matters for $sort).
    return from_json(parse_ordered_json(json_text));
  } catch (const nlohmann::json::exception& e) {
    throw Error("invalid JSON: " + json_error_text(e), ErrorCode::BadRequest);
  }
}

msgpack::object_handle Payload::unpack() const {
  // The handle may outlive this payload: its strings are copied into its zone.
  auto zone = std::make_unique<msgpack::zone>();
  const msgpack::object object = decode(*zone, bytes_, nullptr);
  return msgpack::object_handle(object, std::move(zone));
}

nlohmann::json Payload::to_json() const { return convert<nlohmann::json>(bytes_); }

nlohmann::ordered_json Payload::to_ordered_json() const { return convert<nlohmann::ordered_json>(bytes_); }

msgpack::object Payload::unpack_into(msgpack::zone& zone, std::string_view bytes) {
  return decode(zone, bytes, reference_everything);
}

nlohmann::ordered_json Payload::ordered_json_of(std::string_view msgpack_bytes) {
  return convert<nlohmann::ordered_json>(msgpack_bytes);
}

void Payload::put_json(nlohmann::ordered_json& record, const std::string& key, std::string_view msgpack_bytes) {
  try {
    record[key] = ordered_json_of(msgpack_bytes);
  } catch (const std::exception& e) {
    record[key] = nullptr;
    record[key + "_error"] = std::string("the payload is not representable as JSON: ") + e.what();
  }
}

Payload Payload::from_json(const nlohmann::ordered_json& value) { return Payload(msgpack_of(value)); }

std::string Payload::to_json_text() const {
  // Map keys in the order they were written, as a document's fields are.
  return to_ordered_json().dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace mw
