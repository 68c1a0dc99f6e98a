// direct_document.hpp — a created document written straight from the
// CALL's msgpack (internal to EntityService).
//
// The general path decodes the data into JSON objects, builds the document
// from them, then encodes it twice: JSON text for SQLite, msgpack for the
// event and the reply. That was about a fifth of a create's time. For a
// create that no hook sees, this writes both forms in one walk over the
// decoded msgpack, with the same result: the id first (a string), the
// data's fields in their order, then created_at unless given, and
// updated_at (replaced in place if given).
//
// It writes only what it can write exactly as the general path would.
// Anything else returns nullopt and the caller takes the general path,
// which also produces the errors: binary or extension values, map keys
// that are not strings or that repeat (or maps too wide to check cheaply),
// strings that are not UTF-8, an id that is not a string of 1 to 256 bytes
// or an integer.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <msgpack.hpp>

namespace mw::broker {

struct DirectDocument {
  std::string id;
  std::string json;     // as SQLite stores it
  std::string msgpack;  // for the event and the reply
};

// `data` is the CALL's data (a map); `new_id` is called when it has no id.
std::optional<DirectDocument> write_direct_document(const msgpack::object& data,
                                                    const std::function<std::string()>& new_id, std::int64_t now_ms);

}  // namespace mw::broker
