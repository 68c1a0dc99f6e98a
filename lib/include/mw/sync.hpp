// mw/sync.hpp — find and fix what went wrong between mw and the outside.
//
// The seed's Sync. Every `interval`, a Sync takes the entities that are due
// (by default: those of `entity_endpoint` whose `last_sync_at` is older than
// the interval, or that never had one), runs every check on each, and for
// the ones that fail calls fix_entity() when `fix_errors` is on. It writes
// what failed and what was fixed to the sync endpoint, stamps the entity's
// `last_sync_at`, and can replay dead jobs (mw/dead_jobs.hpp) of the types
// listed in `replay_types` whose payload now passes the checks — the seed's
// "retry an API call once the API server is back".
//
// The seed's SampleSync, by subclassing (examples/sample_sync.cpp):
//
//   std::optional<std::string> check_if_number_is_50(const nlohmann::ordered_json& n) {
//     if (n == 50) return std::nullopt;
//     return "The number " + n.dump() + " value isn't 50";
//   }
//   mw::SyncOptions options;
//   options.checks = {check_if_number_is_50};
//   options.entity_endpoint = "sampleentity";
//   options.fix_errors = true;
//   options.name = "data";                 // sync_endpoint "sync", interval 30 s: the defaults
//
//   class SampleSync : public mw::Sync {
//    public:
//     using Sync::Sync;
//     std::vector<nlohmann::ordered_json> find_entities_to_sync() override { return {10, 20, 30, 40}; }
//     nlohmann::ordered_json fix_entity(const nlohmann::ordered_json& e) override { return e; }
//   };
//   SampleSync sync(options);
//   sync.run(stop);                        // or: auto report = sync.run_once();
//
// or by callbacks: sync.find_with(...).fix_with(...).
//
// What one run writes, per entity that failed a check (id from the broker):
//
//   {"kind": "sync", "name": "data", "entity": "sampleentity/e1", "failed": ["…"],
//    "fixed": true, "at": <ms since epoch>}
//
// ("fix_error": "…" instead when the fix threw; "value": <the entity> instead
// of "entity" when it has no "id"). `kind` keeps these apart from the dead-job
// records (kind "dead") of the same endpoint. Entities that pass every check
// get no record. An entity that is an object with an "id" is then patched
// with {"last_sync_at": <ms>} plus, when it was fixed and fix_entity()
// returned an object, that object's fields (not id, created_at, updated_at).
//
// Not thread-safe: one Sync per thread. Move-only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mw/client.hpp"
#include "mw/dead_jobs.hpp"
#include "mw/options.hpp"
#include "mw/stop_signal.hpp"

namespace mw {

// Returns why `entity` is wrong, or nullopt when it is right. A check that
// throws fails with the exception's message.
using SyncCheck = std::function<std::optional<std::string>(const nlohmann::ordered_json& entity)>;

struct SyncOptions {
  std::string broker = default_broker_address();
  std::chrono::milliseconds timeout{5000};  // per call to the broker
  // Where the entities live: what the default find_entities_to_sync() reads
  // and where `last_sync_at` is stamped. Empty: nothing is stamped, and
  // find_entities_to_sync() must be overridden or registered.
  std::string entity_endpoint;
  std::string sync_endpoint = std::string(kDefaultSyncEndpoint);  // records go here
  std::string name;                 // in logs and records; empty = entity_endpoint
  std::vector<SyncCheck> checks;    // an entity fails when any of them fails
  bool fix_errors = false;          // call fix_entity() on entities that fail
  std::chrono::milliseconds interval{30000};  // between runs, and what "overdue" means
  // Dead jobs of these types whose payload passes every check are replayed
  // (retry_dead_job) on each run; empty = none.
  std::vector<std::string> replay_types;
  std::size_t replay_limit = 100;   // dead records looked at per type per run
  std::size_t max_entities = 10000; // the default find takes at most this many per run
  // The clock, in ms since the epoch; empty = the system clock. Tests set it.
  std::function<std::int64_t()> now_ms;
  // When set, run_once() stops waiting for the broker the moment this
  // fires, and throws mw::Interrupted (run() watches its own `stop` so).
  // Not owned: it must outlive the Sync.
  const StopSignal* stop = nullptr;
};

// What one run did.
struct SyncReport {
  std::size_t checked = 0;   // entities the checks ran on
  std::size_t failed = 0;    // of those, entities that failed a check
  std::size_t fixed = 0;     // of those, entities fix_entity() returned for
  std::size_t replayed = 0;  // dead jobs submitted again
  // Problems that did not stop the run (a fix or a write that failed, an
  // entity removed meanwhile), one line each.
  std::vector<std::string> errors;
};

class Sync {
 public:
  using FindEntities = std::function<std::vector<nlohmann::ordered_json>()>;
  using FixEntity = std::function<nlohmann::ordered_json(const nlohmann::ordered_json& entity)>;

  // Connects in the background; never blocks. Throws mw::Error(BadRequest)
  // for a zero interval or an empty sync endpoint.
  explicit Sync(SyncOptions options);
  virtual ~Sync();
  Sync(Sync&&) noexcept;
  Sync& operator=(Sync&&) noexcept;

  // One pass: find, check, fix, record, stamp, replay. Throws mw::Error when
  // the broker cannot be reached (code Unavailable) or refuses the find;
  // whatever was recorded before stays. Problems with one entity land in
  // the report's errors and the run goes on.
  SyncReport run_once();

  // Runs a pass at once and then every `interval` until `stop` fires; a
  // pass waiting for the broker when it fires ends at once. A pass that
  // throws is logged and the next one is tried an interval later.
  void run(const StopSignal& stop);

  // The entities to check (JSON values; objects with an "id" are stamped).
  // Default: the callback from find_with(), else the entities of
  // `entity_endpoint` whose last_sync_at is missing or older than now minus
  // `interval`, at most `max_entities`, in id order. Throws as Client::call.
  virtual std::vector<nlohmann::ordered_json> find_entities_to_sync();

  // Repairs an entity that failed a check (with fix_errors on) and returns
  // it as fixed; throws when it cannot. Default: the callback from
  // fix_with(), else throws mw::Error (nothing to fix with).
  virtual nlohmann::ordered_json fix_entity(const nlohmann::ordered_json& entity);

  Sync& find_with(FindEntities find);
  Sync& fix_with(FixEntity fix);

  // The connection to the broker, for overrides that call endpoints. A new
  // one after a pass that lost the broker (queued requests are dropped), and
  // when run() starts and ends (its stop ends the client's waits): ask for it
  // where you use it, do not keep the reference.
  Client& client();
  const SyncOptions& options() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mw
