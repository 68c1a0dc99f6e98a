// mw/broker/entity_service.hpp — Feathers-style endpoints on the store.
//
// Every endpoint holds JSON documents with a string `id` and `created_at` /
// `updated_at` (ms since the epoch). Methods:
//
//   create  data: an object, or an array of them (each gets an id unless it has one)
//   get     id
//   find    query (mw/broker/query.hpp) → {total, limit, skip, data}
//   update  id or query; data replaces the document (id and created_at kept)
//   patch   id or query; data's fields are merged into the document
//   remove  id or query → the removed document(s)
//
// Calls by query touch at most `max_multi` documents, else fail BadRequest.
// Every change appends an event (`<endpoint>.created|updated|patched|
// removed`, data: the document) to the store; the caller publishes them
// after committing (changes()).
//
// Errors are mw::Error with a code: NotFound, BadRequest, Conflict, Internal.
//
// Thread safety: none; the broker thread owns the service.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <msgpack.hpp>

#include "mw/broker/hooks.hpp"
#include "mw/broker/store.hpp"

namespace mw::broker {

// The reserved endpoint for replaying stored events (listeners resuming).
inline constexpr std::string_view kEventsEndpoint = "$events";
// The reserved endpoint a listener asks to publish a marker on its own topic.
inline constexpr std::string_view kMarkEndpoint = "$mark";
inline constexpr std::string_view kMarkTopicPrefix = "$mw.mark.";
// kFlowsEndpoint (mw/protocol.hpp) is served by BrokerCore, not by the store.

struct EntityConfig {
  std::vector<std::string> endpoints;  // the only endpoints allowed; empty = any, created on first use
  PageLimits page;
  std::size_t max_multi = 1000;
  std::vector<std::string> indexes;    // "endpoint.field", indexed at start
  std::uint64_t event_keep_count = 1'000'000;
  std::int64_t event_keep_ms = 7LL * 24 * 3600 * 1000;
  std::size_t replay_batch = 1000;     // events per $events reply
};

// A stored event waiting to be published once its transaction commits.
struct PendingEvent {
  std::uint64_t seq = 0;
  std::string topic;
  std::string data;  // msgpack
};

class EntityService {
 public:
  // Creates the configured indexes. Throws mw::Error for a bad endpoint or
  // field name in `config`.
  EntityService(Store& store, Hooks hooks, EntityConfig config);

  // Runs one call (hooks included) inside the store's open transaction, and
  // returns the result as msgpack. REQUIRES: store.begin(). Throws
  // mw::Error (after the error hooks) on failure; nothing it wrote remains
  // and no event of it is pending. Should the store itself fail between two
  // writes of a call on one document, the whole transaction is abandoned
  // (Store::abandon) and the turn fails, rather than keep half a call.
  std::string call(HookContext context);

  // A create on `endpoint` that no hook sees, straight from the CALL's
  // msgpack `body` ({"data": {…}}) to the store: the same document, event
  // and result as call(), without JSON objects in between. Returns nullopt,
  // having written nothing, when the call needs call() (hooks, arrays,
  // unusual values or any error but a conflict). Throws mw::Error (Conflict when
  // the id exists). REQUIRES: store.begin().
  std::optional<std::string> create_direct(std::string_view endpoint, std::string_view body, std::int64_t now_ms);

  // Jobs that carry an entity: stamps `last_worked_on` when a worker takes
  // the job, and merges the flow's result into the entity when it ends (a
  // map result is merged field by field, any other value lands in
  // `result`). Both are patches with a `patched` event. Return false when
  // the entity does not exist (nothing is written). REQUIRES: store.begin().
  bool stamp_worked_on(std::string_view endpoint, std::string_view id, std::int64_t now_ms);
  bool write_back(std::string_view endpoint, std::string_view id, const Json& result, std::int64_t now_ms);

  // The broker's own records (dead jobs): creates `doc` in `endpoint` as
  // one unit of the open transaction, without hooks, with its `created`
  // event. Returns false (writing nothing) when its id exists already.
  // REQUIRES: store.begin().
  bool create_record(std::string_view endpoint, Json doc, std::int64_t now_ms);

  // Runs `write` as one unit (a savepoint) of the store's transaction,
  // which it opens if need be: the writes and the change events it queued
  // land together or not at all. Rethrows what `write` throws.
  template <typename Write>
  void in_unit(Write&& write) {
    const std::size_t events_before = pending_.size();
    store_.begin();
    store_.begin_unit();
    try {
      write();
      store_.commit_unit();
    } catch (...) {
      store_.rollback_unit();
      pending_.resize(events_before);
      throw;
    }
  }

  // Events appended since the last clear, in sequence order.
  std::vector<PendingEvent>& pending_events() noexcept { return pending_; }

  // Applies the retention (count and age) to stored events.
  void trim_events(std::int64_t now_ms);

  // Checks an endpoint name: 1..64 of [A-Za-z0-9_-]. Throws BadRequest.
  static void check_endpoint_name(std::string_view endpoint);

 private:
  bool needs_unit(const HookContext& c) const;
  Json run_method(HookContext& c);
  Json create_one(const std::string& endpoint, Json data, std::int64_t now_ms);
  Json patch_one(const std::string& endpoint, const std::string& id, const Json& changes, std::int64_t now_ms);
  Json update_one(const std::string& endpoint, const std::string& id, Json data, std::int64_t now_ms);
  Json remove_one(const std::string& endpoint, const std::string& id, std::int64_t now_ms);
  std::vector<std::string> ids_matching(const std::string& endpoint, const Json& query);
  std::string replay(const HookContext& c);
  void check_allowed(std::string_view endpoint) const;
  void record(const std::string& endpoint, std::string_view event, const Json& doc, std::int64_t now_ms);
  void record_msgpack(std::string_view endpoint, std::string_view event, std::string data, std::int64_t now_ms);
  std::string new_id(std::int64_t now_ms);

  Store& store_;
  Hooks hooks_;
  EntityConfig config_;
  std::unordered_set<std::string> allowed_;
  std::vector<PendingEvent> pending_;
  std::uint64_t id_counter_ = 0;
  std::uint64_t writes_ = 0;  // store writes made, to tell whether a failed call wrote anything
  msgpack::zone zone_;        // create_direct's decoding, reused
};

}  // namespace mw::broker
