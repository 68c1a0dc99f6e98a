// json_text.hpp — how every `mw` command prints JSON.
//
// One document per line: one per record for lists (mw flows, mw dead,
// mw schedule --list, mw listen), one for a single answer (mw status, mw
// result, mw bench, entity calls), so `jq` and line-oriented tools read
// them alike; --pretty indents where a command offers it. Bytes that are
// not UTF-8 (a type name, an error text) are replaced, not fatal.
#pragma once

#include <string>

namespace mw::cli {

template <class Json>
std::string json_text(const Json& document, bool pretty = false) {
  return document.dump(pretty ? 2 : -1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace mw::cli
