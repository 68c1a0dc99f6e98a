// The embedded store: SQLite in WAL mode. Entities are JSON documents in one
// table keyed by (endpoint, id), so SQLite's JSON functions can filter and
// index any field; events are an append-only table keyed by sequence.
#include <sqlite3.h>

#include <unordered_map>

#include "mw/broker/store.hpp"
#include "mw/error.hpp"

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
  seq   INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  data  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events(at_ms);
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
  payload      BLOB NOT NULL
);
)sql";

// An owned prepared statement, reset after each use so it can be reused.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
        SQLITE_OK)
      throw Error(std::string("store: cannot prepare statement: ") + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, std::string_view text) {
    check(sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind_blob(int i, std::string_view bytes) {
    check(sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
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
      throw Error("store: synchronous must be 'normal' or 'full', not '" + options.synchronous + "'", ErrorCode::BadRequest);
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw Error("cannot open store '" + path + "': " + why, ErrorCode::BadRequest);
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
    exec(kSchema);
    get_ = std::make_unique<Statement>(db_, "SELECT doc FROM entities WHERE endpoint = ?1 AND id = ?2");
    insert_ = std::make_unique<Statement>(db_, "INSERT OR IGNORE INTO entities(endpoint, id, doc) VALUES (?1, ?2, ?3)");
    replace_ = std::make_unique<Statement>(db_, "UPDATE entities SET doc = ?3 WHERE endpoint = ?1 AND id = ?2");
    remove_ = std::make_unique<Statement>(db_, "DELETE FROM entities WHERE endpoint = ?1 AND id = ?2");
    append_ = std::make_unique<Statement>(db_, "INSERT INTO events(topic, at_ms, data) VALUES (?1, ?2, ?3)");
    events_after_ = std::make_unique<Statement>(
        db_, "SELECT seq, topic, at_ms, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    last_seq_ = std::make_unique<Statement>(db_, "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)");
    first_seq_ = std::make_unique<Statement>(db_, "SELECT coalesce(min(seq), 0) FROM events");
    put_job_ = std::make_unique<Statement>(
        db_,
        "INSERT OR REPLACE INTO jobs(id, flow, type, attempts, max_attempts, priority, lease_ms, due_at, submitted_at, "
        "key, entity, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    delete_job_ = std::make_unique<Statement>(db_, "DELETE FROM jobs WHERE flow = ?1");
  }

  ~SqliteStore() override {
    rollback();
    find_cache_.clear();
    get_.reset();
    insert_.reset();
    replace_.reset();
    remove_.reset();
    append_.reset();
    events_after_.reset();
    last_seq_.reset();
    first_seq_.reset();
    put_job_.reset();
    delete_job_.reset();
    sqlite3_close(db_);
  }

  void begin() override {
    if (in_transaction_) return;
    exec("BEGIN IMMEDIATE");
    in_transaction_ = true;
  }

  void commit() override {
    if (!in_transaction_) return;
    char* error = nullptr;
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string why = error ? error : "unknown error";
      sqlite3_free(error);
      rollback();
      throw Error("store: commit failed: " + why);
    }
    in_transaction_ = false;
  }

  void rollback() noexcept override {
    if (!in_transaction_) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    in_transaction_ = false;
  }

  bool in_transaction() const noexcept override { return in_transaction_; }

  void begin_unit() override { exec("SAVEPOINT unit"); }
  void commit_unit() override { exec("RELEASE unit"); }
  void rollback_unit() noexcept override {
    sqlite3_exec(db_, "ROLLBACK TO unit", nullptr, nullptr, nullptr);
    sqlite3_exec(db_, "RELEASE unit", nullptr, nullptr, nullptr);
  }

  std::optional<Json> get(std::string_view endpoint, std::string_view id) override {
    ResetOnExit r{*get_};
    get_->bind(1, endpoint).bind(2, id);
    if (!get_->step()) return std::nullopt;
    return Json::parse(get_->text(0));
  }

  bool insert(std::string_view endpoint, std::string_view id, const Json& doc) override {
    insert_->bind(1, endpoint).bind(2, id).bind(3, std::string_view(doc.dump()));
    insert_->run();
    return sqlite3_changes(db_) == 1;
  }

  bool replace(std::string_view endpoint, std::string_view id, const Json& doc) override {
    replace_->bind(1, endpoint).bind(2, id).bind(3, std::string_view(doc.dump()));
    replace_->run();
    return sqlite3_changes(db_) == 1;
  }

  bool remove(std::string_view endpoint, std::string_view id) override {
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
    while (select.step()) result.docs.push_back(Json::parse(select.text(0)));
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
    append_->bind(1, topic).bind(2, at_ms).bind_blob(3, data);
    append_->run();
    return static_cast<std::uint64_t>(sqlite3_last_insert_rowid(db_));
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

  std::uint64_t last_event_seq() override { return scalar(*last_seq_); }
  std::uint64_t first_event_seq() override { return scalar(*first_seq_); }

  std::uint64_t trim_events(std::uint64_t keep_count, std::int64_t older_than_ms) override {
    const std::uint64_t last = last_event_seq();
    const std::int64_t keep_from = last > keep_count ? static_cast<std::int64_t>(last - keep_count) : 0;
    Statement& trim = cached("DELETE FROM events WHERE seq <= ? OR at_ms < ?");
    trim.bind(1, keep_from).bind(2, older_than_ms);
    trim.run();
    return static_cast<std::uint64_t>(sqlite3_changes(db_));
  }

  bool durable() const noexcept override { return durable_; }

  void put_job(const StoredJob& j, std::string_view payload) override {
    Statement& s = *put_job_;
    ResetOnExit r{s};
    s.bind(1, static_cast<std::int64_t>(j.id)).bind(2, static_cast<std::int64_t>(j.flow_id)).bind(3, j.type);
    s.bind(4, std::int64_t{j.attempts}).bind(5, std::int64_t{j.max_attempts}).bind(6, std::int64_t{j.priority});
    s.bind(7, static_cast<std::int64_t>(j.lease_ms)).bind(8, j.due_at).bind(9, j.submitted_at);
    s.bind_value(10, j.key.empty() ? SqlValue(nullptr) : SqlValue(j.key));
    s.bind_value(11, j.entity.empty() ? SqlValue(nullptr) : SqlValue(j.entity));
    s.bind_blob(12, payload);
    s.step();
  }

  void delete_job(std::uint64_t flow_id) override {
    ResetOnExit r{*delete_job_};
    delete_job_->bind(1, static_cast<std::int64_t>(flow_id));
    delete_job_->step();
  }

  void load_jobs(const std::function<void(StoredJob&&)>& each) override {
    Statement s(db_,
                "SELECT id, flow, type, attempts, max_attempts, priority, lease_ms, due_at, submitted_at, key, entity, "
                "payload FROM jobs ORDER BY id");
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
      each(std::move(j));
    }
  }

  std::string description() const override { return path_; }

 private:
  void exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string why = error ? error : "unknown error";
      sqlite3_free(error);
      throw Error("store '" + path_ + "': " + why);
    }
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
    return *find_cache_.emplace(sql, std::make_unique<Statement>(db_, sql)).first->second;
  }

  static int bind_query(Statement& s, std::string_view endpoint, const TranslatedQuery& query) {
    int i = 1;
    s.bind(i++, endpoint);
    for (const auto& p : query.params) s.bind_value(i++, p);
    return i;
  }

  std::string path_;
  bool durable_;
  sqlite3* db_ = nullptr;
  bool in_transaction_ = false;
  std::unique_ptr<Statement> get_, insert_, replace_, remove_, append_, events_after_, last_seq_, first_seq_, put_job_,
      delete_job_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> find_cache_;
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(const std::string& path, const SqliteOptions& options) {
  return std::make_unique<SqliteStore>(path, options);
}

}  // namespace mw::broker
