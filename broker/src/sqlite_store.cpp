// The embedded store: SQLite in WAL mode. Entities are JSON documents in one
// table keyed by (endpoint, id), so SQLite's JSON functions can filter and
// index any field; events are an append-only table keyed by sequence.
#include <sqlite3.h>

#include <msgpack.hpp>

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "mw/broker/store.hpp"
#include "mw/error.hpp"
#include "mw/json_objects.hpp"
#include "mw/log.hpp"
#include "mw/protocol.hpp"
#include "store_lock.hpp"

namespace mw::broker {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS entities (
  endpoint TEXT NOT NULL,
  id       TEXT NOT NULL,
  doc      TEXT NOT NULL,
  PRIMARY KEY (endpoint, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  seq   INTEGER PRIMARY KEY,
  topic TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  data  BLOB NOT NULL
);
DROP INDEX IF EXISTS events_at;
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
  flow         INTEGER PRIMARY KEY,
  id           INTEGER NOT NULL,
  type         TEXT NOT NULL,
  attempts     INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  priority     INTEGER NOT NULL,
  lease_ms     INTEGER NOT NULL,
  due_at       INTEGER NOT NULL,
  submitted_at INTEGER NOT NULL,
  key          TEXT,
  entity       TEXT,
  payload      BLOB NOT NULL,
  stage        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outcomes (
  seq     INTEGER PRIMARY KEY,
  flows   INTEGER NOT NULL,
  bytes   INTEGER NOT NULL,
  records BLOB NOT NULL
);
)sql";

// The largest row of kept outcomes put_outcomes writes (one outcome larger
// than that gets a row of its own).
constexpr std::size_t kOutcomeRowBytes = 4 << 20;

// Process-wide SQLite settings, made once before the first connection.
// Memory statistics take a global mutex on every allocation SQLite makes,
// which cost about 5% of an entity create; nothing here reads them. Each
// connection is used by one thread only, so multi-thread mode (no
// per-connection mutex) is safe. If something else in the process already
// initialised SQLite, the calls fail harmlessly and its settings stay.
void configure_sqlite_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    (void)sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, -1);
  });
}

// The store's open transaction, as its statements see it. SQLite rolls a
// transaction back by itself after some errors (I/O, disk full, out of
// memory); a statement that fails that way marks it abandoned, so the rest
// of the turn writes nothing (it would otherwise land outside any
// transaction) and the commit fails.
struct Transaction {
  bool open = false;
  bool abandoned = false;
  std::string why;  // why it was abandoned, for the commit's error

  void abandon(std::string_view reason) noexcept {
    if (!open || abandoned) return;
    abandoned = true;  // first: the reason is best effort
    try {
      why = reason;
    } catch (...) {
    }
  }
};

// An owned prepared statement, reset after each use so it can be reused.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql, Transaction* transaction = nullptr)
      : db_(db), transaction_(transaction) {
    if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
        SQLITE_OK)
      throw Error(std::string("store: cannot prepare statement: ") + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // SQLite copies the bytes: they may go away before the statement runs.
  Statement& bind(int i, std::string_view text) {
    check(sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind_blob(int i, std::string_view bytes) {
    check(sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
    return *this;
  }
  // Not copied: REQUIRES that the bytes outlive the next reset (run() resets).
  Statement& bind_uncopied(int i, std::string_view text) {
    check(sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC));
    return *this;
  }
  Statement& bind_blob_uncopied(int i, std::string_view bytes) {
    check(sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC));
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement& bind_value(int i, const SqlValue& v) {
    if (std::holds_alternative<std::nullptr_t>(v)) check(sqlite3_bind_null(stmt_, i));
    else if (auto* n = std::get_if<std::int64_t>(&v)) check(sqlite3_bind_int64(stmt_, i, *n));
    else if (auto* d = std::get_if<double>(&v)) check(sqlite3_bind_double(stmt_, i, *d));
    else bind(i, std::string_view(std::get<std::string>(v)));
    return *this;
  }

  // Steps once: true when a row is available.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    const std::string why = sqlite3_errmsg(db_);
    if (transaction_ && transaction_->open && sqlite3_get_autocommit(db_))
      transaction_->abandon("SQLite rolled the transaction back after: " + why);
    reset();
    if (rc == SQLITE_CONSTRAINT) throw Error("store: constraint failed: " + why, ErrorCode::Conflict);
    throw Error("store: " + why);
  }
  void run() {
    step();
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  std::string blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw Error(std::string("store: cannot bind: ") + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  Transaction* transaction_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement when a scope is left, also on exceptions.
struct ResetOnExit {
  Statement& s;
  ~ResetOnExit() { s.reset(); }
};

class SqliteStore final : public Store {
 public:
  SqliteStore(const std::string& path, const SqliteOptions& options) : path_(path), durable_(path != ":memory:") {
    if (options.synchronous != "normal" && options.synchronous != "full")
      throw Error("--sync must be 'normal' or 'full', not '" + options.synchronous + "'", ErrorCode::BadRequest);
    configure_sqlite_once();
    if (durable_) lock_.emplace(path);  // before SQLite reads anything: the jobs are this broker's alone
    if (sqlite3_open_v2(path.c_str(), &db_.handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      throw Error("cannot open store '" + path + "': " + why);
    }
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=" + options.synchronous);
    exec("PRAGMA busy_timeout=5000");
    exec("PRAGMA foreign_keys=OFF");
    // The jobs table churns: the same few pages are rewritten by every
    // commit. A checkpoint copies each page once however often it changed,
    // so checkpointing every ~40 MB of WAL instead of SQLite's 4 MB writes
    // far less; the WAL is truncated back to this size afterwards.
    exec("PRAGMA wal_autocheckpoint=10000");
    exec("PRAGMA journal_size_limit=67108864");
    // A 64 MiB page cache (SQLite's default is 2 MiB) keeps the pages of
    // ~250k entities and their indexes in memory instead of reading them
    // back from the OS on every write.
    exec("PRAGMA cache_size=-65536");
    exec(kSchema);
    add_jobs_stage_column();
    last_seq_ = committed_seq_ = highest_event_seq();
    get_ = prepare("SELECT doc FROM entities WHERE endpoint = ?1 AND id = ?2");
    insert_ = prepare("INSERT OR IGNORE INTO entities(endpoint, id, doc) VALUES (?1, ?2, ?3)");
    replace_ = prepare("UPDATE entities SET doc = ?3 WHERE endpoint = ?1 AND id = ?2");
    remove_ = prepare("DELETE FROM entities WHERE endpoint = ?1 AND id = ?2");
    append_ = prepare("INSERT INTO events(seq, topic, at_ms, data) VALUES (?1, ?2, ?3, ?4)");
    events_after_ = prepare(
        "SELECT seq, topic, at_ms, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    save_seq_ = prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('event_seq', ?1)");
    first_seq_ = prepare("SELECT coalesce(min(seq), 0) FROM events");
    put_job_ = prepare(
        "INSERT OR REPLACE INTO jobs(id, flow, type, attempts, max_attempts, priority, lease_ms, due_at, submitted_at, "
        "key, entity, payload, stage) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
    delete_job_ = prepare("DELETE FROM jobs WHERE flow = ?1");
    // One row per turn: the outcomes of the flows that ended in it, as one
    // msgpack array (an insert per flow would cost durable brokers about a
    // sixth of their throughput). seq orders the rows: a new rowid is one
    // more than the largest, which trimming the oldest never lowers.
    put_outcomes_ = prepare("INSERT INTO outcomes(flows, bytes, records) VALUES (?1, ?2, ?3)");
    outcome_rows_ = prepare("SELECT seq, flows, bytes FROM outcomes ORDER BY seq DESC");
    trim_outcomes_ = prepare("DELETE FROM outcomes WHERE seq < ?1");
    savepoint_ = prepare("SAVEPOINT unit");
    release_ = prepare("RELEASE unit");
    rollback_to_ = prepare("ROLLBACK TO unit");
    // Events are appended in time order, so those past their age are the
    // oldest ones: walk from the oldest to the first young enough (no index
    // on at_ms to maintain on every append), and delete one rowid range.
    // Should the wall clock step back, an event is kept until every event
    // before it is old enough: retention errs on the side of keeping.
    trim_ = prepare(
        "DELETE FROM events WHERE seq < max(?1 + 1, coalesce("
        "(SELECT seq FROM events WHERE at_ms >= ?2 ORDER BY seq LIMIT 1), (SELECT max(seq) + 1 FROM events), 0))");
  }

  ~SqliteStore() override { rollback(); }

  void begin() override {
    if (transaction_.open) return;
    exec("BEGIN IMMEDIATE");
    transaction_ = Transaction{true, false, {}};
  }

  void commit() override {
    if (!transaction_.open) return;
    if (transaction_.abandoned) {
      const std::string why = transaction_.why.empty() ? "a write failed" : transaction_.why;
      rollback();
      throw Error("store: transaction abandoned: " + why);
    }
    char* error = nullptr;
    try {
      if (last_seq_ != committed_seq_) save_seq_->bind(1, static_cast<std::int64_t>(last_seq_)).run();
    } catch (const std::exception& e) {
      rollback();
      throw Error(std::string("store: commit failed: ") + e.what());
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string why = error ? error : "unknown error";
      sqlite3_free(error);
      rollback();
      throw Error("store: commit failed: " + why);
    }
    transaction_.open = false;
    committed_seq_ = last_seq_;
  }

  void rollback() noexcept override {
    unit_seq_marks_.clear();
    if (!transaction_.open) return;
    // Fails harmlessly when SQLite has rolled back already.
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    transaction_ = Transaction{};
    // Read the numbering back rather than trust memory: whatever happened
    // to the transaction, the next event follows the newest one stored.
    try {
      last_seq_ = committed_seq_ = highest_event_seq();
    } catch (const std::exception&) {
      last_seq_ = committed_seq_;
    }
  }

  void abandon(std::string_view why) noexcept override { transaction_.abandon(why); }

  bool in_transaction() const noexcept override { return transaction_.open; }

  // Every entity call is a unit, so these are prepared once: parsing the
  // SQL text per call cost more than the insert it wraps.
  void begin_unit() override {
    writable();
    savepoint_->run();
    unit_seq_marks_.push_back(last_seq_);
  }
  void commit_unit() override {
    release_->run();
    unit_seq_marks_.pop_back();
  }
  void rollback_unit() noexcept override {
    try {
      rollback_to_->run();
      release_->run();
    } catch (const std::exception& e) {
      // Rolling back a savepoint cannot fail short of a broken database.
      abandon(std::string("cannot roll back a unit: ") + e.what());
    }
    if (!unit_seq_marks_.empty()) {
      last_seq_ = unit_seq_marks_.back();  // the unit's events are gone: no gap in the sequence
      unit_seq_marks_.pop_back();
    }
  }

  std::optional<Json> get(std::string_view endpoint, std::string_view id) override {
    ResetOnExit r{*get_};
    get_->bind_uncopied(1, endpoint).bind_uncopied(2, id);
    if (!get_->step()) return std::nullopt;
    return parse_ordered_json(get_->text(0));
  }

  bool insert(std::string_view endpoint, std::string_view id, const Json& doc) override {
    return insert_json(endpoint, id, doc.dump());
  }

  bool insert_json(std::string_view endpoint, std::string_view id, std::string_view json) override {
    writable();
    insert_->bind_uncopied(1, endpoint).bind_uncopied(2, id).bind_uncopied(3, json);
    insert_->run();
    return sqlite3_changes(db_) == 1;
  }

  bool replace(std::string_view endpoint, std::string_view id, const Json& doc) override {
    writable();
    const std::string text = doc.dump();
    replace_->bind_uncopied(1, endpoint).bind_uncopied(2, id).bind_uncopied(3, text);
    replace_->run();
    return sqlite3_changes(db_) == 1;
  }

  bool remove(std::string_view endpoint, std::string_view id) override {
    writable();
    remove_->bind(1, endpoint).bind(2, id);
    remove_->run();
    return sqlite3_changes(db_) == 1;
  }

  FindResult find(std::string_view endpoint, const TranslatedQuery& query) override {
    FindResult result;
    {
      Statement& count = cached("SELECT count(*) FROM entities WHERE endpoint = ? AND (" + query.where + ")");
      ResetOnExit r{count};
      bind_query(count, endpoint, query);
      if (count.step()) result.total = static_cast<std::uint64_t>(count.integer(0));
    }
    if (query.limit == 0) return result;
    Statement& select = cached("SELECT doc FROM entities WHERE endpoint = ? AND (" + query.where + ")" + query.order_by +
                               " LIMIT ? OFFSET ?");
    ResetOnExit r{select};
    const int next = bind_query(select, endpoint, query);
    select.bind(next, static_cast<std::int64_t>(query.limit)).bind(next + 1, static_cast<std::int64_t>(query.skip));
    while (select.step()) result.docs.push_back(parse_ordered_json(select.text(0)));
    return result;
  }

  void ensure_index(std::string_view endpoint, std::string_view field) override {
    // Both names are validated identifiers, so they can be spliced in.
    const std::string expr = field_expression(field);
    std::string name = "ix_" + std::string(endpoint) + "_" + std::string(field);
    for (auto& c : name)
      if (c == '.' || c == '-') c = '_';
    // Not a partial index (WHERE endpoint = '…'): queries bind the endpoint
    // as a parameter, and SQLite only uses partial indexes for literals.
    // Nor (endpoint, expr): SQLite (seen with 3.40) never uses an index that
    // lists a PRIMARY KEY column next to an expression on a WITHOUT ROWID
    // table. An index of the WITHOUT ROWID table ends with its key anyway,
    // so (expr) is (expr, endpoint, id): `expr = ? AND endpoint = ?` uses both.
    exec("CREATE INDEX IF NOT EXISTS \"" + name + "\" ON entities(" + expr + ")");
  }

  std::uint64_t append_event(std::string_view topic, std::int64_t at_ms, std::string_view data) override {
    writable();
    const std::uint64_t seq = last_seq_ + 1;
    append_->bind(1, static_cast<std::int64_t>(seq)).bind_uncopied(2, topic).bind(3, at_ms).bind_blob_uncopied(4, data);
    append_->run();
    last_seq_ = seq;
    return seq;
  }

  std::vector<StoredEvent> events_after(std::uint64_t after, std::size_t limit) override {
    std::vector<StoredEvent> out;
    ResetOnExit r{*events_after_};
    events_after_->bind(1, static_cast<std::int64_t>(after)).bind(2, static_cast<std::int64_t>(limit));
    while (events_after_->step()) {
      out.push_back({static_cast<std::uint64_t>(events_after_->integer(0)), events_after_->text(1),
                     events_after_->integer(2), events_after_->blob(3)});
    }
    return out;
  }

  std::uint64_t last_event_seq() override { return last_seq_; }
  std::uint64_t first_event_seq() override { return scalar(*first_seq_); }

  std::uint64_t trim_events(std::uint64_t keep_count, std::int64_t older_than_ms) override {
    writable();
    const std::uint64_t last = last_event_seq();
    const std::int64_t keep_from = last > keep_count ? static_cast<std::int64_t>(last - keep_count) : 0;
    trim_->bind(1, keep_from).bind(2, older_than_ms);
    trim_->run();
    return static_cast<std::uint64_t>(sqlite3_changes(db_));
  }

  bool durable() const noexcept override { return durable_; }

  void put_job(const StoredJob& j, std::string_view payload) override {
    writable();
    Statement& s = *put_job_;
    ResetOnExit r{s};
    s.bind(1, static_cast<std::int64_t>(j.id)).bind(2, static_cast<std::int64_t>(j.flow_id)).bind(3, j.type);
    s.bind(4, std::int64_t{j.attempts}).bind(5, std::int64_t{j.max_attempts}).bind(6, std::int64_t{j.priority});
    s.bind(7, static_cast<std::int64_t>(j.lease_ms)).bind(8, j.due_at).bind(9, j.submitted_at);
    s.bind_value(10, j.key.empty() ? SqlValue(nullptr) : SqlValue(j.key));
    s.bind_value(11, j.entity.empty() ? SqlValue(nullptr) : SqlValue(j.entity));
    s.bind_blob(12, payload);
    s.bind(13, std::int64_t{j.stage});
    s.step();
  }

  void delete_job(std::uint64_t flow_id) override {
    writable();
    ResetOnExit r{*delete_job_};
    delete_job_->bind(1, static_cast<std::int64_t>(flow_id));
    delete_job_->step();
  }

  void load_jobs(const std::function<void(StoredJob&&)>& each) override {
    Statement s(db_,
                "SELECT id, flow, type, attempts, max_attempts, priority, lease_ms, due_at, submitted_at, key, entity, "
                "payload, stage FROM jobs ORDER BY id");
    while (s.step()) {
      StoredJob j;
      j.id = static_cast<std::uint64_t>(s.integer(0));
      j.flow_id = static_cast<std::uint64_t>(s.integer(1));
      j.type = s.text(2);
      j.attempts = static_cast<std::uint32_t>(s.integer(3));
      j.max_attempts = static_cast<std::uint32_t>(s.integer(4));
      j.priority = static_cast<std::int32_t>(s.integer(5));
      j.lease_ms = static_cast<std::uint64_t>(s.integer(6));
      j.due_at = s.integer(7);
      j.submitted_at = s.integer(8);
      j.key = s.text(9);
      j.entity = s.text(10);
      j.payload = s.blob(11);
      j.stage = static_cast<std::uint32_t>(std::clamp<std::int64_t>(s.integer(12), 0, UINT32_MAX));
      each(std::move(j));
    }
  }

  void put_outcomes(std::span<const FinishedFlow> flows) override {
    writable();
    // Rows of a bounded size, however many flows ended in the turn.
    while (!flows.empty()) {
      msgpack::sbuffer records;
      msgpack::packer<msgpack::sbuffer> packer(records);
      // How many go in this row first: the array's length comes before them.
      std::size_t count = 0, packed_estimate = 0;
      std::uint64_t bytes = 0;
      while (count < flows.size() && (count == 0 || packed_estimate < kOutcomeRowBytes)) {
        const FinishedFlow& f = flows[count];
        packed_estimate += f.result.size() + f.error.size() + f.last_type.size() + f.entity.size() + f.key.size() + 64;
        ++count;
      }
      packer.pack_array(static_cast<std::uint32_t>(count));
      for (const FinishedFlow& f : flows.first(count)) {
        packer.pack_array(10);
        packer.pack(f.flow_id).pack(f.outcome).pack(f.error).pack(f.last_type).pack(f.attempts);
        packer.pack(f.submitted_at).pack(f.finished_at).pack(f.entity).pack(f.key);
        packer.pack_bin(static_cast<std::uint32_t>(f.result.size()));
        packer.pack_bin_body(f.result.data(), static_cast<std::uint32_t>(f.result.size()));
        bytes += f.bytes();
      }
      Statement& s = *put_outcomes_;
      ResetOnExit r{s};
      s.bind(1, static_cast<std::int64_t>(count)).bind(2, static_cast<std::int64_t>(bytes));
      s.bind_blob_uncopied(3, {records.data(), records.size()});
      s.step();
      flows = flows.subspan(count);
    }
  }

  void trim_outcomes(std::uint64_t keep_count, std::uint64_t keep_bytes) override {
    writable();
    // The newest rows stay while they hold fewer than keep_count outcomes
    // and keep_bytes between them (the one that reaches a limit too).
    std::int64_t oldest_kept = INT64_MAX;
    {
      Statement& rows = *outcome_rows_;
      ResetOnExit r{rows};
      std::uint64_t held = 0, held_bytes = 0;
      while (held < keep_count && held_bytes < keep_bytes && rows.step()) {
        oldest_kept = rows.integer(0);
        held += static_cast<std::uint64_t>(std::clamp<std::int64_t>(rows.integer(1), 0, INT32_MAX));
        held_bytes += static_cast<std::uint64_t>(std::max<std::int64_t>(rows.integer(2), 0));
      }
    }
    ResetOnExit r{*trim_outcomes_};
    trim_outcomes_->bind(1, oldest_kept);
    trim_outcomes_->step();
  }

  void load_outcomes(std::uint64_t limit, std::uint64_t limit_bytes,
                     const std::function<void(FinishedFlow&&)>& each) override {
    // Newest rows first until the limits are reached (so memory stays about
    // limit_bytes), then handed out oldest first.
    std::vector<std::string> blobs;
    std::uint64_t count = 0, bytes = 0;
    Statement rows(db_, "SELECT flows, bytes, records FROM outcomes ORDER BY seq DESC");
    while (count < limit && bytes < limit_bytes && rows.step()) {
      count += static_cast<std::uint64_t>(std::clamp<std::int64_t>(rows.integer(0), 0, INT32_MAX));
      bytes += static_cast<std::uint64_t>(std::max<std::int64_t>(rows.integer(1), 0));
      blobs.push_back(rows.blob(2));
    }
    std::uint64_t skip = count > limit ? count - limit : 0;  // the oldest row's oldest outcomes
    std::uint64_t damaged = 0;
    for (auto blob = blobs.rbegin(); blob != blobs.rend(); ++blob) {
      std::vector<FinishedFlow> row;
      try {
        const auto handle = msgpack::unpack(blob->data(), blob->size());
        if (handle.get().type != msgpack::type::ARRAY) throw Error("not an array");
        const auto& list = handle.get().via.array;
        for (std::uint32_t i = 0; i < list.size; ++i) {
          if (skip > 0) {
            --skip;
            continue;
          }
          if (list.ptr[i].type != msgpack::type::ARRAY || list.ptr[i].via.array.size < 10) throw Error("bad record");
          const auto& r = list.ptr[i].via.array;
          FinishedFlow f;
          f.flow_id = r.ptr[0].as<std::uint64_t>();
          // FinishedFlow::outcome points at the static names.
          const auto outcome = r.ptr[1].as<std::string_view>();
          if (outcome == kOutcomeDone) f.outcome = kOutcomeDone;
          else if (outcome == kOutcomeDead) f.outcome = kOutcomeDead;
          else if (outcome == kOutcomeCancelled) f.outcome = kOutcomeCancelled;
          else continue;  // written by a newer broker: not ours to guess at
          f.error = r.ptr[2].as<std::string>();
          f.last_type = r.ptr[3].as<std::string>();
          f.attempts = r.ptr[4].as<std::uint32_t>();
          f.submitted_at = r.ptr[5].as<std::int64_t>();
          f.finished_at = r.ptr[6].as<std::int64_t>();
          f.entity = r.ptr[7].as<std::string>();
          f.key = r.ptr[8].as<std::string>();
          if (r.ptr[9].type != msgpack::type::BIN) throw Error("bad result");
          f.result.assign(r.ptr[9].via.bin.ptr, r.ptr[9].via.bin.size);
          row.push_back(std::move(f));
        }
      } catch (const std::exception&) {
        ++damaged;  // a damaged row costs its own outcomes, not the others
        continue;
      }
      for (auto& f : row) each(std::move(f));
    }
    if (damaged)
      log(LogLevel::warn, "store", std::to_string(damaged) + " damaged row(s) of kept outcomes skipped; "
                                   "mw result does not know their flows");
  }

  std::string description() const override { return path_; }

 private:
  // Stores made before flows counted their stages have no `stage` column:
  // their jobs read as first stages (a looping flow gets max_stages more).
  // Brokers that predate it write rows without it and read past it.
  void add_jobs_stage_column() {
    bool missing = false;
    {  // the query is finished before the table changes
      Statement columns(db_, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'stage'");
      missing = columns.step() && columns.integer(0) == 0;
    }
    if (missing) exec("ALTER TABLE jobs ADD COLUMN stage INTEGER NOT NULL DEFAULT 0");
  }

  void exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string why = error ? error : "unknown error";
      sqlite3_free(error);
      throw Error("store '" + path_ + "': " + why);
    }
  }

  // Event sequence numbers are handed out here rather than by an
  // AUTOINCREMENT column, whose bookkeeping row was rewritten on every
  // append; the highest one is saved in `meta` with each commit instead.
  // The largest of that, the newest event kept, and (for stores made by
  // versions that used AUTOINCREMENT) sqlite_sequence is where to go on.
  std::uint64_t highest_event_seq() {
    Statement newest(db_, "SELECT coalesce(max(seq), 0) FROM events");
    Statement saved(db_, "SELECT coalesce((SELECT value FROM meta WHERE key = 'event_seq'), 0)");
    Statement has_sequence(db_, "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'");
    std::uint64_t highest = std::max(scalar(newest), scalar(saved));
    if (scalar(has_sequence) > 0) {
      Statement autoincrement(db_, "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)");
      highest = std::max(highest, scalar(autoincrement));
    }
    return highest;
  }

  // Refuses writes once the transaction is abandoned: SQLite may have
  // rolled it back, and they would then land outside any transaction.
  void writable() const {
    if (transaction_.abandoned)
      throw Error("store: this turn's transaction was abandoned (" + transaction_.why + "); try again");
  }

  std::unique_ptr<Statement> prepare(const std::string& sql) {
    return std::make_unique<Statement>(db_, sql, &transaction_);
  }

  std::uint64_t scalar(Statement& s) {
    ResetOnExit r{s};
    return s.step() ? static_cast<std::uint64_t>(s.integer(0)) : 0;
  }

  // Queries differ only in their WHERE shape; cache one prepared statement
  // per shape (bounded: cleared when it grows past a few hundred shapes).
  Statement& cached(const std::string& sql) {
    auto it = find_cache_.find(sql);
    if (it != find_cache_.end()) return *it->second;
    if (find_cache_.size() > 256) find_cache_.clear();
    return *find_cache_.emplace(sql, prepare(sql)).first->second;
  }

  static int bind_query(Statement& s, std::string_view endpoint, const TranslatedQuery& query) {
    int i = 1;
    s.bind(i++, endpoint);
    for (const auto& p : query.params) s.bind_value(i++, p);
    return i;
  }

  // Owns the connection. Declared before the statements, so it is
  // destroyed after them (SQLite closes a connection only once they are
  // finalized), also when the constructor throws halfway.
  struct Connection {
    sqlite3* handle = nullptr;
    Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() { sqlite3_close(handle); }
    operator sqlite3*() const noexcept { return handle; }
  };

  std::string path_;
  bool durable_;
  std::optional<StoreLock> lock_;  // released after the connection closes (members go in reverse order)
  Connection db_;
  Transaction transaction_;
  std::uint64_t last_seq_ = 0;       // the newest event's sequence number, in this transaction
  std::uint64_t committed_seq_ = 0;  // … as of the last commit
  std::vector<std::uint64_t> unit_seq_marks_;  // last_seq_ when each open unit began
  std::unique_ptr<Statement> get_, insert_, replace_, remove_, append_, events_after_, save_seq_, first_seq_, put_job_,
      delete_job_, put_outcomes_, outcome_rows_, trim_outcomes_, savepoint_, release_, rollback_to_, trim_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> find_cache_;
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(const std::string& path, const SqliteOptions& options) {
  return std::make_unique<SqliteStore>(path, options);
}

}  // namespace mw::broker
