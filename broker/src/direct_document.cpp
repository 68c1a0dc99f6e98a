#include "direct_document.hpp"

#include <charconv>
#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mw/wire.hpp"

namespace mw::broker {
namespace {

// Maps wider than this are left to the general path: checking their keys
// for repeats here costs a comparison per pair (at most 16 per key, however
// a hostile body nests its maps).
constexpr std::uint32_t kMaxDirectKeys = 16;
constexpr std::size_t kLongestId = 256;

std::string_view text_of(const msgpack::object& o) { return {o.via.str.ptr, o.via.str.size}; }

// msgpack-c's packer appends to the document's msgpack through this.
struct Sink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};
using Packer = msgpack::packer<Sink>;

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// past U+10FFFF), as nlohmann's serializer demands of every string.
bool is_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned lead = p[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2, code = lead & 0x1F;
    else if (lead >= 0xE0 && lead <= 0xEF) length = 3, code = lead & 0x0F;
    else if (lead >= 0xF0 && lead <= 0xF4) length = 4, code = lead & 0x07;
    else return false;
    if (n - i < length) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const unsigned next = p[i + k];
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if (length == 3 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) return false;
    if (length == 4 && (code < 0x10000 || code > 0x10FFFF)) return false;
    i += length;
  }
  return true;
}

// A JSON string: quotes, backslashes and control characters escaped.
bool write_string(std::string_view s, std::string& out) {
  if (!is_utf8(s)) return false;
  out += '"';
  // Runs of characters that need no escape are copied whole.
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (static_cast<unsigned char>(c) >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {  // the other control characters
        static constexpr char kHex[] = "0123456789abcdef";
        out += "\\u00";
        out += kHex[(c >> 4) & 0xF];
        out += kHex[c & 0xF];
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
  return true;
}

template <typename Number>
void write_number(Number value, std::string& out) {
  char buffer[32];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  out.append(buffer, end);
}

// Exactly as nlohmann's dump writes a double, so the stored text does not
// depend on the path: null when not finite (JSON has no NaN), else its
// Grisu2 digits in its layout (fixed from 1e-5 to 1e15, with ".0" when
// integral). That routine is in nlohmann's detail namespace; it is what
// its serializer calls.
void write_double(double value, std::string& out) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buffer[64];
  const char* end = nlohmann::detail::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, static_cast<std::size_t>(end - buffer));
}

bool keys_are_distinct_strings(const msgpack::object_map& map) {
  if (map.size > kMaxDirectKeys) return false;
  for (std::uint32_t i = 0; i < map.size; ++i) {
    if (map.ptr[i].key.type != msgpack::type::STR) return false;
    for (std::uint32_t j = 0; j < i; ++j)
      if (text_of(map.ptr[j].key) == text_of(map.ptr[i].key)) return false;
  }
  return true;
}

// Writes one value as JSON text and as msgpack (float32 widened to
// float64, as the general path does). False: leave it to the general path.
bool write_value(const msgpack::object& o, std::string& json, Packer& packed) {
  switch (o.type) {
    case msgpack::type::NIL:
      json += "null";
      packed.pack_nil();
      return true;
    case msgpack::type::BOOLEAN:
      json += o.via.boolean ? "true" : "false";
      if (o.via.boolean) packed.pack_true();
      else packed.pack_false();
      return true;
    case msgpack::type::POSITIVE_INTEGER:
      write_number(o.via.u64, json);
      packed.pack_uint64(o.via.u64);
      return true;
    case msgpack::type::NEGATIVE_INTEGER:
      write_number(o.via.i64, json);
      packed.pack_int64(o.via.i64);
      return true;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      write_double(o.via.f64, json);
      {
        const auto bytes = wire::float64_bytes(o.via.f64);  // not pack_double: 1.0 stays a float
        packed.pack_bin_body(bytes.data(), bytes.size());
      }
      return true;
    case msgpack::type::STR:
      if (!write_string(text_of(o), json)) return false;
      packed.pack_str(o.via.str.size);
      packed.pack_str_body(o.via.str.ptr, o.via.str.size);
      return true;
    case msgpack::type::ARRAY:
      json += '[';
      packed.pack_array(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) json += ',';
        if (!write_value(o.via.array.ptr[i], json, packed)) return false;
      }
      json += ']';
      return true;
    case msgpack::type::MAP:
      if (!keys_are_distinct_strings(o.via.map)) return false;
      json += '{';
      packed.pack_map(o.via.map.size);
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) json += ',';
        if (!write_value(o.via.map.ptr[i].key, json, packed)) return false;
        json += ':';
        if (!write_value(o.via.map.ptr[i].val, json, packed)) return false;
      }
      json += '}';
      return true;
    case msgpack::type::BIN:
    case msgpack::type::EXT:
      return false;  // the general path turns them into arrays and nulls
  }
  return false;
}

// The id as the general path stores it: a string, or an integer in decimal.
std::optional<std::string> stored_id(const msgpack::object* given, const std::function<std::string()>& new_id) {
  if (!given || given->type == msgpack::type::NIL) return new_id();
  if (given->type == msgpack::type::STR) {
    if (given->via.str.size == 0 || given->via.str.size > kLongestId) return std::nullopt;
    return std::string(text_of(*given));
  }
  if (given->type == msgpack::type::NEGATIVE_INTEGER) return std::to_string(given->via.i64);
  if (given->type == msgpack::type::POSITIVE_INTEGER && given->via.u64 <= static_cast<std::uint64_t>(INT64_MAX))
    return std::to_string(given->via.u64);
  return std::nullopt;
}

void write_key(std::string_view key, std::string& json, Packer& packed) {
  json += '"';
  json += key;  // only the fixed keys below: nothing to escape
  json += "\":";
  packed.pack_str(static_cast<std::uint32_t>(key.size()));
  packed.pack_str_body(key.data(), static_cast<std::uint32_t>(key.size()));
}

}  // namespace

std::optional<DirectDocument> write_direct_document(const msgpack::object& data,
                                                    const std::function<std::string()>& new_id, std::int64_t now_ms) {
  if (data.type != msgpack::type::MAP || !keys_are_distinct_strings(data.via.map)) return std::nullopt;
  const auto& fields = data.via.map;
  const msgpack::object* given_id = nullptr;
  bool has_created = false, has_updated = false;
  for (std::uint32_t i = 0; i < fields.size; ++i) {
    const auto key = text_of(fields.ptr[i].key);
    if (key == "id") given_id = &fields.ptr[i].val;
    else if (key == "created_at") has_created = true;
    else if (key == "updated_at") has_updated = true;
  }
  auto id = stored_id(given_id, new_id);
  if (!id) return std::nullopt;

  DirectDocument doc;
  doc.json.reserve(64 + 2 * data.via.map.size * 16);
  Sink sink{doc.msgpack};
  Packer packed(sink);
  const std::uint32_t count = fields.size - (given_id ? 1 : 0) + 1 + (has_created ? 0 : 1) + (has_updated ? 0 : 1);
  packed.pack_map(count);
  doc.json += '{';
  write_key("id", doc.json, packed);
  if (!write_string(*id, doc.json)) return std::nullopt;
  packed.pack_str(static_cast<std::uint32_t>(id->size()));
  packed.pack_str_body(id->data(), static_cast<std::uint32_t>(id->size()));
  for (std::uint32_t i = 0; i < fields.size; ++i) {
    const auto& field = fields.ptr[i];
    const auto key = text_of(field.key);
    if (key == "id") continue;
    doc.json += ',';
    if (!write_value(field.key, doc.json, packed)) return std::nullopt;
    doc.json += ':';
    if (key == "updated_at") {
      write_number(now_ms, doc.json);
      packed.pack_int64(now_ms);
    } else if (!write_value(field.val, doc.json, packed)) {
      return std::nullopt;
    }
  }
  for (const auto* stamp : {"created_at", "updated_at"}) {
    if (std::string_view(stamp) == "created_at" ? has_created : has_updated) continue;
    doc.json += ',';
    write_key(stamp, doc.json, packed);
    write_number(now_ms, doc.json);
    packed.pack_int64(now_ms);
  }
  doc.json += '}';
  doc.id = std::move(*id);
  return doc;
}

}  // namespace mw::broker
