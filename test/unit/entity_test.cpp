// Unit tests of the entity layer without sockets: Feathers queries
// translated to SQL (mw/broker/query.hpp), the SQLite store
// (mw/broker/store.hpp) and the entity service with its hooks
// (mw/broker/entity_service.hpp, mw/broker/hooks.hpp).
//
// Every call runs as the broker runs it: store.begin(), service.call(),
// store.commit(), then the pending events are taken (as end_turn() does).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <msgpack.hpp>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mw/broker/entity_service.hpp"
#include "mw/broker/hooks.hpp"
#include "mw/broker/query.hpp"
#include "mw/broker/store.hpp"
#include "mw/error.hpp"
#include "mw/json_objects.hpp"
#include "mw/payload.hpp"
#include "temp_db.hpp"

namespace {

using mw::ErrorCode;
using mw::broker::EntityConfig;
using mw::broker::EntityService;
using mw::broker::HookContext;
using mw::broker::Hooks;
using mw::broker::Json;
using mw::broker::Method;
using mw::broker::PageLimits;
using mw::broker::PendingEvent;
using mw::broker::SqlValue;
using mw::broker::Store;
using mw::broker::TranslatedQuery;
using mw::broker::open_sqlite_store;
using mw::broker::translate_query;

// The code of the mw::Error that `f` throws; nullopt when it throws none
// (any other exception fails the test).
std::optional<ErrorCode> error_code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mw::Error& e) {
    return e.code();
  }
  return std::nullopt;
}

#define CHECK_ERROR_CODE(expr, expected)                                                     \
  do {                                                                                       \
    const auto code_ = error_code_of([&] { (void)(expr); });                                 \
    CHECK_MESSAGE(code_.has_value(), "expected mw::Error from " #expr);                      \
    if (code_) CHECK(static_cast<int>(*code_) == static_cast<int>(ErrorCode::expected));    \
  } while (false)

TranslatedQuery tq(const char* json_text, PageLimits limits = {}) {
  return translate_query(Json::parse(json_text), limits);
}

bool param_is(const SqlValue& p, const std::string& s) {
  return std::holds_alternative<std::string>(p) && std::get<std::string>(p) == s;
}
bool param_is(const SqlValue& p, std::int64_t n) {
  return std::holds_alternative<std::int64_t>(p) && std::get<std::int64_t>(p) == n;
}

// A store plus a service, driven as the broker drives them.
struct Entities {
  explicit Entities(EntityConfig config = {}, Hooks hooks = {}, const std::string& path = ":memory:")
      : store(open_sqlite_store(path)), service(*store, std::move(hooks), std::move(config)) {}

  // One call in its own transaction; returns the decoded result. Events it
  // appended move to `published`. On an exception the transaction is
  // committed anyway (as the broker's turn is: other calls of the turn
  // stand), which must persist nothing of the failed call.
  Json call(Method method, const std::string& endpoint, std::optional<std::string> id = std::nullopt,
            Json data = nullptr, Json query = nullptr, std::int64_t now = 1000) {
    HookContext c;
    c.endpoint = endpoint;
    c.method = method;
    c.id = std::move(id);
    c.data = std::move(data);
    c.query = std::move(query);
    c.now_ms = now;
    store->begin();
    std::string out;
    try {
      out = service.call(std::move(c));
    } catch (...) {
      store->commit();
      take_events();
      throw;
    }
    store->commit();
    take_events();
    return mw::Payload::ordered_json_of(out);
  }

  Json create(const std::string& endpoint, Json data, std::int64_t now = 1000) {
    return call(Method::Create, endpoint, std::nullopt, std::move(data), nullptr, now);
  }
  Json get(const std::string& endpoint, const std::string& id) { return call(Method::Get, endpoint, id); }
  Json find(const std::string& endpoint, Json query) {
    return call(Method::Find, endpoint, std::nullopt, nullptr, std::move(query));
  }
  std::vector<std::string> find_ids(const std::string& endpoint, const char* query) {
    std::vector<std::string> ids;
    const Json page = find(endpoint, Json::parse(query));
    for (const auto& d : page["data"]) ids.push_back(d["id"].get<std::string>());
    return ids;
  }
  bool exists(const std::string& endpoint, const std::string& id) { return store->get(endpoint, id).has_value(); }

  void take_events() {
    auto& pending = service.pending_events();
    published.insert(published.end(), pending.begin(), pending.end());
    pending.clear();
  }

  std::unique_ptr<Store> store;
  EntityService service;
  std::vector<PendingEvent> published;
};

std::vector<std::string> strings(std::initializer_list<const char*> items) { return {items.begin(), items.end()}; }

// ---------------------------------------------------------------------------
// translate_query: the SQL it builds
// ---------------------------------------------------------------------------

TEST_CASE("translate_query: an empty or null query matches everything, with the default page") {
  for (const char* text : {"{}", "null"}) {
    const auto q = tq(text, PageLimits{7, 100});
    CHECK(q.where == "1");
    CHECK(q.params.empty());
    CHECK(q.limit == 7);
    CHECK(q.skip == 0);
    CHECK_FALSE(q.select.has_value());
    CHECK(q.order_by.find("id ASC") != std::string::npos);
  }
}

TEST_CASE("translate_query: equality binds the value; null equality is IS NULL without a parameter") {
  auto q = tq(R"({"name": "ann"})");
  CHECK(q.where.find("json_extract(doc, '$.name') = ?") != std::string::npos);
  REQUIRE(q.params.size() == 1);
  CHECK(param_is(q.params[0], "ann"));
  CHECK(q.where.find("ann") == std::string::npos);

  q = tq(R"({"age": 42})");
  REQUIRE(q.params.size() == 1);
  CHECK(param_is(q.params[0], 42));

  q = tq(R"({"address.city": "Oslo"})");
  CHECK(q.where.find("'$.address.city'") != std::string::npos);

  q = tq(R"({"id": "u1"})");  // the id is a column, not inside the document
  CHECK(q.where.find("id = ?") == 0);

  q = tq(R"({"deleted": null})");
  CHECK(q.where.find("IS NULL") != std::string::npos);
  CHECK(q.params.empty());

  q = tq(R"({"a": 1, "b": "x"})");  // fields are ANDed
  CHECK(q.where.find(" AND ") != std::string::npos);
  CHECK(q.params.size() == 2);
}

TEST_CASE("translate_query: every comparison operator") {
  struct Case {
    const char* query;
    const char* sql;
  };
  for (const Case& c : {Case{R"({"n": {"$lt": 5}})", " < ?"}, Case{R"({"n": {"$lte": 5}})", " <= ?"},
                        Case{R"({"n": {"$gt": 5}})", " > ?"}, Case{R"({"n": {"$gte": 5}})", " >= ?"},
                        Case{R"({"n": {"$ne": 5}})", " IS NOT ?"}}) {
    CAPTURE(c.query);
    const auto q = tq(c.query);
    CHECK(q.where.find(std::string("json_extract(doc, '$.n')") + c.sql) != std::string::npos);
    REQUIRE(q.params.size() == 1);
    CHECK(param_is(q.params[0], 5));
  }
  auto q = tq(R"({"n": {"$ne": null}})");
  CHECK(q.where.find("IS NOT NULL") != std::string::npos);
  CHECK(q.params.empty());

  q = tq(R"({"n": {"$in": [1, 2, 3]}})");
  CHECK(q.where.find(" IN (?, ?, ?)") != std::string::npos);
  CHECK(q.params.size() == 3);

  q = tq(R"({"n": {"$nin": ["a", "b"]}})");
  CHECK(q.where.find(" NOT IN (?, ?)") != std::string::npos);
  CHECK(q.params.size() == 2);

  q = tq(R"({"n": {"$gte": 1, "$lt": 9}})");  // several operators on one field are ANDed
  CHECK(q.where.find(" >= ? AND ") != std::string::npos);
  CHECK(q.params.size() == 2);

  q = tq(R"({"$or": [{"team": "red"}, {"n": {"$gt": 3}}]})");
  CHECK(q.where.find(" OR ") != std::string::npos);
  REQUIRE(q.params.size() == 2);
  CHECK(param_is(q.params[0], "red"));
  CHECK(param_is(q.params[1], 3));
}

TEST_CASE("translate_query: $sort keeps the query's key order and ends with the id") {
  const auto q = tq(R"({"$sort": {"zeta": 1, "alpha": -1, "mid": "desc"}})");
  const auto zeta = q.order_by.find("'$.zeta') ASC");
  const auto alpha = q.order_by.find("'$.alpha') DESC");
  const auto mid = q.order_by.find("'$.mid') DESC");
  const auto id = q.order_by.rfind("id ASC");
  REQUIRE(zeta != std::string::npos);
  REQUIRE(alpha != std::string::npos);
  REQUIRE(mid != std::string::npos);
  REQUIRE(id != std::string::npos);
  CHECK(zeta < alpha);
  CHECK(alpha < mid);
  CHECK(mid < id);

  CHECK_ERROR_CODE(tq(R"({"$sort": {"a": 2}})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$sort": ["a"]})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$sort": {"a'); DROP TABLE entities;--": 1}})"), BadRequest);
}

TEST_CASE("translate_query: $limit, $skip and $select") {
  const PageLimits limits{10, 100};
  CHECK(tq("{}", limits).limit == 10);
  CHECK(tq(R"({"$limit": 3})", limits).limit == 3);
  CHECK(tq(R"({"$limit": 0})", limits).limit == 0);
  CHECK(tq(R"({"$limit": 5000})", limits).limit == 100);  // cut to the max
  CHECK(tq(R"({"$skip": 40})", limits).skip == 40);
  CHECK(tq(R"({"$select": ["name", "address.city"]})", limits).select == strings({"name", "address.city"}));
  CHECK(tq(R"({"$select": []})", limits).select == strings({}));  // only the id
  CHECK_FALSE(tq("{}", limits).select.has_value());  // everything
  // Paging keys are no filters.
  CHECK(tq(R"({"$limit": 3, "$skip": 1, "$select": ["a"], "$sort": {"a": 1}})", limits).where == "1");

  CHECK_ERROR_CODE(tq(R"({"$limit": -1})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$limit": "5"})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$skip": 1.5})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$select": "name"})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$select": ["a b"]})"), BadRequest);
  CHECK_ERROR_CODE(tq(R"({"$select": [1]})"), BadRequest);
}

TEST_CASE("translate_query: hostile field names are rejected before any SQL is built") {
  for (const char* field : {"a'); DROP TABLE entities;--", "a b", "$x", "a..b", "1a", "", ".a", "a.", "a.1b",
                            "a-b", "a\"b", "a]", "a\nb"}) {
    CAPTURE(field);
    Json query = Json::object();
    query[field] = 1;
    CHECK_ERROR_CODE(translate_query(query, {}), BadRequest);
    Json in_or = Json::object();
    in_or["$or"] = Json::array({query});
    CHECK_ERROR_CODE(translate_query(in_or, {}), BadRequest);
    Json sort = Json::object();
    sort["$sort"][field] = 1;
    CHECK_ERROR_CODE(translate_query(sort, {}), BadRequest);
    Json select = Json::object();
    select["$select"] = Json::array({field});
    CHECK_ERROR_CODE(translate_query(select, {}), BadRequest);
    CHECK_FALSE(mw::broker::is_valid_field_name(field));
  }
  CHECK(mw::broker::is_valid_field_name("_x1.y_2"));
  CHECK_FALSE(mw::broker::is_valid_field_name(std::string(129, 'a')));
  CHECK(mw::broker::is_valid_field_name(std::string(128, 'a')));
}

TEST_CASE("translate_query: values never reach the SQL text") {
  const std::string evil = "x'); DROP TABLE entities;--";
  const std::string quotes = "it's \"quoted\" '' \\";
  Json query = Json::object();
  query["name"] = evil;
  query["note"]["$in"] = Json::array({quotes, evil});
  query["$or"] = Json::array({Json{{"title", {{"$ne", quotes}}}}, Json{{"title", {{"$gt", evil}}}}});
  const auto q = translate_query(query, {});
  // The $gt's guard (it compares text with text only) has constants of its own.
  std::string sql = q.where;
  const std::string guard = " AND json_type(doc, '$.title') = 'text'";
  const auto at = sql.find(guard);
  REQUIRE(at != std::string::npos);
  sql.erase(at, guard.size());
  CHECK(sql.find("DROP") == std::string::npos);
  CHECK(sql.find("quoted") == std::string::npos);
  CHECK(sql.find("''") == std::string::npos);
  REQUIRE(q.params.size() == 5);
  CHECK(param_is(q.params[0], evil));
  CHECK(param_is(q.params[1], quotes));
  CHECK(param_is(q.params[2], evil));
  CHECK(param_is(q.params[3], quotes));
  CHECK(param_is(q.params[4], evil));
  // The only quotes in the SQL are those around the JSON paths.
  std::size_t quote_count = std::count(sql.begin(), sql.end(), '\'');
  CHECK(quote_count == 2 * 4);  // name, note, title, title
}

TEST_CASE("translate_query: unknown operators and wrong shapes are BadRequest") {
  for (const char* text : {
           R"({"a": {"$regex": "x"}})", R"({"$where": "1=1"})", R"({"$and": [{"a": 1}]})",
           R"({"a": {"$in": 5}})", R"({"a": {"$nin": "x"}})", R"({"a": {"$in": null}})", R"({"a": {"$nin": null}})",
           R"({"a": {"$in": {}}})", R"({"a": {"$in": [[1]]}})", R"({"a": {"$in": [{"b": 1}]}})",
           R"({"a": {"$lt": null}})", R"({"a": {"$gt": [1]}})", R"({"a": {}})", R"({"a": [1, 2]})",
           R"({"a": {"b": 1}})", R"({"$or": []})", R"({"$or": {"a": 1}})", R"({"$or": [1]})",
           R"({"$or": [{"$limit": 1}]})", R"({"$or": [{"$sort": {"a": 1}}]})", R"([1])", R"("a")",
           R"({"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"a": 1}]}]}]}]}]})"}) {
    CAPTURE(text);
    CHECK_ERROR_CODE(tq(text), BadRequest);
  }
  // The message says what is wrong.
  try {
    tq(R"({"a": {"$regex": "x"}})");
    FAIL("no error");
  } catch (const mw::Error& e) {
    CHECK(std::string(e.what()).find("$regex") != std::string::npos);
  }
  // Empty $in matches nothing, empty $nin everything: valid.
  CHECK(tq(R"({"a": {"$in": []}})").where == "0");
  CHECK(tq(R"({"a": {"$nin": []}})").where == "1");
}

TEST_CASE("translate_query: queries too big for SQLite are BadRequest, not an internal error") {
  Entities e;
  e.create("users", Json::parse(R"({"id": "u1", "a": 1})"));
  // SQLite refuses expression trees deeper than 1000: a long $or chain, or
  // an object with very many fields, must be refused as a bad query.
  Json long_or = Json::object();
  long_or["$or"] = Json::array();
  for (int i = 0; i < 999; ++i) long_or["$or"].push_back(Json{{"a", i}});
  CHECK_ERROR_CODE(e.find("users", long_or), BadRequest);
  Json empty_alternatives = Json::object();
  empty_alternatives["$or"] = Json::array();
  for (int i = 0; i < 999; ++i) empty_alternatives["$or"].push_back(Json::object());
  CHECK_ERROR_CODE(e.find("users", empty_alternatives), BadRequest);
  Json many_fields = Json::object();
  for (int i = 0; i < 999; ++i) many_fields["f" + std::to_string(i)] = i;
  CHECK_ERROR_CODE(e.find("users", many_fields), BadRequest);
  // Too many bound values (SQLite's default limit is 32766).
  Json many_values = Json::object();
  for (int f = 0; f < 40; ++f) {
    Json in = Json::array();
    for (int i = 0; i < 1000; ++i) in.push_back(i);
    many_values["f" + std::to_string(f)]["$in"] = in;
  }
  CHECK_ERROR_CODE(e.find("users", many_values), BadRequest);
  CHECK_ERROR_CODE(e.call(Method::Remove, "users", std::nullopt, nullptr, long_or), BadRequest);

  // Large queries within the limits work.
  Json fine = Json::object();
  fine["$or"] = Json::array();
  for (int i = 0; i < 200; ++i) fine["$or"].push_back(Json{{"a", i}});
  Json in = Json::array();
  for (int i = 0; i < 1000; ++i) in.push_back(i);
  fine["a"]["$in"] = in;
  CHECK(e.find("users", fine)["total"] == 1);
  CHECK(e.get("users", "u1")["a"] == 1);
}

// ---------------------------------------------------------------------------
// Queries run against the store: the semantics
// ---------------------------------------------------------------------------

TEST_CASE("find: every operator selects the right documents") {
  Entities e;
  e.create("items", Json::parse(R"([
    {"id": "a", "n": 1, "team": "red",  "tags": "x", "address": {"city": "Oslo"}, "ok": true},
    {"id": "b", "n": 2, "team": "blue", "address": {"city": "Rome"}, "ok": false},
    {"id": "c", "n": 3, "team": "red",  "gone": null},
    {"id": "d", "n": 4.5, "team": "green"},
    {"id": "e", "team": "blue", "n": "text"}
  ])"));
  const auto all = strings({"a", "b", "c", "d", "e"});
  CHECK(e.find_ids("items", "{}") == all);
  CHECK(e.find_ids("items", R"({"team": "red"})") == strings({"a", "c"}));
  CHECK(e.find_ids("items", R"({"id": "b"})") == strings({"b"}));
  CHECK(e.find_ids("items", R"({"address.city": "Rome"})") == strings({"b"}));
  CHECK(e.find_ids("items", R"({"ok": true})") == strings({"a"}));
  CHECK(e.find_ids("items", R"({"ok": false})") == strings({"b"}));
  CHECK(e.find_ids("items", R"({"gone": null})") == strings({"a", "b", "c", "d", "e"}));  // missing or null
  CHECK(e.find_ids("items", R"({"tags": null})") == strings({"b", "c", "d", "e"}));
  CHECK(e.find_ids("items", R"({"team": {"$ne": "red"}})") == strings({"b", "d", "e"}));
  CHECK(e.find_ids("items", R"({"tags": {"$ne": null}})") == strings({"a"}));
  CHECK(e.find_ids("items", R"({"tags": {"$ne": "x"}})") == strings({"b", "c", "d", "e"}));  // missing counts as ≠
  CHECK(e.find_ids("items", R"({"team": {"$in": ["red", "green"]}})") == strings({"a", "c", "d"}));
  CHECK(e.find_ids("items", R"({"team": {"$nin": ["red", "green"]}})") == strings({"b", "e"}));
  CHECK(e.find_ids("items", R"({"tags": {"$nin": ["x"]}})") == strings({"b", "c", "d", "e"}));
  CHECK(e.find_ids("items", R"({"n": {"$lt": 3}})") == strings({"a", "b"}));
  CHECK(e.find_ids("items", R"({"n": {"$lte": 3}})") == strings({"a", "b", "c"}));
  CHECK(e.find_ids("items", R"({"n": {"$gt": 3}})") == strings({"d"}));  // not "text": a number compares with numbers
  CHECK(e.find_ids("items", R"({"n": {"$gte": 2, "$lt": 4.5}})") == strings({"b", "c"}));
  CHECK(e.find_ids("items", R"({"n": 4.5})") == strings({"d"}));
  CHECK(e.find_ids("items", R"({"$or": [{"team": "green"}, {"n": 1}]})") == strings({"a", "d"}));
  CHECK(e.find_ids("items", R"({"team": "blue", "$or": [{"n": 2}, {"n": 3}]})") == strings({"b"}));
  CHECK(e.find_ids("items", R"({"team": {"$in": []}})").empty());
  CHECK(e.find_ids("items", R"({"team": {"$nin": []}})") == all);
  // Endpoints do not see each other's documents.
  e.create("other", Json::parse(R"({"id": "a", "team": "red"})"));
  CHECK(e.find("items", Json::parse(R"({"team": "red"})"))["total"] == 2);
  CHECK(e.find("other", Json::object())["total"] == 1);
}

TEST_CASE("find: $lt/$lte/$gt/$gte compare like with like, with or without an index") {
  // SQLite orders every number before every text, and json_extract gives
  // arrays and objects as JSON text and booleans as 0/1: a bare comparison
  // had "abc", "10", [1, 2] and {"a": 1} above a million (the probe of
  // 2026-12-07). Feathers and Mongo compare only values of one type.
  for (const bool indexed : {false, true}) {
    CAPTURE(indexed);
    TempDb db;
    EntityConfig config;
    if (indexed) config.indexes = {"t.v"};
    Entities e(config, {}, db.path());
    e.create("t", Json::parse(R"([
      {"id": "s", "v": "abc"}, {"id": "n5", "v": 5}, {"id": "s10", "v": "10"}, {"id": "arr", "v": [1, 2]},
      {"id": "obj", "v": {"a": 1}}, {"id": "f", "v": false}, {"id": "t", "v": true}, {"id": "x", "v": 2.5},
      {"id": "nul", "v": null}, {"id": "none"}
    ])"));
    CHECK(e.find_ids("t", R"({"v": {"$gt": 1000000}})").empty());
    CHECK(e.find_ids("t", R"({"v": {"$gt": 1}})") == strings({"n5", "x"}));
    CHECK(e.find_ids("t", R"({"v": {"$lte": 5}})") == strings({"n5", "x"}));
    CHECK(e.find_ids("t", R"({"v": {"$lt": "a"}})") == strings({"s10"}));
    CHECK(e.find_ids("t", R"({"v": {"$gte": ""}})") == strings({"s", "s10"}));
    CHECK(e.find_ids("t", R"({"v": {"$gt": false}})") == strings({"t"}));
    CHECK(e.find_ids("t", R"({"v": {"$gte": 2, "$lt": 6}})") == strings({"n5", "x"}));
    CHECK(e.find_ids("t", R"({"id": {"$gt": "s"}})") == strings({"s10", "t", "x"}));  // ids are text
  }
}

TEST_CASE("find: $select keeps the id and the named top-level fields; an empty $select only the id") {
  Entities e;
  e.create("u", Json::parse(R"({"id": "a", "name": "ann", "address": {"city": "Oslo"}, "n": 1})"));
  const auto only = [&](const char* query) { return e.find("u", Json::parse(query))["data"].at(0); };
  CHECK(only(R"({"$select": []})") == Json::parse(R"({"id": "a"})"));
  CHECK(only(R"({"$select": ["name", "address.city"]})") == Json::parse(R"({"id": "a", "name": "ann", "address": {"city": "Oslo"}})"));
  CHECK(only("{}").contains("created_at"));
}

TEST_CASE("find: injection attempts in values are data, and the table survives") {
  Entities e;
  e.create("users", Json::parse(R"({"id": "u1", "name": "x'); DROP TABLE entities;--"})"));
  e.create("users", Json::parse(R"({"id": "u2", "name": "O'Brien"})"));
  CHECK(e.find_ids("users", R"({"name": "x'); DROP TABLE entities;--"})") == strings({"u1"}));
  CHECK(e.find_ids("users", R"({"name": "O'Brien"})") == strings({"u2"}));
  CHECK(e.find_ids("users", R"({"name": "' OR '1'='1"})").empty());
  CHECK(e.find_ids("users", R"({"name": {"$in": ["' OR 1=1 --", "O'Brien"]}})") == strings({"u2"}));
  CHECK(e.find("users", Json::object())["total"] == 2);
  CHECK_ERROR_CODE(e.find("users", Json::parse(R"({"name') OR 1=1 --": 1})")), BadRequest);
  CHECK(e.get("users", "u1")["name"] == "x'); DROP TABLE entities;--");
}

TEST_CASE("find: sort by several keys in order, pagination and the {total, limit, skip, data} page") {
  EntityConfig config;
  config.page = PageLimits{10, 20};
  Entities e(config);
  Json batch = Json::array();
  for (int n = 0; n < 25; ++n) batch.push_back({{"id", "u" + std::to_string(100 + n)}, {"n", n}, {"team", n % 2 ? "blue" : "red"}});
  e.create("users", batch);

  auto page = e.find("users", Json::parse(R"({"team": "red", "$sort": {"n": -1}, "$limit": 5, "$skip": 2})"));
  CHECK(page["total"] == 13);
  CHECK(page["limit"] == 5);
  CHECK(page["skip"] == 2);
  std::vector<int> ns;
  for (const auto& d : page["data"]) ns.push_back(d["n"].get<int>());
  CHECK(ns == std::vector<int>{20, 18, 16, 14, 12});

  // Default and maximum page.
  page = e.find("users", Json::object());
  CHECK(page["total"] == 25);
  CHECK(page["limit"] == 10);
  CHECK(page["data"].size() == 10);
  page = e.find("users", Json::parse(R"({"$limit": 1000})"));
  CHECK(page["limit"] == 20);
  CHECK(page["data"].size() == 20);
  page = e.find("users", Json::parse(R"({"$limit": 0})"));
  CHECK(page["total"] == 25);
  CHECK(page["data"].empty());
  page = e.find("users", Json::parse(R"({"$skip": 24})"));
  CHECK(page["data"].size() == 1);
  page = e.find("users", Json::parse(R"({"$skip": 30})"));
  CHECK(page["total"] == 25);
  CHECK(page["data"].empty());

  // Two keys: team ascending, then n descending; the key order decides.
  page = e.find("users", Json::parse(R"({"$sort": {"team": 1, "n": -1}, "$limit": 20, "$skip": 10})"));
  std::vector<std::string> seen;
  for (const auto& d : page["data"]) seen.push_back(d["team"].get<std::string>() + std::to_string(d["n"].get<int>()));
  CHECK(seen == strings({"blue3", "blue1", "red24", "red22", "red20", "red18", "red16", "red14", "red12", "red10",
                         "red8", "red6", "red4", "red2", "red0"}));
  page = e.find("users", Json::parse(R"({"$sort": {"n": -1, "team": 1}, "$limit": 3})"));
  CHECK(page["data"][0]["n"] == 24);
  CHECK(page["data"][2]["n"] == 22);

  // Pages of a sort with ties are stable (the id breaks them): no document twice, none missing.
  std::set<std::string> ids;
  for (int skip = 0; skip < 25; skip += 4) {
    Json q = Json::parse(R"({"$sort": {"team": 1}, "$limit": 4})");
    q["$skip"] = skip;
    const Json one_page = e.find("users", q);
    for (const auto& d : one_page["data"]) CHECK(ids.insert(d["id"].get<std::string>()).second);
  }
  CHECK(ids.size() == 25);

  // $select keeps the id and the named fields.
  page = e.find("users", Json::parse(R"({"id": "u101", "$select": ["team"]})"));
  REQUIRE(page["data"].size() == 1);
  CHECK(page["data"][0] == Json::parse(R"({"id": "u101", "team": "blue"})"));
}

// ---------------------------------------------------------------------------
// The entity service
// ---------------------------------------------------------------------------

TEST_CASE("create: objects and arrays, ids given or made, conflicts") {
  Entities e;
  auto doc = e.create("users", Json::parse(R"({"name": "ann", "age": 30})"), 5000);
  REQUIRE(doc["id"].is_string());
  CHECK_FALSE(doc["id"].get<std::string>().empty());
  CHECK(doc["name"] == "ann");
  CHECK(doc["age"] == 30);
  CHECK(doc["created_at"] == 5000);
  CHECK(doc["updated_at"] == 5000);
  CHECK(e.get("users", doc["id"].get<std::string>()) == doc);

  auto other = e.create("users", Json::parse(R"({"name": "bob"})"), 5000);
  CHECK(other["id"] != doc["id"]);

  auto given = e.create("users", Json::parse(R"({"id": "u1", "name": "cid"})"));
  CHECK(given["id"] == "u1");
  auto numeric = e.create("users", Json::parse(R"({"id": 42})"));
  CHECK(numeric["id"] == "42");
  CHECK(e.get("users", "42")["id"] == "42");
  CHECK(e.find_ids("users", R"({"id": 42})") == strings({"42"}));  // ids are text; numbers find them
  CHECK(e.find_ids("users", R"({"id": {"$in": [42, "u1"]}})") == strings({"42", "u1"}));

  CHECK_ERROR_CODE(e.create("users", Json::parse(R"({"id": "u1", "name": "again"})")), Conflict);
  CHECK(e.get("users", "u1")["name"] == "cid");
  CHECK_ERROR_CODE(e.create("users", Json::parse(R"({"id": 42})")), Conflict);

  auto many = e.create("users", Json::parse(R"([{"id": "m1", "n": 1}, {"n": 2}])"));
  REQUIRE(many.is_array());
  REQUIRE(many.size() == 2);
  CHECK(many[0]["id"] == "m1");
  CHECK(e.exists("users", many[1]["id"].get<std::string>()));

  CHECK_ERROR_CODE(e.create("users", Json(5)), BadRequest);
  CHECK_ERROR_CODE(e.create("users", Json::parse(R"([{"a": 1}, 2])")), BadRequest);
  CHECK_ERROR_CODE(e.create("users", Json::parse(R"({"id": ""})")), BadRequest);
  CHECK_ERROR_CODE(e.create("users", Json::parse(R"({"id": {"x": 1}})")), BadRequest);
  CHECK_ERROR_CODE(e.create("bad name", Json::object()), BadRequest);
  CHECK_ERROR_CODE(e.create("users.x", Json::object()), BadRequest);
  CHECK_ERROR_CODE(e.create(std::string(65, 'a'), Json::object()), BadRequest);
}

TEST_CASE("get, update, patch and remove by id") {
  Entities e;
  e.create("users", Json::parse(R"({"id": "u1", "name": "ann", "age": 30, "role": "admin"})"), 1000);
  CHECK_ERROR_CODE(e.get("users", "nobody"), NotFound);
  CHECK_ERROR_CODE(e.call(Method::Get, "users"), BadRequest);  // no id
  // An id no document can have (as create refuses it) is a bad request, not "not found".
  for (const Method m : {Method::Get, Method::Update, Method::Patch, Method::Remove}) {
    CHECK_ERROR_CODE(e.call(m, "users", std::string(257, 'x'), Json::object()), BadRequest);
    CHECK_ERROR_CODE(e.call(m, "users", std::string(), Json::object()), BadRequest);
  }

  SUBCASE("update replaces the document, keeping id and created_at") {
    auto doc = e.call(Method::Update, "users", "u1",
                      Json::parse(R"({"id": "hijack", "name": "ann b", "created_at": 1, "x": [1, 2]})"), nullptr, 2000);
    CHECK(doc["id"] == "u1");
    CHECK(doc["name"] == "ann b");
    CHECK(doc["x"] == Json::parse("[1, 2]"));
    CHECK_FALSE(doc.contains("age"));
    CHECK_FALSE(doc.contains("role"));
    CHECK(doc["created_at"] == 1000);
    CHECK(doc["updated_at"] == 2000);
    CHECK(e.get("users", "u1") == doc);
    CHECK_FALSE(e.exists("users", "hijack"));
    CHECK_ERROR_CODE(e.call(Method::Update, "users", "nobody", Json::object()), NotFound);
    CHECK_ERROR_CODE(e.call(Method::Update, "users", "u1", Json(3)), BadRequest);
  }
  SUBCASE("patch merges fields") {
    auto doc = e.call(Method::Patch, "users", "u1", Json::parse(R"({"age": 31, "team": "red", "id": "x", "created_at": 1})"),
                      nullptr, 3000);
    CHECK(doc["id"] == "u1");
    CHECK(doc["name"] == "ann");
    CHECK(doc["role"] == "admin");
    CHECK(doc["age"] == 31);
    CHECK(doc["team"] == "red");
    CHECK(doc["created_at"] == 1000);
    CHECK(doc["updated_at"] == 3000);
    CHECK(e.get("users", "u1") == doc);
    CHECK_ERROR_CODE(e.call(Method::Patch, "users", "nobody", Json::object()), NotFound);
    CHECK_ERROR_CODE(e.call(Method::Patch, "users", "u1", Json::array()), BadRequest);
  }
  SUBCASE("remove returns the document and deletes it") {
    auto doc = e.call(Method::Remove, "users", "u1");
    CHECK(doc["name"] == "ann");
    CHECK_ERROR_CODE(e.get("users", "u1"), NotFound);
    CHECK_ERROR_CODE(e.call(Method::Remove, "users", "u1"), NotFound);
  }
}

TEST_CASE("patch and remove by query, bounded by max_multi") {
  EntityConfig config;
  config.max_multi = 5;
  Entities e(config);
  for (int n = 0; n < 8; ++n) e.create("users", Json{{"id", "u" + std::to_string(n)}, {"n", n}, {"small", n < 4}});
  e.published.clear();
  const auto seq_before = e.store->last_event_seq();

  auto patched = e.call(Method::Patch, "users", std::nullopt, Json::parse(R"({"flag": 1})"),
                        Json::parse(R"({"small": true})"));
  REQUIRE(patched.is_array());
  CHECK(patched.size() == 4);
  for (const auto& d : patched) CHECK(d["flag"] == 1);
  CHECK(e.find("users", Json::parse(R"({"flag": 1})"))["total"] == 4);
  REQUIRE(e.published.size() == 4);  // one event per entity
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(e.published[i].topic == "users.patched");
    CHECK(e.published[i].seq == seq_before + 1 + i);
  }

  // Exactly the bound is allowed.
  auto five = e.call(Method::Patch, "users", std::nullopt, Json::parse(R"({"five": true})"),
                     Json::parse(R"({"n": {"$lt": 5}})"));
  CHECK(five.size() == 5);

  // Over the bound: BadRequest, and nothing is written.
  e.published.clear();
  const auto seq_mid = e.store->last_event_seq();
  CHECK_ERROR_CODE(e.call(Method::Patch, "users", std::nullopt, Json::parse(R"({"big": true})"), Json::object()),
                   BadRequest);
  CHECK_ERROR_CODE(e.call(Method::Update, "users", std::nullopt, Json::parse(R"({"big": true})"), Json::object()),
                   BadRequest);
  CHECK_ERROR_CODE(e.call(Method::Remove, "users", std::nullopt, nullptr, Json::parse(R"({"n": {"$gte": 1}})")),
                   BadRequest);
  // $limit in the query does not sneak past the bound.
  CHECK_ERROR_CODE(e.call(Method::Remove, "users", std::nullopt, nullptr, Json::parse(R"({"$limit": 2})")), BadRequest);
  CHECK(e.find("users", Json::parse(R"({"big": true})"))["total"] == 0);
  CHECK(e.find("users", Json::object())["total"] == 8);
  CHECK(e.published.empty());
  CHECK(e.store->last_event_seq() == seq_mid);

  // A query is needed without an id.
  CHECK_ERROR_CODE(e.call(Method::Remove, "users"), BadRequest);

  auto removed = e.call(Method::Remove, "users", std::nullopt, nullptr, Json::parse(R"({"n": {"$gte": 6}})"));
  CHECK(removed.size() == 2);
  CHECK(e.find("users", Json::object())["total"] == 6);
  REQUIRE(e.published.size() == 2);
  CHECK(e.published[0].topic == "users.removed");
  CHECK(e.published[1].topic == "users.removed");

  // update by query replaces each match.
  auto updated = e.call(Method::Update, "users", std::nullopt, Json::parse(R"({"v": 2})"), Json::parse(R"({"n": 0})"));
  REQUIRE(updated.size() == 1);
  CHECK(updated[0]["id"] == "u0");
  CHECK_FALSE(updated[0].contains("n"));

  // No match: an empty array, no events.
  e.published.clear();
  CHECK(e.call(Method::Remove, "users", std::nullopt, nullptr, Json::parse(R"({"n": 99})")) == Json::array());
  CHECK(e.published.empty());

  // Array creates are bounded too.
  Json six = Json::array({Json::object(), Json::object(), Json::object(), Json::object(), Json::object(), Json::object()});
  CHECK_ERROR_CODE(e.create("users", six), BadRequest);
  CHECK(e.find("users", Json::object())["total"] == 6);
}

TEST_CASE("--endpoints: only the listed endpoints are served") {
  EntityConfig config;
  config.endpoints = {"users", "orders"};
  Entities e(config);
  e.create("users", Json::parse(R"({"id": "u1"})"));
  e.create("orders", Json::parse(R"({"id": "o1"})"));
  CHECK_ERROR_CODE(e.create("things", Json::parse(R"({"id": "t1"})")), NotFound);
  CHECK_ERROR_CODE(e.get("things", "t1"), NotFound);
  CHECK_ERROR_CODE(e.find("things", Json::object()), NotFound);
  CHECK_FALSE(e.exists("things", "t1"));
  // The replay endpoint stays available.
  CHECK(e.call(Method::Find, std::string(mw::broker::kEventsEndpoint))["events"].size() == 2);

  EntityConfig bad;
  bad.endpoints = {"no spaces"};
  auto store = open_sqlite_store(":memory:");
  CHECK_ERROR_CODE(EntityService(*store, {}, bad), BadRequest);
}

TEST_CASE("events: one per change, increasing seq, the right topics and data") {
  Entities e;
  e.create("users", Json::parse(R"({"id": "u1", "n": 1})"), 1000);
  e.create("users", Json::parse(R"([{"id": "u2"}, {"id": "u3"}])"), 1001);
  e.call(Method::Patch, "users", "u1", Json::parse(R"({"n": 2})"), nullptr, 1002);
  e.call(Method::Update, "users", "u2", Json::parse(R"({"n": 3})"), nullptr, 1003);
  e.call(Method::Remove, "users", "u3", nullptr, nullptr, 1004);
  e.get("users", "u1");                  // reads append nothing
  e.find("users", Json::object());
  CHECK_ERROR_CODE(e.get("users", "u3"), NotFound);

  const auto topics = strings({"users.created", "users.created", "users.created", "users.patched", "users.updated",
                               "users.removed"});
  REQUIRE(e.published.size() == topics.size());
  for (std::size_t i = 0; i < topics.size(); ++i) {
    CAPTURE(i);
    CHECK(e.published[i].topic == topics[i]);
    CHECK(e.published[i].seq == i + 1);
  }
  CHECK(Json::from_msgpack(e.published[3].data)["n"] == 2);
  CHECK(Json::from_msgpack(e.published[5].data)["id"] == "u3");

  // The same events are in the store, with their time.
  const auto stored = e.store->events_after(0, 100);
  REQUIRE(stored.size() == topics.size());
  for (std::size_t i = 0; i < stored.size(); ++i) {
    CHECK(stored[i].seq == e.published[i].seq);
    CHECK(stored[i].topic == e.published[i].topic);
    CHECK(stored[i].data == e.published[i].data);
  }
  CHECK(stored[0].at_ms == 1000);
  CHECK(stored[5].at_ms == 1004);
  CHECK(e.store->last_event_seq() == 6);
  CHECK(e.store->first_event_seq() == 1);
  CHECK(e.store->events_after(4, 100).size() == 2);
  CHECK(e.store->events_after(0, 2).size() == 2);

  // The $events endpoint replays them: {first_seq, last_seq, events: [[seq, topic, at_ms, data]]}.
  auto page = e.call(Method::Find, "$events", std::nullopt, nullptr, Json::parse(R"({"since": 2, "limit": 3})"));
  CHECK(page["first_seq"] == 1);
  CHECK(page["last_seq"] == 6);
  REQUIRE(page["events"].size() == 3);
  CHECK(page["events"][0][0] == 3);
  CHECK(page["events"][0][1] == "users.created");
  CHECK(page["events"][0][2] == 1001);
  CHECK(page["events"][0][3]["id"] == "u3");
  CHECK(page["events"][2][0] == 5);
  CHECK_ERROR_CODE(e.call(Method::Get, "$events", "1"), BadRequest);
  CHECK_ERROR_CODE(e.call(Method::Find, "$events", std::nullopt, nullptr, Json::parse(R"({"since": -1})")), BadRequest);
  CHECK_ERROR_CODE(e.call(Method::Find, "$events", std::nullopt, nullptr, Json::parse(R"({"since": "x"})")), BadRequest);
}

TEST_CASE("documents with very many fields are created, read, patched and selected in linear time") {
  // ordered_json finds a key by scanning; set one key at a time, 100,000
  // fields would take minutes per call (see mw/json_objects.hpp).
  constexpr int kFields = 100'000;
  Json wide = Json::object(), changes = Json::object(), select = Json::array();
  mw::ObjectWriter w(wide), c(changes);
  w.set("id", "wide");
  for (int i = 0; i < kFields; ++i) {
    w.set("f" + std::to_string(i), i);
    c.set("f" + std::to_string(i), -i);
    if (i % 2) select.push_back("f" + std::to_string(i));
  }
  Entities e;
  e.create("users", wide);
  const Json stored = e.get("users", "wide");
  CHECK(stored.size() == kFields + 3);  // id, the fields, created_at, updated_at
  const Json patched = e.call(Method::Patch, "users", "wide", changes);
  CHECK(patched.size() == kFields + 3);
  CHECK(std::prev(patched.end(), 3).value() == -(kFields - 1));
  const Json page = e.find("users", Json{{"$select", select}});
  REQUIRE(page["data"].size() == 1);
  CHECK(page["data"][0].size() == kFields / 2 + 1);  // the selected fields and the id
}

TEST_CASE("a write's reply is its document as stored (or as it was, for remove)") {
  // Writes on one document answer with the bytes of their event; check
  // them with nlohmann's own decoder against what a get returns.
  Entities e;
  const auto reply = [&](Method method, std::optional<std::string> id, Json data) {
    HookContext c;
    c.endpoint = "users";
    c.method = method;
    c.id = std::move(id);
    c.data = std::move(data);
    c.now_ms = 5;
    e.store->begin();
    const std::string bytes = e.service.call(std::move(c));
    e.store->commit();
    e.take_events();
    return Json::from_msgpack(bytes);
  };
  // (Each reply is taken before the get: the operands of == run in no set order.)
  Json answer = reply(Method::Create, std::nullopt, Json{{"id", "u1"}, {"name", "Ada"}, {"score", 1.5}});
  CHECK(answer == e.get("users", "u1"));
  answer = reply(Method::Patch, "u1", Json{{"score", 2}, {"tags", {"a", "b"}}});
  CHECK(answer == e.get("users", "u1"));
  answer = reply(Method::Update, "u1", Json{{"name", "Grace"}});
  CHECK(answer == e.get("users", "u1"));
  const Json last = e.get("users", "u1");
  CHECK(reply(Method::Remove, "u1", nullptr) == last);
  CHECK_FALSE(e.exists("users", "u1"));
}

// The context of a create call on `endpoint` with `data` (JSON text).
HookContext create_call(const std::string& endpoint, const char* data, std::int64_t now_ms = 1) {
  HookContext c;
  c.endpoint = endpoint;
  c.method = Method::Create;
  c.data = Json::parse(data);
  c.now_ms = now_ms;
  return c;
}

TEST_CASE("a failing call leaves no writes and no pending events") {
  Entities e;
  e.create("users", Json::parse(R"({"id": "u1", "n": 1})"));
  const auto seq = e.store->last_event_seq();

  // Within one open transaction, as in a broker turn with other calls.
  e.store->begin();
  e.service.call(create_call("users", R"({"id": "before"})"));
  const auto pending_before = e.service.pending_events().size();
  CHECK(pending_before == 1);

  const HookContext bad = create_call("users", R"([{"id": "n1"}, {"id": "u1"}, {"id": "n2"}])", 2);  // the 2nd conflicts
  CHECK_ERROR_CODE(e.service.call(bad), Conflict);
  CHECK(e.service.pending_events().size() == pending_before);
  CHECK_FALSE(e.store->get("users", "n1"));
  CHECK_FALSE(e.store->get("users", "n2"));

  // Another failing call in the same transaction.
  HookContext missing;
  missing.endpoint = "users";
  missing.method = Method::Update;
  missing.id = "nobody";
  missing.data = Json::object();
  CHECK_ERROR_CODE(e.service.call(missing), NotFound);
  CHECK(e.service.pending_events().size() == pending_before);

  e.store->commit();
  e.take_events();
  CHECK(e.exists("users", "before"));
  CHECK_FALSE(e.exists("users", "n1"));
  CHECK(e.store->last_event_seq() == seq + 1);
  const auto stored = e.store->events_after(seq, 100);
  REQUIRE(stored.size() == 1);
  CHECK(Json::from_msgpack(stored[0].data)["id"] == "before");
  // The next event follows without a gap.
  e.create("users", Json::parse(R"({"id": "after"})"));
  CHECK(e.published.back().seq == seq + 2);
}

// The seed's sampleHooks on "sampleendpoint" (see examples/custom_broker.cpp).
Hooks sample_hooks() {
  Hooks hooks;
  hooks.before("sampleendpoint", {Method::Create}, [](HookContext& hook) {
    if (hook.data.is_object()) hook.data["created_at"] = hook.now_ms;
  });
  hooks.before("sampleendpoint", {Method::Find}, [](HookContext& hook) {
    if (!hook.query.is_object()) hook.query = Json::object();
    hook.query["$sort"] = {{"last_sync_at", 1}, {"created_at", -1}};
  });
  hooks.after("sampleendpoint", {Method::Find}, [](HookContext& hook) {
    auto& data = hook.result["data"];
    if (data.is_array() && data.size() > 10) data.erase(data.begin(), data.end() - 10);
  });
  return hooks;
}

TEST_CASE("hooks: the seed's sampleHooks stamp created_at, sort, and keep the last 10 of find") {
  Entities e({}, sample_hooks());
  for (int n = 0; n < 25; ++n) {
    auto doc = e.create("sampleendpoint", Json{{"n", n}, {"created_at", 1}}, 10'000 + n);
    CHECK(doc["created_at"] == 10'000 + n);  // the hook's value, not the caller's
  }
  auto page = e.find("sampleendpoint", Json::parse(R"({"$limit": 50})"));
  CHECK(page["total"] == 25);
  REQUIRE(page["data"].size() == 10);
  // Sorted newest first, then the last 10: the 10 oldest, newest of them first.
  for (int i = 0; i < 10; ++i) CHECK(page["data"][i]["n"] == 9 - i);
  // Other endpoints are untouched by these hooks.
  e.create("plain", Json{{"created_at", 1}});
  CHECK(e.find("plain", Json::object())["data"][0]["created_at"] == 1);
}

TEST_CASE("hooks: before hooks change or reject, after hooks change the result, error hooks recover") {
  Hooks hooks;
  std::vector<std::string> order;
  hooks.before("*", {}, [&](HookContext& h) { order.push_back("before*:" + std::string(method_name(h.method))); });
  hooks.before("users", {Method::Create, Method::Patch}, [&](HookContext& h) {
    order.push_back("before-users");
    if (h.data.is_object()) h.data["stamped"] = true;
  });
  hooks.before("users", {Method::Remove}, [](HookContext& h) {
    if (h.id && *h.id == "keep") throw mw::Error("removal of 'keep' is disabled", ErrorCode::BadRequest);
  });
  hooks.before("cached", {Method::Get}, [](HookContext& h) { h.result = Json{{"id", *h.id}, {"from", "hook"}}; });
  hooks.after("users", {Method::Get}, [&](HookContext& h) {
    order.push_back("after-users");
    h.result.erase("secret");
  });
  hooks.error("users", {Method::Get}, [&](HookContext& h) {
    order.push_back("error-users");
    REQUIRE(h.error);
    if (h.error->code() == ErrorCode::NotFound && h.id && *h.id == "ghost") {
      h.error.reset();
      h.result = Json{{"id", "ghost"}, {"placeholder", true}};
    }
  });
  hooks.error("users", {Method::Create}, [](HookContext& h) {
    // Turns any failure into a different one.
    h.error = mw::Error("create refused: " + std::string(h.error->what()), ErrorCode::BadRequest);
  });
  Entities e({}, std::move(hooks));

  auto doc = e.create("users", Json::parse(R"({"id": "keep", "secret": "s"})"));
  CHECK(doc["stamped"] == true);
  CHECK(order == strings({"before*:create", "before-users"}));

  order.clear();
  auto got = e.get("users", "keep");
  CHECK_FALSE(got.contains("secret"));
  CHECK(got["stamped"] == true);
  CHECK(order == strings({"before*:get", "after-users"}));
  CHECK(e.store->get("users", "keep")->contains("secret"));  // only the answer changed

  // A before hook rejects: nothing is removed, no event.
  const auto seq = e.store->last_event_seq();
  CHECK_ERROR_CODE(e.call(Method::Remove, "users", "keep"), BadRequest);
  CHECK(e.exists("users", "keep"));
  CHECK(e.store->last_event_seq() == seq);

  // An error hook recovers a NotFound into a result.
  order.clear();
  auto ghost = e.get("users", "ghost");
  CHECK(ghost == Json::parse(R"({"id": "ghost", "placeholder": true})"));
  CHECK(order == strings({"before*:get", "error-users"}));
  // It leaves other errors alone (and after hooks did not run for them).
  order.clear();
  CHECK_ERROR_CODE(e.get("users", "nobody"), NotFound);
  CHECK(order == strings({"before*:get", "error-users"}));

  // An error hook replaces the error.
  try {
    e.create("users", Json::parse(R"({"id": "keep"})"));
    FAIL("no error");
  } catch (const mw::Error& err) {
    CHECK(err.code() == ErrorCode::BadRequest);
    CHECK(std::string(err.what()).find("create refused") != std::string::npos);
  }

  // A before hook that sets the result skips the method.
  CHECK(e.get("cached", "c1") == Json::parse(R"({"id": "c1", "from": "hook"})"));
  CHECK_FALSE(e.exists("cached", "c1"));
}

TEST_CASE("hooks: an after hook's exception other than mw::Error is Internal, and rolls the method back") {
  Hooks hooks;
  hooks.after("users", {Method::Create}, [](HookContext&) { throw std::runtime_error("after hook broke"); });
  Entities e({}, std::move(hooks));
  CHECK_ERROR_CODE(e.create("users", Json::parse(R"({"id": "u1"})")), Internal);
  CHECK_FALSE(e.exists("users", "u1"));  // the method wrote, the after hook failed: undone
  CHECK(e.published.empty());
  CHECK(e.store->last_event_seq() == 0);
}

TEST_CASE("jobs with an entity: last_worked_on and the result written back") {
  Entities e;
  e.create("users", Json::parse(R"({"id": "u1", "name": "ann"})"), 1000);
  e.published.clear();
  e.store->begin();
  CHECK(e.service.stamp_worked_on("users", "u1", 2000));
  CHECK(e.service.write_back("users", "u1", Json::parse(R"({"score": 7, "name": "ann b"})"), 3000));
  CHECK_FALSE(e.service.stamp_worked_on("users", "nobody", 2000));
  CHECK_FALSE(e.service.write_back("users", "nobody", Json(1), 2000));
  e.store->commit();
  e.take_events();
  auto doc = e.get("users", "u1");
  CHECK(doc["last_worked_on"] == 2000);
  CHECK(doc["score"] == 7);
  CHECK(doc["name"] == "ann b");
  CHECK(doc["updated_at"] == 3000);
  REQUIRE(e.published.size() == 2);
  CHECK(e.published[0].topic == "users.patched");
  CHECK(e.published[1].topic == "users.patched");

  e.store->begin();
  CHECK(e.service.write_back("users", "u1", Json("plain"), 4000));
  e.store->commit();
  CHECK(e.get("users", "u1")["result"] == "plain");
}

TEST_CASE("event retention: by count and by age; sequence numbers are never reused") {
  EntityConfig config;
  config.event_keep_count = 3;
  config.event_keep_ms = 1'000'000;  // by count first
  Entities e(config);
  for (int i = 0; i < 10; ++i) e.create("users", Json::object(), 1000 + i);
  CHECK(e.store->last_event_seq() == 10);
  e.store->begin();
  e.service.trim_events(2000);
  e.store->commit();
  CHECK(e.store->first_event_seq() == 8);
  CHECK(e.store->last_event_seq() == 10);
  CHECK(e.store->events_after(0, 100).size() == 3);

  // By age: events older than now - keep_ms go, whatever their count.
  EntityConfig by_age;
  by_age.event_keep_count = 1000;
  by_age.event_keep_ms = 100;
  Entities a(by_age);
  for (int i = 0; i < 5; ++i) a.create("users", Json::object(), 1000 + 50 * i);  // at 1000, 1050 … 1200
  a.store->begin();
  a.service.trim_events(1250);  // keeps at_ms >= 1150
  a.store->commit();
  auto kept = a.store->events_after(0, 100);
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].at_ms == 1150);
  CHECK(kept[1].at_ms == 1200);
  CHECK(a.store->first_event_seq() == 4);

  // Everything gone: the sequence still goes on from the last one.
  a.store->begin();
  a.service.trim_events(1'000'000);
  a.store->commit();
  CHECK(a.store->events_after(0, 100).empty());
  CHECK(a.store->first_event_seq() == 0);
  CHECK(a.store->last_event_seq() == 5);
  a.create("users", Json::object(), 1'000'000);
  CHECK(a.published.back().seq == 6);

  // The replay page tells a resuming listener what it missed.
  auto page = a.call(Method::Find, "$events", std::nullopt, nullptr, Json::parse(R"({"since": 2})"));
  CHECK(page["first_seq"] == 6);
  CHECK(page["last_seq"] == 6);
  CHECK(page["events"].size() == 1);
}

TEST_CASE("a file store persists committed entities and event seqs across reopening") {
  TempDb db;
  {
    Entities e({}, {}, db.path());
    e.create("users", Json::parse(R"([{"id": "u1", "n": 1}, {"id": "u2", "n": 2}])"));
    e.call(Method::Patch, "users", "u2", Json::parse(R"({"n": 20})"));
    CHECK(e.store->description() == db.path());
    // Begun but never committed: lost when the store closes.
    e.store->begin();
    HookContext c;
    c.endpoint = "users";
    c.method = Method::Create;
    c.data = Json::parse(R"({"id": "uncommitted"})");
    e.service.call(c);
  }
  {
    Entities e({}, {}, db.path());
    CHECK(e.get("users", "u1")["n"] == 1);
    CHECK(e.get("users", "u2")["n"] == 20);
    CHECK_FALSE(e.exists("users", "uncommitted"));
    CHECK(e.store->last_event_seq() == 3);
    CHECK(e.store->events_after(0, 10).size() == 3);
    e.create("users", Json::parse(R"({"id": "u3"})"));
    CHECK(e.published.back().seq == 4);
    CHECK(e.find("users", Json::object())["total"] == 3);
  }
  {
    auto store = open_sqlite_store(db.path(), {"full"});
    CHECK(store->last_event_seq() == 4);
    // With every event trimmed away, the numbering still goes on after a reopen.
    store->begin();
    CHECK(store->trim_events(0, 0) == 4);
    store->commit();
  }
  {
    Entities e({}, {}, db.path());
    CHECK(e.store->first_event_seq() == 0);
    CHECK(e.store->last_event_seq() == 4);
    e.create("users", Json::parse(R"({"id": "u4"})"));
    CHECK(e.published.back().seq == 5);
  }
  CHECK_ERROR_CODE(open_sqlite_store(db.path(), {"sometimes"}), BadRequest);
  CHECK_THROWS_AS(open_sqlite_store("/nonexistent-dir/x/y.db"), mw::Error);
}

// Runs `sql` on a separate connection and returns column `col` of every row.
std::vector<std::string> query_column(const std::string& path, const std::string& sql, int col,
                                      const std::vector<std::string>& params = {}) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
  INFO(sqlite3_errmsg(db));
  REQUIRE(rc == SQLITE_OK);
  for (std::size_t i = 0; i < params.size(); ++i)
    sqlite3_bind_text(stmt, static_cast<int>(i + 1), params[i].c_str(), -1, SQLITE_TRANSIENT);
  std::vector<std::string> out;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
    out.emplace_back(text ? text : "");
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

TEST_CASE("when SQLite rolls the whole transaction back, the turn is abandoned: nothing of it stays, numbering goes on") {
  // RAISE(ROLLBACK) in a trigger ends the transaction from inside SQLite,
  // as a full disk or an I/O error may: the store must notice that no
  // transaction is open any more, refuse to commit the turn, and not count
  // the events it had numbered.
  TempDb db;
  Entities e({}, {}, db.path());
  e.create("users", Json::parse(R"({"id": "u1"})"));
  const auto seq = e.store->last_event_seq();
  {
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open(db.path().c_str(), &other) == SQLITE_OK);
    const char* trigger =
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON entities WHEN NEW.id = 'poison' "
        "BEGIN SELECT RAISE(ROLLBACK, 'poisoned document'); END;";
    char* error = nullptr;
    const int rc = sqlite3_exec(other, trigger, nullptr, nullptr, &error);
    INFO((error ? error : ""));
    sqlite3_free(error);
    sqlite3_close(other);
    REQUIRE(rc == SQLITE_OK);
  }

  e.store->begin();
  e.service.call(create_call("users", R"({"id": "before"})"));
  CHECK_THROWS_AS(e.service.call(create_call("users", R"({"id": "poison"})")), mw::Error);
  // A later write of the same turn is refused too: it would not be in a
  // transaction any more, and would stay whatever became of the turn.
  CHECK_THROWS_WITH(e.service.call(create_call("users", R"({"id": "later"})")), doctest::Contains("abandoned"));
  CHECK_THROWS_WITH(e.store->commit(),
                    doctest::Contains("transaction abandoned: SQLite rolled the transaction back after: poisoned document"));
  CHECK_FALSE(e.store->in_transaction());
  e.service.pending_events().clear();  // as the broker drops a failed turn's events

  CHECK_FALSE(e.exists("users", "before"));
  CHECK_FALSE(e.exists("users", "poison"));
  CHECK_FALSE(e.exists("users", "later"));
  CHECK(e.store->last_event_seq() == seq);
  // The next turn works, and its event follows the last one stored.
  e.create("users", Json::parse(R"({"id": "after"})"));
  REQUIRE_FALSE(e.published.empty());
  CHECK(e.published.back().seq == seq + 1);
  CHECK(e.exists("users", "after"));
}

TEST_CASE("a store made with an AUTOINCREMENT events table goes on from its sqlite_sequence") {
  // Stores written before mw numbered events itself; their numbering must
  // not restart even when every event was trimmed.
  TempDb db;
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.path().c_str(), &raw) == SQLITE_OK);
    const char* old_schema =
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, at_ms INTEGER NOT NULL,"
        " data BLOB NOT NULL);"
        "INSERT INTO events(topic, at_ms, data) VALUES ('a.created', 1, x'c0'), ('a.created', 2, x'c0'), ('a.created', 3, x'c0');"
        "DELETE FROM events;";
    REQUIRE(sqlite3_exec(raw, old_schema, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  Entities e({}, {}, db.path());
  CHECK(e.store->last_event_seq() == 3);
  e.create("users", Json::parse(R"({"id": "u1"})"));
  CHECK(e.published.back().seq == 4);
}

namespace {

// Runs one create both ways, on two fresh file stores at the same time:
// straight from msgpack (create_direct) and through call(). Returns whether
// the direct path took it; when it did, everything it produced must be what
// call() produced, byte for byte: the reply, the event and the stored JSON
// text (made ids, which differ between the two services, masked).
bool direct_matches_call(const std::string& body) {
  TempDb direct_db, general_db;
  Entities direct({}, {}, direct_db.path()), general({}, {}, general_db.path());
  direct.store->begin();
  const auto reply = direct.service.create_direct("things", body, 1234);
  direct.store->commit();
  if (!reply) {
    CHECK(direct.service.pending_events().empty());  // nothing was written
    CHECK(direct.find("things", Json::object())["total"] == 0);
    return false;
  }
  HookContext c;
  c.endpoint = "things";
  c.method = Method::Create;
  c.data = mw::Payload::ordered_json_of(body)["data"];
  c.now_ms = 1234;
  general.store->begin();
  const std::string expected = general.service.call(std::move(c));
  general.store->commit();
  REQUIRE(direct.service.pending_events().size() == 1);
  REQUIRE(general.service.pending_events().size() == 1);
  CHECK(direct.service.pending_events()[0].topic == "things.created");
  const std::string direct_event = direct.service.pending_events()[0].data;
  const std::string general_event = general.service.pending_events()[0].data;
  // nlohmann's own decoder, independent of the code under test, for the ids.
  const std::string direct_id = Json::from_msgpack(*reply)["id"].get<std::string>();
  const std::string general_id = Json::from_msgpack(expected)["id"].get<std::string>();
  const auto stored = [](const TempDb& db, const std::string& id) {
    const auto docs = query_column(db.path(), "SELECT doc FROM entities WHERE id = ?1", 0, {id});
    REQUIRE(docs.size() == 1);
    return docs[0];
  };
  const auto masked = [](std::string bytes, const std::string& id) {
    for (auto at = bytes.find(id); at != std::string::npos; at = bytes.find(id, at)) bytes.replace(at, id.size(), "#");
    return bytes;
  };
  const Json data = mw::Payload::ordered_json_of(body)["data"];
  if (data.contains("id") && !data["id"].is_null()) CHECK(direct_id == general_id);
  CHECK(masked(*reply, direct_id) == masked(expected, general_id));
  CHECK(masked(direct_event, direct_id) == masked(general_event, general_id));
  CHECK(masked(stored(direct_db, direct_id), direct_id) == masked(stored(general_db, general_id), general_id));
  return true;
}

std::string body_of(const Json& data) { return mw::Payload::from_json(Json{{"data", data}}).bytes(); }

// A body whose data map is written by `fill` (count entries) with msgpack-c's packer.
template <typename Fill>
std::string packed_body(std::uint32_t count, Fill fill) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_map(1);
  p.pack(std::string("data"));
  p.pack_map(count);
  fill(p);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace

TEST_CASE("a create straight from msgpack stores, answers and announces exactly what call() does") {
  // Taken directly: ordinary documents of every JSON type.
  for (const char* data : {
           R"({"id": "t1", "name": "Ada", "n": 1, "big": 18446744073709551615, "neg": -42, "ok": true, "none": null})",
           R"({"id": 7, "price": 1.5, "whole": 3.0, "tiny": 1e-300, "huge": 1e300, "minus_zero": -0.0})",
           R"({"id": 8, "a": 1e5, "b": 1e-4, "c": 1.7e12, "d": 1234567890123456.0, "e": 0.1, "f": 1e-5, "g": 1e15})",
           R"({"id": -3, "nested": {"a": [1, {"b": "c"}, []], "e": {}}, "list": ["x", 2, null]})",
           R"({"text": "h\u00e9llo \ud83d\ude00 \"quoted\" back\\slash\n\ttab \u0001 \u001f \u007f"})",
           R"({"id": null, "created_at": 5, "updated_at": 6, "after": "stamps"})",
           R"({"updated_at": 1, "name": "only updated_at given"})", R"({})"}) {
    CAPTURE(data);
    CHECK(direct_matches_call(body_of(Json::parse(data))));
  }
  // A float32 is widened to float64 on both paths.
  CHECK(direct_matches_call(packed_body(2, [](auto& p) {
    p.pack(std::string("id"));
    p.pack(std::string("f32"));
    p.pack(std::string("x"));
    p.pack_float(0.1f);
  })));

  // Left to call(): anything it would write differently or refuse.
  const auto general_only = [](const std::string& body) { CHECK_FALSE(direct_matches_call(body)); };
  general_only(body_of(Json::array({Json{{"id", "a"}}})));                   // an array of documents
  general_only(body_of(Json{{"id", ""}}));                                  // an id it rejects
  general_only(body_of(Json{{"id", 1.5}}));
  general_only(body_of(Json{{"id", std::string(257, 'x')}}));
  general_only(packed_body(1, [](auto& p) {                                 // an unsigned id past int64
    p.pack(std::string("id"));
    p.pack(std::numeric_limits<std::uint64_t>::max());
  }));
  general_only(packed_body(2, [](auto& p) {                                 // a key given twice
    p.pack(std::string("k"));
    p.pack(1);
    p.pack(std::string("k"));
    p.pack(2);
  }));
  general_only(packed_body(1, [](auto& p) {                                 // a key that is not a string
    p.pack(1);
    p.pack(2);
  }));
  general_only(packed_body(1, [](auto& p) {                                 // binary
    p.pack(std::string("b"));
    p.pack_bin(2);
    p.pack_bin_body("\x01\x02", 2);
  }));
  general_only(packed_body(1, [](auto& p) {                                 // a string that is not UTF-8
    p.pack(std::string("s"));
    p.pack(std::string("\xff\xfe"));
  }));
  general_only(packed_body(1, [](auto& p) {                                 // a UTF-16 surrogate in UTF-8
    p.pack(std::string("s"));
    p.pack(std::string("\xed\xa0\x80"));
  }));
  general_only(body_of(Json{{"wide", Json::parse(R"({"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,
      "k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,
      "A":27,"B":28,"C":29,"D":30,"E":31,"F":32,"G":33})")}}));
  general_only(mw::Payload::from_json(Json{{"query", Json::object()}}).bytes());  // no data
  general_only(mw::Payload::from_json(Json{{"data", {{"id", "q"}}}, {"query", {{"a", 1}}}}).bytes());  // more beside it
  CHECK(direct_matches_call(mw::Payload::from_json(Json{{"data", {{"id", "q"}}}, {"query", nullptr}}).bytes()));
  general_only("\xc1");                                                     // not msgpack

  // Hooks on the endpoint, or an endpoint it may not serve: call().
  Hooks hooks;
  hooks.before("things", {Method::Create}, [](HookContext&) {});
  Entities hooked({}, hooks);
  hooked.store->begin();
  CHECK_FALSE(hooked.service.create_direct("things", body_of(Json{{"id", "h"}}), 1));
  CHECK(hooked.service.create_direct("others", body_of(Json{{"id", "h"}}), 1));
  hooked.store->commit();
  EntityConfig only;
  only.endpoints = {"allowed"};
  Entities limited(only);
  limited.store->begin();
  CHECK_FALSE(limited.service.create_direct("things", body_of(Json{{"id", "x"}}), 1));
  CHECK_FALSE(limited.service.create_direct("bad name", body_of(Json{{"id", "x"}}), 1));

  // An id that exists is a Conflict, as from call().
  CHECK(limited.service.create_direct("allowed", body_of(Json{{"id", "x"}}), 1));
  CHECK_ERROR_CODE(limited.service.create_direct("allowed", body_of(Json{{"id", "x"}}), 2), Conflict);
  limited.store->commit();
}

TEST_CASE("--index: ensure_index creates an expression index that an equality find uses") {
  TempDb db;
  EntityConfig config;
  config.indexes = {"users.email", "users.address.city"};
  Entities e(config, {}, db.path());
  Json batch = Json::array();
  for (int i = 0; i < 50; ++i) batch.push_back({{"email", "u" + std::to_string(i) + "@x"}});
  e.create("users", batch);
  CHECK(e.find_ids("users", R"({"email": "u7@x"})").size() == 1);

  const auto indexes = query_column(db.path(), "SELECT name FROM sqlite_master WHERE type = 'index'", 0);
  CHECK(std::find(indexes.begin(), indexes.end(), "ix_users_email") != indexes.end());
  CHECK(std::find(indexes.begin(), indexes.end(), "ix_users_address_city") != indexes.end());

  // The store's own find SQL for {"email": …}, planned on another connection.
  const auto q = translate_query(Json::parse(R"({"email": "u7@x"})"), {});
  for (const std::string& sql : {"SELECT count(*) FROM entities WHERE endpoint = ? AND (" + q.where + ")",
                                "SELECT doc FROM entities WHERE endpoint = ? AND (" + q.where + ")" + q.order_by +
                                    " LIMIT 10 OFFSET 0"}) {
    CAPTURE(sql);
    const auto plan = query_column(db.path(), "EXPLAIN QUERY PLAN " + sql, 3, {"users", "u7@x"});
    std::string joined;
    for (const auto& row : plan) joined += row + "\n";
    CAPTURE(joined);
    CHECK(joined.find("ix_users_email") != std::string::npos);
  }

  // Idempotent: a second service on the same file creates nothing new and fails not.
  EntityService again(*e.store, {}, config);
  CHECK(query_column(db.path(), "SELECT name FROM sqlite_master WHERE type = 'index'", 0).size() == indexes.size());

  // Bad index specs are refused.
  auto store = open_sqlite_store(":memory:");
  for (const char* spec : {"users", "users.", "users.a b", "bad name.x", "users.x'); DROP TABLE entities;--"}) {
    CAPTURE(spec);
    EntityConfig bad;
    bad.indexes = {spec};
    CHECK_ERROR_CODE(EntityService(*store, {}, bad), BadRequest);
  }
}

TEST_CASE("method names") {
  for (auto m : {Method::Create, Method::Get, Method::Find, Method::Update, Method::Patch, Method::Remove})
    CHECK(mw::broker::parse_method(mw::broker::method_name(m)) == m);
  CHECK_FALSE(mw::broker::parse_method("delete"));
  CHECK_FALSE(mw::broker::parse_method(""));
  CHECK_FALSE(mw::broker::parse_method("Create"));
}

}  // namespace
