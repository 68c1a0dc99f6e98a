#include "mw/broker/entity_service.hpp"

#include <cstdio>
#include <random>

#include <msgpack.hpp>

#include "direct_document.hpp"
#include "mw/json_objects.hpp"
#include "mw/payload.hpp"
#include "mw/protocol.hpp"

namespace mw::broker {
namespace {

constexpr std::size_t kMaxIdBytes = 256;

[[noreturn]] void fail(ErrorCode code, const std::string& message) { throw Error(message, code); }

std::string to_msgpack(const Json& value) { return Payload::from_json(value).take_bytes(); }

// Ids given by clients may be strings or integers; stored as strings.
std::string id_of(const Json& value) {
  if (value.is_string()) {
    auto id = value.get<std::string>();
    if (id.empty() || id.size() > kMaxIdBytes) fail(ErrorCode::BadRequest, "id must be 1..256 bytes");
    return id;
  }
  if (value.is_number_integer()) return std::to_string(value.get<std::int64_t>());
  fail(ErrorCode::BadRequest, "id must be a string or an integer");
}

// $select keeps the named fields (and the id); without it, all of them.
Json select_fields(Json doc, const std::optional<std::vector<std::string>>& select) {
  if (!select) return doc;
  const auto& fields = *select;
  Json out = Json::object();
  ObjectWriter from(doc), to(out);
  if (from.contains("id")) to.set("id", std::move(from.slot("id")));
  for (const auto& f : fields) {
    const std::string top = f.substr(0, f.find('.'));
    if (from.contains(top) && !to.contains(top)) to.set(top, std::move(from.slot(top)));
  }
  return out;
}

// The stored form of a created or updated document: its id first, then
// the fields of `data` in their order (but its id), in linear time.
Json document_of(const std::string& id, Json& data) {
  Json doc = Json::object();
  doc.get_ref<Json::object_t&>().reserve(data.size() + 3);
  ObjectWriter out(doc);
  out.set("id", id);
  for (auto& [key, value] : data.items())
    if (key != "id") out.set(key, std::move(value));
  return doc;
}

}  // namespace

EntityService::EntityService(Store& store, Hooks hooks, EntityConfig config)
    : store_(store), hooks_(std::move(hooks)), config_(std::move(config)) {
  for (const auto& e : config_.endpoints) {
    check_endpoint_name(e);
    allowed_.insert(e);
  }
  for (const auto& spec : config_.indexes) {
    const auto dot = spec.find('.');
    if (dot == std::string::npos) fail(ErrorCode::BadRequest, "index '" + spec + "' must be endpoint.field");
    const std::string endpoint = spec.substr(0, dot), field = spec.substr(dot + 1);
    check_endpoint_name(endpoint);
    if (!is_valid_field_name(field)) fail(ErrorCode::BadRequest, "index '" + spec + "': bad field name");
    // Most likely a typo: an index nobody could ever query.
    if (!allowed_.empty() && !allowed_.count(endpoint))
      fail(ErrorCode::BadRequest, "index '" + spec + "': endpoint '" + endpoint + "' is not one of --endpoints");
    store_.ensure_index(endpoint, field);
  }
  std::random_device seed;
  id_counter_ = (static_cast<std::uint64_t>(seed()) << 20) & 0xffffffffffULL;
}

void EntityService::check_endpoint_name(std::string_view endpoint) {
  if (auto problem = endpoint_name_problem(endpoint); !problem.empty()) fail(ErrorCode::BadRequest, problem);
}

void EntityService::check_allowed(std::string_view endpoint) const {
  check_endpoint_name(endpoint);
  if (!allowed_.empty() && !allowed_.count(std::string(endpoint)))
    fail(ErrorCode::NotFound, "no endpoint '" + std::string(endpoint) + "' (this broker serves only its --endpoints)");
}

std::string EntityService::new_id(std::int64_t now_ms) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%011llx%08llx", static_cast<unsigned long long>(now_ms),
                static_cast<unsigned long long>(++id_counter_ & 0xffffffffULL));
  return buffer;
}

void EntityService::record(const std::string& endpoint, std::string_view event, const Json& doc, std::int64_t now_ms) {
  record_msgpack(endpoint, event, to_msgpack(doc), now_ms);
}

void EntityService::record_msgpack(std::string_view endpoint, std::string_view event, std::string data,
                                   std::int64_t now_ms) {
  std::string topic;
  topic.reserve(endpoint.size() + 1 + event.size());
  topic.append(endpoint).append(1, '.').append(event);
  const auto seq = store_.append_event(topic, now_ms, data);
  ++writes_;
  pending_.push_back({seq, std::move(topic), std::move(data)});
}

std::optional<std::string> EntityService::create_direct(std::string_view endpoint, std::string_view body,
                                                        std::int64_t now_ms) {
  // Whatever this path does not take, call() does, with its errors.
  if (hooks_.any_for(endpoint, Method::Create) || endpoint == kEventsEndpoint) return std::nullopt;
  try {
    check_allowed(endpoint);
  } catch (const Error&) {
    return std::nullopt;
  }
  zone_.clear();
  msgpack::object request;
  try {
    request = Payload::unpack_into(zone_, body);
  } catch (const Error&) {
    return std::nullopt;
  }
  if (request.type != msgpack::type::MAP) return std::nullopt;
  // {"data": …}, with at most a nil "query" beside it: call() decodes every
  // key of the body, and may refuse what is there.
  const msgpack::object* data = nullptr;
  for (std::uint32_t i = 0; i < request.via.map.size; ++i) {
    const auto& kv = request.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) return std::nullopt;
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    if (key == "data" && !data) data = &kv.val;
    else if (!(key == "query" && kv.val.type == msgpack::type::NIL)) return std::nullopt;
  }
  if (!data) return std::nullopt;
  auto doc = write_direct_document(*data, [&] { return new_id(now_ms); }, now_ms);
  if (!doc) return std::nullopt;

  if (!store_.insert_json(endpoint, doc->id, doc->json))
    fail(ErrorCode::Conflict, std::string(endpoint) + " '" + doc->id + "' already exists");
  try {
    record_msgpack(endpoint, "created", std::move(doc->msgpack), now_ms);
    return pending_.back().data;
  } catch (...) {
    // As in call(): the row landed, its event or the answer did not.
    store_.abandon("create on an endpoint failed halfway");
    throw;
  }
}

std::string EntityService::call(HookContext c) {
  if (c.endpoint == kEventsEndpoint) return replay(c);
  const std::size_t events_before = pending_.size();
  const std::uint64_t writes_before = writes_;
  bool in_unit = false;
  try {
    check_allowed(c.endpoint);
    try {
      hooks_.run_before(c);
      if (needs_unit(c)) {
        store_.begin_unit();
        in_unit = true;
      }
      if (c.result.is_null()) c.result = run_method(c);
      hooks_.run_after(c);
    } catch (const Error& e) {
      c.error = e;
    } catch (const std::exception& e) {
      c.error = Error(std::string("internal error: ") + e.what(), ErrorCode::Internal);
    }
    if (c.error) {
      hooks_.run_error(c);
      if (c.error) throw *c.error;
    }
    if (in_unit) store_.commit_unit();
    // A write on one document with no after hook returns that document,
    // which its event has in msgpack already.
    if (!in_unit && c.method != Method::Get && c.method != Method::Find && pending_.size() == events_before + 1)
      return pending_.back().data;
  } catch (...) {
    if (in_unit) {
      store_.rollback_unit();
    } else if (writes_ != writes_before) {
      // Only a failing store gets here (see needs_unit): the call's first
      // write landed and a later one did not. Nothing can undo the first
      // alone, so the turn's transaction is given up as a whole.
      // The reason is best effort: out of memory may be why it failed.
      std::string why;
      try {
        why = std::string(method_name(c.method)) + " on " + c.endpoint + " failed halfway";
        try {
          throw;
        } catch (const std::exception& e) {
          why = why + ": " + e.what();
        } catch (...) {
        }
      } catch (...) {
      }
      store_.abandon(why.empty() ? std::string_view("an entity call failed halfway") : std::string_view(why));
    }
    pending_.resize(events_before);
    throw;
  }
  return to_msgpack(c.result);
}

// A unit (savepoint) lets a call that fails after writing undo its own
// writes, but SQLite copies every page the call touches into it first,
// which cost more than the insert itself. A call needs one when it writes
// several documents, or when an after or error hook may reject a write
// that has landed. A call on one document without such hooks writes the
// document, then its event; its own checks all come before the first
// write, so only a failing store can stop it halfway (see call()).
bool EntityService::needs_unit(const HookContext& c) const {
  if (hooks_.acts_after_method(c)) return true;
  switch (c.method) {
    case Method::Get:
    case Method::Find: return false;
    case Method::Create: return !c.data.is_object();
    case Method::Update:
    case Method::Patch:
    case Method::Remove: return !c.id.has_value();
  }
  return true;
}

Json EntityService::run_method(HookContext& c) {
  const bool by_id = c.id.has_value();
  // An id no document can have is a bad request, as it is on create.
  if (by_id && (c.id->empty() || c.id->size() > kMaxIdBytes)) fail(ErrorCode::BadRequest, "id must be 1..256 bytes");
  const auto need_id = [&] {
    if (!by_id) fail(ErrorCode::BadRequest, std::string(method_name(c.method)) + " needs an id");
  };
  switch (c.method) {
    case Method::Create: {
      if (c.data.is_array()) {
        if (c.data.size() > config_.max_multi)
          fail(ErrorCode::BadRequest, "create takes at most " + std::to_string(config_.max_multi) + " objects");
        Json out = Json::array();
        for (auto& item : c.data) out.push_back(create_one(c.endpoint, item, c.now_ms));
        return out;
      }
      return create_one(c.endpoint, c.data, c.now_ms);
    }
    case Method::Get: {
      need_id();
      auto doc = store_.get(c.endpoint, *c.id);
      if (!doc) fail(ErrorCode::NotFound, "no " + c.endpoint + " with id '" + *c.id + "'");
      return *doc;
    }
    case Method::Find: {
      const auto query = translate_query(c.query, config_.page);
      auto found = store_.find(c.endpoint, query);
      Json data = Json::array();
      for (auto& doc : found.docs) data.push_back(select_fields(std::move(doc), query.select));
      Json result = Json::object();
      result["total"] = found.total;
      result["limit"] = query.limit;
      result["skip"] = query.skip;
      result["data"] = std::move(data);
      return result;
    }
    case Method::Update:
    case Method::Patch:
    case Method::Remove: {
      if (c.method != Method::Remove && !c.data.is_object())
        fail(ErrorCode::BadRequest, std::string(method_name(c.method)) + " takes an object as data");
      auto apply = [&](const std::string& id) {
        if (c.method == Method::Update) return update_one(c.endpoint, id, c.data, c.now_ms);
        if (c.method == Method::Patch) return patch_one(c.endpoint, id, c.data, c.now_ms);
        return remove_one(c.endpoint, id, c.now_ms);
      };
      if (by_id) return apply(*c.id);
      if (!c.query.is_object())
        fail(ErrorCode::BadRequest, std::string(method_name(c.method)) + " needs an id or a query");
      Json out = Json::array();
      for (const auto& id : ids_matching(c.endpoint, c.query)) out.push_back(apply(id));
      return out;
    }
  }
  fail(ErrorCode::BadRequest, "unknown method");
}

Json EntityService::create_one(const std::string& endpoint, Json data, std::int64_t now_ms) {
  if (!data.is_object()) fail(ErrorCode::BadRequest, "create takes an object, or an array of objects");
  const auto given_id = data.find("id");
  const std::string id = given_id != data.end() && !given_id->is_null() ? id_of(*given_id) : new_id(now_ms);
  Json doc = document_of(id, data);
  ObjectWriter out(doc);
  if (!out.contains("created_at")) out.set("created_at", now_ms);
  out.set("updated_at", now_ms);
  if (!store_.insert(endpoint, id, doc)) fail(ErrorCode::Conflict, endpoint + " '" + id + "' already exists");
  ++writes_;
  record(endpoint, "created", doc, now_ms);
  return doc;
}

Json EntityService::update_one(const std::string& endpoint, const std::string& id, Json data, std::int64_t now_ms) {
  auto old = store_.get(endpoint, id);
  if (!old) fail(ErrorCode::NotFound, "no " + endpoint + " with id '" + id + "'");
  Json doc = document_of(id, data);
  ObjectWriter out(doc);
  const auto created_at = old->find("created_at");
  out.set("created_at", created_at != old->end() ? std::move(*created_at) : Json(now_ms));
  out.set("updated_at", now_ms);
  store_.replace(endpoint, id, doc);
  ++writes_;
  record(endpoint, "updated", doc, now_ms);
  return doc;
}

Json EntityService::patch_one(const std::string& endpoint, const std::string& id, const Json& changes,
                              std::int64_t now_ms) {
  auto doc = store_.get(endpoint, id);
  if (!doc) fail(ErrorCode::NotFound, "no " + endpoint + " with id '" + id + "'");
  ObjectWriter out(*doc);
  for (const auto& [key, value] : changes.items())
    if (key != "id" && key != "created_at") out.set(key, value);
  out.set("updated_at", now_ms);
  store_.replace(endpoint, id, *doc);
  ++writes_;
  record(endpoint, "patched", *doc, now_ms);
  return *doc;
}

Json EntityService::remove_one(const std::string& endpoint, const std::string& id, std::int64_t now_ms) {
  auto doc = store_.get(endpoint, id);
  if (!doc) fail(ErrorCode::NotFound, "no " + endpoint + " with id '" + id + "'");
  store_.remove(endpoint, id);
  ++writes_;
  record(endpoint, "removed", *doc, now_ms);
  return *doc;
}

std::vector<std::string> EntityService::ids_matching(const std::string& endpoint, const Json& query) {
  Json bounded = query;
  bounded["$limit"] = config_.max_multi + 1;
  bounded.erase("$skip");
  bounded.erase("$select");
  PageLimits limits{config_.max_multi + 1, config_.max_multi + 1};
  auto found = store_.find(endpoint, translate_query(bounded, limits));
  if (found.total > config_.max_multi)
    fail(ErrorCode::BadRequest, "query matches " + std::to_string(found.total) + " entities; calls by query touch at most " +
                                    std::to_string(config_.max_multi) + " (narrow the query)");
  std::vector<std::string> ids;
  for (const auto& doc : found.docs) ids.push_back(doc["id"].get<std::string>());
  return ids;
}

bool EntityService::stamp_worked_on(std::string_view endpoint, std::string_view id, std::int64_t now_ms) {
  Json changes = Json::object();
  changes["last_worked_on"] = now_ms;
  const std::string e(endpoint), i(id);
  if (!store_.get(e, i)) return false;
  patch_one(e, i, changes, now_ms);
  return true;
}

bool EntityService::write_back(std::string_view endpoint, std::string_view id, const Json& result, std::int64_t now_ms) {
  const std::string e(endpoint), i(id);
  if (!store_.get(e, i)) return false;
  Json changes = Json::object();
  if (result.is_object()) {
    changes = result;
  } else {
    changes["result"] = result;
  }
  patch_one(e, i, changes, now_ms);
  return true;
}

bool EntityService::create_record(std::string_view endpoint, Json doc, std::int64_t now_ms) {
  try {
    in_unit([&] { create_one(std::string(endpoint), std::move(doc), now_ms); });
    return true;
  } catch (const Error& e) {
    if (e.code() == ErrorCode::Conflict) return false;
    throw;
  }
}

void EntityService::trim_events(std::int64_t now_ms) {
  store_.trim_events(config_.event_keep_count, now_ms - config_.event_keep_ms);
}

std::string EntityService::replay(const HookContext& c) {
  // {"since": N, "limit": L} → {"first_seq", "last_seq", "events": [[seq, topic, at_ms, data], …]}.
  // `data` is spliced in as the stored msgpack, not re-encoded.
  if (c.method != Method::Find) fail(ErrorCode::BadRequest, "$events serves find only");
  std::uint64_t since = 0;
  std::size_t limit = config_.replay_batch;
  if (c.query.is_object()) {
    if (auto it = c.query.find("since"); it != c.query.end()) {
      if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0))
        fail(ErrorCode::BadRequest, "since must be a non-negative integer");
      since = it->get<std::uint64_t>();
    }
    if (auto it = c.query.find("limit"); it != c.query.end() && it->is_number_unsigned())
      limit = std::min<std::size_t>(it->get<std::size_t>(), config_.replay_batch);
  }
  const auto events = store_.events_after(since, limit);
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> packer(out);
  packer.pack_map(3);
  packer.pack(std::string("first_seq"));
  packer.pack(store_.first_event_seq());
  packer.pack(std::string("last_seq"));
  packer.pack(store_.last_event_seq());
  packer.pack(std::string("events"));
  packer.pack_array(static_cast<std::uint32_t>(events.size()));
  for (const auto& e : events) {
    packer.pack_array(4);
    packer.pack(e.seq);
    packer.pack(e.topic);
    packer.pack(e.at_ms);
    out.write(e.data.data(), e.data.size());
  }
  return std::string(out.data(), out.size());
}

}  // namespace mw::broker
