// mw/broker/query.hpp — Feathers queries translated to SQL for the entity store.
//
// A query is a JSON object (key order matters for $sort):
//
//   {"age": {"$gte": 18}, "role": {"$in": ["admin", "staff"]},
//    "$or": [{"team": "red"}, {"team": "blue"}],
//    "$sort": {"last_sync_at": 1, "created_at": -1}, "$limit": 20, "$skip": 40,
//    "$select": ["name", "age"]}
//
// Equality is `field: value`; operators are $ne $in $nin $lt $lte $gt $gte;
// $or takes an array of queries. Field names are paths of identifiers
// ("address.city"); anything else, any unknown $operator and any value of
// the wrong shape is rejected with mw::Error(BadRequest) before SQL is built,
// and so is a query of more than 500 conditions ($or alternatives count) or
// 30000 values (SQLite could not run it).
// Values are always bound parameters; field names are validated and become
// literal JSON paths so that SQLite can use expression indexes on them.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace mw::broker {

using Json = nlohmann::ordered_json;

using SqlValue = std::variant<std::nullptr_t, std::int64_t, double, std::string>;

struct PageLimits {
  std::size_t default_limit = 10;  // $limit when the query has none
  std::size_t max_limit = 1000;    // larger $limit values are cut to this
};

struct TranslatedQuery {
  std::string where = "1";          // SQL boolean expression over columns id and doc
  std::vector<SqlValue> params;     // bound to the ?s of `where`, in order
  std::string order_by;             // "" or " ORDER BY …" (always ends with id for stable pages)
  std::size_t limit = 10;
  std::size_t skip = 0;
  // The fields to keep (and the id, always); none given: all of them.
  std::optional<std::vector<std::string>> select;
};

// Throws mw::Error(BadRequest) naming what is wrong.
TranslatedQuery translate_query(const Json& query, const PageLimits& limits);

// True for "name", "address.city", "_x1": identifiers joined by dots, at
// most 128 bytes.
bool is_valid_field_name(std::string_view field) noexcept;

// The SQL expression that reads `field` (validated) from a document:
// `id` for the id, json_extract(doc, '$.field') otherwise.
std::string field_expression(std::string_view field);

}  // namespace mw::broker
