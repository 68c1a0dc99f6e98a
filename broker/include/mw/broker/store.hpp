// mw/broker/store.hpp — where entities and their change events live.
//
// The broker talks to this interface only, so a shared server database can
// back several brokers later. The embedded implementation is SQLite
// (SqliteStore): a file for durability, or ":memory:" for none.
//
// Transactions are explicit because the broker commits once per loop turn
// (group commit): every write of a turn goes into one transaction, and the
// replies that depend on those writes leave only after commit() returns.
//
// Thread safety: none; the broker is single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mw/broker/finished_flows.hpp"
#include "mw/broker/query.hpp"

namespace mw::broker {

struct StoredEvent {
  std::uint64_t seq = 0;
  std::string topic;
  std::int64_t at_ms = 0;  // wall clock, ms since the epoch
  std::string data;        // msgpack
};

struct FindResult {
  std::uint64_t total = 0;  // matches before $limit/$skip
  std::vector<Json> docs;
};

// One unfinished job as the store keeps it (the jobs table): what a broker
// restarted on the same store needs to serve it again.
struct StoredJob {
  std::uint64_t id = 0;
  std::uint64_t flow_id = 0;
  std::string type;
  std::uint32_t attempts = 0;
  std::uint32_t max_attempts = 0;
  std::int32_t priority = 0;
  std::uint32_t stage = 0;        // the job's place in its flow, 0 for the first
  std::uint64_t lease_ms = 0;
  std::int64_t due_at = 0;        // wall clock ms; 0 = runnable now
  std::int64_t submitted_at = 0;  // wall clock ms
  std::string key;
  std::string entity;
  std::string payload;  // msgpack, as submitted (filled by load_jobs)
};

class Store {
 public:
  virtual ~Store() = default;

  // Opens a transaction unless one is open. Writes outside begin()/commit()
  // are REQUIRES-violations: callers begin first.
  virtual void begin() = 0;
  // Commits the open transaction, if any. Throws mw::Error when the commit
  // fails (disk full, I/O error); the transaction is then rolled back.
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;
  virtual bool in_transaction() const noexcept = 0;
  // Marks the open transaction as unfit to commit: a call that wrote
  // without a unit (see begin_unit) failed halfway, so its writes cannot be
  // undone alone. Writes then throw, and commit() rolls everything back
  // and throws, naming `why`; the caller fails the whole turn. The store
  // does the same by itself when the database drops the transaction after
  // an error. No-op outside a transaction.
  virtual void abandon(std::string_view why) noexcept = 0;

  // A nested unit inside the open transaction (an SQL savepoint): one
  // entity call whose writes must all land or none. REQUIRES: begin().
  // A unit copies every page it touches before changing it, so callers
  // open one only when a call may fail after writing (see EntityService).
  virtual void begin_unit() = 0;
  virtual void commit_unit() = 0;
  virtual void rollback_unit() noexcept = 0;

  [[nodiscard]] virtual std::optional<Json> get(std::string_view endpoint, std::string_view id) = 0;
  // Returns false (and writes nothing) when `id` already exists.
  virtual bool insert(std::string_view endpoint, std::string_view id, const Json& doc) = 0;
  // The same with the document already as JSON text (valid JSON, an object).
  virtual bool insert_json(std::string_view endpoint, std::string_view id, std::string_view json) = 0;
  // Returns false when `id` does not exist.
  virtual bool replace(std::string_view endpoint, std::string_view id, const Json& doc) = 0;
  virtual bool remove(std::string_view endpoint, std::string_view id) = 0;
  virtual FindResult find(std::string_view endpoint, const TranslatedQuery& query) = 0;
  // Makes equality and range filters on `field` of `endpoint` use an index.
  virtual void ensure_index(std::string_view endpoint, std::string_view field) = 0;

  // Appends a change event and returns its sequence number (1, 2, 3 …; never reused).
  virtual std::uint64_t append_event(std::string_view topic, std::int64_t at_ms, std::string_view data) = 0;
  // Events with seq > `after`, oldest first, at most `limit`.
  virtual std::vector<StoredEvent> events_after(std::uint64_t after, std::size_t limit) = 0;
  // Sequence of the newest event, 0 when none was ever stored.
  virtual std::uint64_t last_event_seq() = 0;
  // Sequence of the oldest event still kept, 0 when none is kept.
  virtual std::uint64_t first_event_seq() = 0;
  // Deletes events beyond the newest `keep_count` and those older than
  // `older_than_ms` (wall clock). Returns how many were deleted.
  virtual std::uint64_t trim_events(std::uint64_t keep_count, std::int64_t older_than_ms) = 0;

  // The jobs journal. A durable store keeps every unfinished job so that a
  // broker restarted on it serves them again; ":memory:" keeps none
  // (durable() is false and the broker does not call the others).
  virtual bool durable() const noexcept = 0;
  // Inserts or replaces the job of this flow (one row per unfinished
  // flow; job.payload is ignored in favour of `payload`). REQUIRES: begin().
  virtual void put_job(const StoredJob& job, std::string_view payload) = 0;
  virtual void delete_job(std::uint64_t flow_id) = 0;
  // Every stored job, oldest job id first.
  virtual void load_jobs(const std::function<void(StoredJob&&)>& each) = 0;

  // Kept outcomes of ended flows (FinishedFlows), so that WAIT and `mw
  // result` still answer after a restart; durable stores only, like the
  // journal. Counts and bytes (results and errors) bound them, as in
  // FinishedFlows; 0 for either means none. put_outcomes appends the
  // outcomes of one turn, in the order the flows ended (REQUIRES:
  // begin()); trim_outcomes deletes what is older than the newest
  // `keep_count` within `keep_bytes` (it may keep a turn's worth more);
  // load_outcomes gives the newest `limit` within about `limit_bytes`,
  // oldest first, and throws mw::Error if the store cannot be read.
  virtual void put_outcomes(std::span<const FinishedFlow> flows) = 0;
  virtual void trim_outcomes(std::uint64_t keep_count, std::uint64_t keep_bytes) = 0;
  virtual void load_outcomes(std::uint64_t limit, std::uint64_t limit_bytes,
                             const std::function<void(FinishedFlow&&)>& each) = 0;

  // ":memory:" or the file's path, for status and logs.
  virtual std::string description() const = 0;
};

struct SqliteOptions {
  // "normal": a committed write survives a crash of the broker process but
  // may be lost on power loss or an OS crash (WAL, synchronous=NORMAL).
  // "full": it also survives power loss, at the cost of an fsync per commit.
  std::string synchronous = "normal";
};

// Opens (creating if needed) the store at `path`, or an in-memory one for
// ":memory:". Throws mw::Error naming the path and SQLite's reason.
std::unique_ptr<Store> open_sqlite_store(const std::string& path, const SqliteOptions& options = {});

}  // namespace mw::broker
