#include "mw/broker/query.hpp"

#include "mw/error.hpp"

namespace mw::broker {
namespace {

constexpr std::size_t kMaxFieldBytes = 128;
constexpr std::size_t kMaxInValues = 1000;
constexpr int kMaxOrDepth = 4;
// SQLite refuses expression trees deeper than 1000 and, as built by
// default, more than 32766 bound values: bigger queries are bad requests,
// not internal errors. A term is one condition or one $or alternative.
constexpr std::size_t kMaxTerms = 500;
constexpr std::size_t kMaxParams = 30000;

[[noreturn]] void bad(const std::string& why) { throw Error("bad query: " + why, ErrorCode::BadRequest); }

SqlValue scalar(const Json& v, std::string_view field) {
  switch (v.type()) {
    case Json::value_t::null: return nullptr;
    case Json::value_t::boolean: return std::int64_t{v.get<bool>() ? 1 : 0};  // how json_extract reads booleans
    case Json::value_t::number_integer: return v.get<std::int64_t>();
    case Json::value_t::number_unsigned: {
      const auto u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) return static_cast<double>(u);
      return static_cast<std::int64_t>(u);
    }
    case Json::value_t::number_float: return v.get<double>();
    case Json::value_t::string: return v.get<std::string>();
    default: bad("value for '" + std::string(field) + "' must be a string, number, boolean or null");
  }
}

class Translator {
 public:
  Translator(TranslatedQuery& out) : out_(out) {}

  // The conditions of one query object (no $sort/$limit/... below top level).
  std::string conditions(const Json& query, int depth, bool top) {
    if (!query.is_object()) bad("a query must be an object");
    std::string sql;
    auto add = [&](const std::string& c) {
      term();
      sql += sql.empty() ? c : " AND " + c;
    };
    for (const auto& [key, value] : query.items()) {
      if (!key.empty() && key[0] == '$') {
        if (key == "$or") {
          add(disjunction(value, depth));
        } else if (top && (key == "$sort" || key == "$limit" || key == "$skip" || key == "$select")) {
          continue;  // handled by translate_query
        } else {
          bad("unknown operator '" + key + "'");
        }
        continue;
      }
      if (!is_valid_field_name(key)) bad("field name '" + key + "' is not a dotted identifier");
      add(field_conditions(key, value));
    }
    return sql.empty() ? "1" : sql;
  }

 private:
  std::string disjunction(const Json& value, int depth) {
    if (depth >= kMaxOrDepth) bad("$or nested deeper than 4");
    if (!value.is_array() || value.empty()) bad("$or takes a non-empty array of queries");
    if (value.size() > kMaxInValues) bad("$or takes at most 1000 queries");
    std::string sql = "(";
    bool first = true;
    for (const auto& q : value) {
      term();
      if (!first) sql += " OR ";
      sql += "(" + conditions(q, depth + 1, false) + ")";
      first = false;
    }
    return sql + ")";
  }

  void term() {
    if (++terms_ > kMaxTerms) bad("more than " + std::to_string(kMaxTerms) + " conditions");
  }

  std::string param(SqlValue v) {
    out_.params.push_back(std::move(v));
    return "?";
  }

  std::string equals(const std::string& expr, const Json& value, const std::string& field) {
    auto v = scalar(value, field);
    if (std::holds_alternative<std::nullptr_t>(v)) return expr + " IS NULL";
    return expr + " = " + param(std::move(v));
  }

  std::string in_list(const Json& value, const std::string& field, const char* op) {
    if (!value.is_array()) bad(std::string(op) + " on '" + field + "' takes an array");
    if (value.size() > kMaxInValues) bad(std::string(op) + " takes at most 1000 values");
    std::string sql = "(";
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (i) sql += ", ";
      sql += param(scalar(value[i], field));
    }
    return sql + ")";
  }

  std::string field_conditions(const std::string& field, const Json& value) {
    const std::string expr = field_expression(field);
    if (!value.is_object()) return equals(expr, value, field);
    if (value.empty()) bad("empty operator object for '" + field + "'");
    std::string sql;
    auto add = [&](const std::string& c) {
      term();
      sql += sql.empty() ? c : " AND " + c;
    };
    for (const auto& [op, operand] : value.items()) {
      if (op == "$ne") {
        auto v = scalar(operand, field);
        add(std::holds_alternative<std::nullptr_t>(v) ? expr + " IS NOT NULL" : expr + " IS NOT " + param(std::move(v)));
      } else if (op == "$in") {
        add(operand.is_array() && operand.empty() ? "0" : expr + " IN " + in_list(operand, field, "$in"));
      } else if (op == "$nin") {
        add(operand.is_array() && operand.empty() ? "1" : "(" + expr + " IS NULL OR " + expr + " NOT IN " + in_list(operand, field, "$nin") + ")");
      } else if (op == "$lt" || op == "$lte" || op == "$gt" || op == "$gte") {
        const char* sym = op == "$lt" ? " < " : op == "$lte" ? " <= " : op == "$gt" ? " > " : " >= ";
        auto v = scalar(operand, field);
        if (std::holds_alternative<std::nullptr_t>(v)) bad(op + " on '" + field + "' needs a value, not null");
        add(expr + sym + param(std::move(v)) + same_type(field, operand));
      } else {
        bad("unknown operator '" + op + "' on '" + field + "'");
      }
    }
    return sql;
  }

  // A range compares like with like, as Feathers' and Mongo's do: SQLite
  // orders every number before every text (and json_extract gives arrays
  // and objects as JSON text, booleans as 0/1), so `$gt: 5` alone would
  // match "abc" and [1, 2]; json_type tells them apart. The id column
  // holds text only.
  static std::string same_type(const std::string& field, const Json& operand) {
    if (field == "id") return "";
    const std::string type = " AND json_type(doc, '$." + field + "')";
    if (operand.is_boolean()) return type + " IN ('true', 'false')";
    if (operand.is_number()) return type + " IN ('integer', 'real')";
    return type + " = 'text'";
  }

  TranslatedQuery& out_;
  std::size_t terms_ = 0;
};

std::size_t count_value(const Json& v, const char* name) {
  if (v.is_number_unsigned()) return v.get<std::size_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::size_t>(v.get<std::int64_t>());
  bad(std::string(name) + " must be a non-negative integer");
}

}  // namespace

bool is_valid_field_name(std::string_view field) noexcept {
  if (field.empty() || field.size() > kMaxFieldBytes) return false;
  bool segment_start = true;
  for (char c : field) {
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (c == '.') {
      if (segment_start) return false;
      segment_start = true;
    } else if (letter || (digit && !segment_start)) {
      segment_start = false;
    } else {
      return false;
    }
  }
  return !segment_start;
}

std::string field_expression(std::string_view field) {
  if (!is_valid_field_name(field)) bad("field name '" + std::string(field) + "' is not a dotted identifier");
  if (field == "id") return "id";
  // Safe to inline: the name is only letters, digits, '_' and '.'.
  return "json_extract(doc, '$." + std::string(field) + "')";
}

TranslatedQuery translate_query(const Json& query, const PageLimits& limits) {
  TranslatedQuery out;
  out.limit = limits.default_limit;
  out.order_by = " ORDER BY id ASC";  // also for a null query: pages stay stable
  if (query.is_null()) return out;
  if (!query.is_object()) bad("a query must be an object");
  Translator translator(out);
  out.where = translator.conditions(query, 0, true);
  if (out.params.size() > kMaxParams) bad("more than " + std::to_string(kMaxParams) + " values");

  if (auto it = query.find("$limit"); it != query.end()) out.limit = std::min(count_value(*it, "$limit"), limits.max_limit);
  if (auto it = query.find("$skip"); it != query.end()) out.skip = count_value(*it, "$skip");
  if (auto it = query.find("$select"); it != query.end()) {
    if (!it->is_array()) bad("$select takes an array of field names");
    out.select.emplace();
    for (const auto& f : *it) {
      if (!f.is_string() || !is_valid_field_name(f.get<std::string>())) bad("$select takes field names");
      out.select->push_back(f.get<std::string>());
    }
  }
  std::string order;
  bool has_id = false;
  if (auto it = query.find("$sort"); it != query.end()) {
    if (!it->is_object()) bad("$sort takes an object of field: 1 or -1");
    for (const auto& [field, direction] : it->items()) {
      const std::string expr = field_expression(field);
      int dir = 0;
      if (direction.is_number_integer()) dir = direction.get<int>();
      else if (direction.is_string()) dir = direction == "1" || direction == "asc" ? 1 : direction == "-1" || direction == "desc" ? -1 : 0;
      if (dir != 1 && dir != -1)
        bad("$sort direction for '" + field + "' must be 1 or -1 (or \"1\", \"-1\", \"asc\", \"desc\")");
      order += (order.empty() ? "" : ", ") + expr + (dir == 1 ? " ASC" : " DESC");
      has_id = has_id || field == "id";
    }
  }
  if (!has_id) order += std::string(order.empty() ? "" : ", ") + "id ASC";
  out.order_by = " ORDER BY " + order;
  return out;
}

}  // namespace mw::broker
