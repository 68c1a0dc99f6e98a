// Unit tests of what the broker core does with a store: jobs journaled
// before ACCEPTED and recovered by a new core on the same file, delayed
// jobs, priorities, idempotency keys, leases, per-type attempts, dead-job
// records, and a commit that fails. Driven with a fake clock, no sockets.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <stdexcept>

#include <sqlite3.h>

#include "core_harness.hpp"
#include "mw/broker/entity_service.hpp"
#include "mw/broker/store.hpp"
#include "mw/payload.hpp"
#include "temp_db.hpp"

using namespace core_test;
using mw::broker::EntityService;
using mw::broker::Json;
using mw::broker::Store;

namespace {

constexpr std::int64_t kWallStart = 1'800'000'000'000;  // ms since the epoch, fixed

// A Store that forwards to a real one and can be told to fail its commits
// (disk full, I/O error).
class FailingStore final : public Store {
 public:
  explicit FailingStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}
  bool fail_commits = false;
  bool fail_appends = false;  // appending an event fails (disk full mid-call)
  bool fail_releases = false;  // ending a unit (savepoint) fails
  std::size_t outcome_trims = 0;  // calls of trim_outcomes

  void begin() override { inner_->begin(); }
  void commit() override {
    if (fail_commits) {
      inner_->rollback();
      throw mw::Error("store: commit failed: disk I/O error (test)");
    }
    inner_->commit();
  }
  void rollback() noexcept override { inner_->rollback(); }
  bool in_transaction() const noexcept override { return inner_->in_transaction(); }
  void abandon(std::string_view why) noexcept override { inner_->abandon(why); }
  void begin_unit() override { inner_->begin_unit(); }
  void commit_unit() override {
    if (fail_releases) throw mw::Error("store: disk I/O error (test)");
    inner_->commit_unit();
  }
  void rollback_unit() noexcept override { inner_->rollback_unit(); }
  std::optional<Json> get(std::string_view e, std::string_view id) override { return inner_->get(e, id); }
  bool insert(std::string_view e, std::string_view id, const Json& d) override { return inner_->insert(e, id, d); }
  bool insert_json(std::string_view e, std::string_view id, std::string_view j) override {
    return inner_->insert_json(e, id, j);
  }
  bool replace(std::string_view e, std::string_view id, const Json& d) override { return inner_->replace(e, id, d); }
  bool remove(std::string_view e, std::string_view id) override { return inner_->remove(e, id); }
  mw::broker::FindResult find(std::string_view e, const mw::broker::TranslatedQuery& q) override {
    return inner_->find(e, q);
  }
  void ensure_index(std::string_view e, std::string_view f) override { inner_->ensure_index(e, f); }
  std::uint64_t append_event(std::string_view t, std::int64_t at, std::string_view d) override {
    if (fail_appends) throw mw::Error("store: database or disk is full (test)");
    return inner_->append_event(t, at, d);
  }
  std::vector<mw::broker::StoredEvent> events_after(std::uint64_t a, std::size_t l) override {
    return inner_->events_after(a, l);
  }
  std::uint64_t last_event_seq() override { return inner_->last_event_seq(); }
  std::uint64_t first_event_seq() override { return inner_->first_event_seq(); }
  std::uint64_t trim_events(std::uint64_t k, std::int64_t o) override { return inner_->trim_events(k, o); }
  bool durable() const noexcept override { return inner_->durable(); }
  void put_job(const mw::broker::StoredJob& j, std::string_view p) override { inner_->put_job(j, p); }
  void delete_job(std::uint64_t id) override { inner_->delete_job(id); }
  void load_jobs(const std::function<void(mw::broker::StoredJob&&)>& each) override { inner_->load_jobs(each); }
  void put_outcomes(std::span<const mw::broker::FinishedFlow> f) override { inner_->put_outcomes(f); }
  void trim_outcomes(std::uint64_t k, std::uint64_t b) override {
    ++outcome_trims;
    inner_->trim_outcomes(k, b);
  }
  void load_outcomes(std::uint64_t l, std::uint64_t b, const std::function<void(mw::broker::FinishedFlow&&)>& each) override {
    inner_->load_outcomes(l, b, each);
  }
  std::string description() const override { return inner_->description(); }

 private:
  std::unique_ptr<Store> inner_;
};

// The one number `query` gives on the store file at `path`, read with a
// connection of its own (what a restarted broker would find).
std::int64_t sql_number(const std::string& path, const char* query) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, query, -1, &statement, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
  const std::int64_t value = sqlite3_column_int64(statement, 0);
  sqlite3_finalize(statement);
  sqlite3_close(raw);
  return value;
}

// One broker life on a store file: a core with its own queue, transport and
// clock, attached to the store; a second Broker on the same file is the
// broker after a restart.
struct Broker {
  explicit Broker(const std::string& path, BrokerConfig config = test_config(), std::int64_t wall_start = kWallStart)
      : wall_ms(wall_start),
        store(std::make_unique<FailingStore>(mw::broker::open_sqlite_store(path))),
        entities(*store, {}, {}),
        h(std::move(config)) {
    h.core.set_wall_clock([this] { return wall_ms; });
    h.core.attach_entities(*store, entities);
    recovered = h.core.recover(h.now);
  }

  // Sends a SUBMIT, ends the turn (the commit), and returns what answered
  // it: the flow id of ACCEPTED, or 0 (then `last_error` is set).
  std::uint64_t submit(const wire::Submit& header, const std::string& payload, const std::string& peer = "c1") {
    const std::size_t mark = h.transport.sent.size();
    h.command(peer, Command::Submit, bytes_of(wire::encode(header)), payload);
    h.core.end_turn();
    for (const auto& s : h.to(peer, mark)) {
      if (s.command == Command::Accepted) {
        const auto frame = frame_of(s.header);
        return wire::decode_accepted(frame).flow_id;
      }
      if (s.command == Command::Error) last_error = Harness::error_of(s);
    }
    return 0;
  }

  std::uint64_t submit(std::string_view type, const std::string& payload, bool wait = true) {
    return submit(submit_header(++request_id, type, wait), payload);
  }

  // A flow of type "a" allowed one attempt, held by worker w1 (registered
  // here): failing its job makes it dead.
  struct HeldJob {
    std::uint64_t flow, job;
  };
  HeldJob one_attempt_job(const std::string& payload) {
    h.ready("w1", {"a"}, "", 1);
    const auto flow = submit(submit_header(1, "a", true, 1, ""), payload);
    return {flow, h.jobs("w1").at(0).id};
  }

  // Advances both clocks and runs timers.
  void advance(std::int64_t ms) {
    h.now += ms;
    wall_ms += ms;
    h.tick();
    h.core.end_turn();
  }

  std::optional<Json> record(std::string_view endpoint, std::string_view id) { return store->get(endpoint, id); }

  // Asks with WAIT, from c7, for each flow in turn; returns the flows whose
  // RESULT came (at once: they had ended), in that order.
  std::vector<std::uint64_t> flows_told(const std::vector<std::uint64_t>& flows) {
    const std::size_t before = h.results("c7").size();
    for (const auto flow : flows) {
      h.command("c7", Command::Wait, bytes_of(wire::encode(wire::WaitRequest{flow, flow})));
      h.core.end_turn();
    }
    std::vector<std::uint64_t> told;
    const auto results = h.results("c7");
    for (std::size_t i = before; i < results.size(); ++i) told.push_back(results[i].flow);
    return told;
  }

  std::int64_t wall_ms;
  std::unique_ptr<FailingStore> store;
  EntityService entities;
  Harness h;
  std::size_t recovered = 0;
  std::uint64_t request_id = 500;
  ErrorMsg last_error;
};

std::string number(double x) { return mw::Payload::of(x).bytes(); }

}  // namespace

TEST_CASE("ACCEPTED waits for the commit that holds the job") {
  TempDb db;
  Broker b(db.path());
  const std::size_t mark = b.h.transport.sent.size();
  b.h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(1, "a"))), payload_bytes(4));
  CHECK(b.h.to("c1", mark).empty());  // not before end_turn()
  b.h.core.end_turn();
  const auto sent = b.h.to("c1", mark);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].command == Command::Accepted);
}

TEST_CASE("a restarted broker serves every accepted job that had not finished") {
  TempDb db;
  std::uint64_t queued = 0, held = 0, finished = 0, second_stage_flow = 0;
  {
    Broker b(db.path());
    b.h.ready("w1", {"a"}, "", 1);
    finished = b.submit("a", payload_bytes(1, 1));
    b.h.done("w1", b.h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
    b.h.core.end_turn();
    held = b.submit("a", payload_bytes(3, 3));    // in flight at w1 when the broker dies
    queued = b.submit("a", payload_bytes(4, 4));  // waiting behind it
    second_stage_flow = b.submit("b", payload_bytes(5, 5));
    b.h.ready("wb", {"b"}, "c", 1);
    b.h.done("wb", b.h.jobs("wb").at(0).id, std::nullopt, payload_bytes(6, 6));  // on to stage c
    b.h.core.end_turn();
    REQUIRE(b.h.jobs("w1").size() == 2);
  }  // kill: nothing more is written

  Broker after(db.path());
  CHECK(after.recovered == 3);
  CHECK(after.h.core.stats(after.h.now).recovered == 3);
  after.h.ready("w2", {"a"}, "", 10);
  after.h.ready("wc", {"c"}, "", 10);
  const auto jobs = after.h.jobs("w2");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].flow == held);  // oldest first
  CHECK(jobs[0].payload == payload_bytes(3, 3));
  CHECK(jobs[1].flow == queued);
  CHECK(jobs[1].payload == payload_bytes(4, 4));
  const auto c = after.h.jobs("wc");
  REQUIRE(c.size() == 1);
  CHECK(c[0].flow == second_stage_flow);
  CHECK(c[0].payload == payload_bytes(6, 6));
  for (const auto& j : jobs) CHECK(j.flow != finished);

  // New ids never collide with recovered ones.
  const auto fresh = after.submit("a", payload_bytes(7));
  CHECK(fresh > queued);
}

TEST_CASE("finished and dead jobs are not recovered") {
  TempDb db;
  {
    Broker b(db.path());
    b.h.ready("w1", {"a"}, "", 5);
    b.submit("a", payload_bytes(1));
    b.submit(submit_header(2, "a", true, 1), payload_bytes(2));
    const auto jobs = b.h.jobs("w1");
    b.h.done("w1", jobs[0].id, std::nullopt, payload_bytes(9));
    b.h.fail("w1", jobs[1].id, "broken", false);
    b.h.core.end_turn();
  }
  Broker after(db.path());
  CHECK(after.recovered == 0);
}

TEST_CASE("a job added and finished in one turn never reaches the store") {
  TempDb db;
  Broker b(db.path());
  b.h.ready("w1", {"a"}, "", 1);
  b.h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(1, "a", true))), payload_bytes(1));
  const auto job = b.h.jobs("w1").at(0);
  b.h.done("w1", job.id, std::nullopt, payload_bytes(2));
  b.h.core.end_turn();
  std::size_t rows = 0;
  b.store->load_jobs([&](mw::broker::StoredJob&&) { ++rows; });
  CHECK(rows == 0);
  CHECK(b.h.results("c1").size() == 1);
}

TEST_CASE("a delayed job runs at its time, and keeps it across a restart") {
  TempDb db;
  std::uint64_t flow = 0;
  {
    Broker b(db.path());
    b.h.ready("w1", {"a"}, "", 1);
    auto header = submit_header(1, "a");
    header.delay_ms = 10'000;
    flow = b.submit(header, payload_bytes(1));
    REQUIRE(flow != 0);
    CHECK(b.h.core.stats(b.h.now).delayed == 1);
    b.advance(4'000);
    CHECK(b.h.jobs("w1").empty());
  }
  // The broker comes back 8 s after the SUBMIT: 2 s are left.
  Broker after(db.path(), test_config(), kWallStart + 8'000);
  CHECK(after.recovered == 1);
  after.h.ready("w1", {"a"}, "", 1);
  after.advance(1'000);
  CHECK(after.h.jobs("w1").empty());  // 9 s of 10 have passed
  after.advance(1'500);
  const auto jobs = after.h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].flow == flow);
}

TEST_CASE("a retry's backoff and attempts survive a restart") {
  TempDb db;
  {
    Broker b(db.path());
    b.h.ready("w1", {"a"}, "", 1);
    b.submit(submit_header(1, "a", false, 2), payload_bytes(1));
    b.h.fail("w1", b.h.jobs("w1").at(0).id, "flaky");
    b.h.core.end_turn();
    CHECK(b.h.core.delayed() == 1);
  }
  Broker after(db.path());
  CHECK(after.recovered == 1);
  CHECK(after.h.core.delayed() == 1);
  after.h.ready("w1", {"a"}, "", 1);
  after.advance(2'000);
  const auto jobs = after.h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].attempt == 2);
  after.h.fail("w1", jobs[0].id, "still flaky");  // the second of 2 attempts: dead
  after.h.core.end_turn();
  CHECK(after.h.core.counters().dead == 1);
}

TEST_CASE("a higher priority runs first within a type") {
  Harness h;
  for (int p : {0, 5, -3, 5, 100}) {
    auto header = submit_header(static_cast<std::uint64_t>(200 + p), "a");
    header.priority = p;
    h.command("c1", Command::Submit, bytes_of(wire::encode(header)), payload_bytes(1, static_cast<unsigned char>(p)));
  }
  h.ready("w1", {"a"}, "", 10);
  std::vector<std::string> order;
  for (const auto& j : h.jobs("w1")) order.push_back(j.payload);
  const std::vector<std::string> expected{payload_bytes(1, 100), payload_bytes(1, 5), payload_bytes(1, 5),
                                          payload_bytes(1, 0), payload_bytes(1, static_cast<unsigned char>(-3))};
  CHECK(order == expected);
}

TEST_CASE("a key makes SUBMIT idempotent while its flow is unfinished") {
  TempDb db;
  Broker b(db.path());
  auto header = submit_header(1, "a", false);
  header.key = "order-17";
  const auto first = b.submit(header, payload_bytes(1));
  header.request_id = 2;
  const auto again = b.submit(header, payload_bytes(2));
  CHECK(again == first);
  CHECK(b.h.core.counters().submitted == 1);
  CHECK(b.h.queue.depth("a") == 1);

  SUBCASE("the key is kept across a restart") {
    Broker after(db.path());
    header.request_id = 3;
    CHECK(after.submit(header, payload_bytes(3)) == first);
    CHECK(after.h.queue.depth("a") == 1);
  }
  SUBCASE("once the flow is done the key is free again") {
    b.h.ready("w1", {"a"}, "", 1);
    b.h.done("w1", b.h.jobs("w1").at(0).id, std::nullopt, payload_bytes(9));
    b.h.core.end_turn();
    header.request_id = 4;
    const auto next = b.submit(header, payload_bytes(4));
    CHECK(next != first);
    CHECK(b.h.core.counters().submitted == 2);
  }
}

TEST_CASE("a job held past its lease is taken back; the late DONE is ignored") {
  BrokerConfig config = test_config();
  config.lease_ms = 60'000;
  config.type_lease_ms["slow"] = 5'000;
  Harness h(config);
  h.ready("w1", {"slow"}, "", 1);
  const auto flow = h.submit("c1", "slow", payload_bytes(1));
  const auto job = h.jobs("w1").at(0);
  h.ready("w2", {"slow"}, "", 1);
  for (int i = 0; i < 8; ++i) {  // both keep heartbeating: only the lease can take the job back
    h.now += 1000;
    h.heartbeat("w1");
    h.heartbeat("w2");
    h.tick();
  }
  CHECK(h.core.counters().lease_expired == 1);
  const auto retried = h.jobs("w2");
  REQUIRE(retried.size() == 1);
  CHECK(retried[0].id == job.id);
  CHECK(retried[0].attempt == 2);
  h.done("w1", job.id, std::nullopt, payload_bytes(7));  // the old holder, too late
  CHECK(h.core.counters().stale_replies == 1);
  CHECK(h.results("c1").empty());
  h.done("w2", job.id, std::nullopt, payload_bytes(8));
  REQUIRE(h.results("c1").size() == 1);
  CHECK(h.results("c1")[0].flow == flow);
  CHECK(h.results("c1")[0].payload == payload_bytes(8));

  SUBCASE("a SUBMIT's own lease wins over the type's") {
    auto header = submit_header(900, "slow");
    header.lease_ms = 1'000'000;
    h.command("c1", Command::Submit, bytes_of(wire::encode(header)), payload_bytes(2));
    for (int i = 0; i < 20; ++i) {
      h.now += 1000;
      h.heartbeat("w1");
      h.heartbeat("w2");
      h.tick();
    }
    CHECK(h.core.counters().lease_expired == 1);
  }
}

TEST_CASE("a job whose lease expired and that came back to the same worker: the old run's late answer is stale") {
  BrokerConfig config = test_config();
  config.type_lease_ms["slow"] = 5'000;
  Harness h(config);
  h.transport.subscribers = true;
  h.ready("w1", {"slow"}, "", 2);  // room for the old run (its slot stays taken) and the new one
  const auto flow = h.submit("c1", "slow", payload_bytes(1));
  const auto first = h.jobs("w1").at(0);
  for (int i = 0; i < 6; ++i) {
    h.now += 1000;
    h.heartbeat("w1");
    h.tick();
  }
  CHECK(h.core.counters().lease_expired == 1);
  const auto runs = h.jobs("w1");
  REQUIRE(runs.size() == 2);
  CHECK(runs[1].id == first.id);  // the same job, again
  CHECK(runs[1].attempt == 2);
  // STATUS shows the slot the old run still takes.
  REQUIRE(h.core.stats(h.now).workers.size() == 1);
  CHECK(h.core.stats(h.now).workers[0].in_flight == 1);
  CHECK(h.core.stats(h.now).workers[0].expired == 1);

  auto progress_events = [&] {
    return std::count_if(h.transport.published.begin(), h.transport.published.end(),
                         [](const auto& p) { return p.topic == "$mw.progress"; });
  };
  SUBCASE("answers that quote their attempt are told apart") {
    // The old run reports and answers late: neither counts for the new run.
    h.command("w1", Command::Progress, bytes_of(wire::encode(wire::JobProgress{first.id, 1})),
              mw::Payload::of(0.9).bytes());
    CHECK(progress_events() == 0);
    h.done("w1", first.id, std::nullopt, payload_bytes(7), /*attempt=*/1);
    CHECK(h.core.counters().stale_replies == 1);
    CHECK(h.results("c1").empty());
    CHECK(h.core.stats(h.now).workers[0].expired == 0);  // its slot is free again
    h.command("w1", Command::Progress, bytes_of(wire::encode(wire::JobProgress{first.id, 2})),
              mw::Payload::of(0.5).bytes());
    CHECK(progress_events() == 1);
    h.done("w1", first.id, std::nullopt, payload_bytes(8), /*attempt=*/2);
    REQUIRE(h.results("c1").size() == 1);
    CHECK(h.results("c1")[0].flow == flow);
    CHECK(h.results("c1")[0].payload == payload_bytes(8));
    // The old run's slot is free again: two jobs fit.
    h.submit("c1", "slow", payload_bytes(2));
    h.submit("c1", "slow", payload_bytes(3));
    CHECK(h.jobs("w1").size() == 4);
  }
  SUBCASE("a FAIL of the old run does not fail the new one") {
    h.fail("w1", first.id, "timed out", /*retryable=*/false, /*attempt=*/1);
    CHECK(h.core.counters().stale_replies == 1);
    CHECK(h.core.counters().dead == 0);
    h.done("w1", first.id, std::nullopt, payload_bytes(8), /*attempt=*/2);
    REQUIRE(h.results("c1").size() == 1);
    CHECK(h.results("c1")[0].payload == payload_bytes(8));
  }
  SUBCASE("an answer that quotes no attempt (an older worker) is taken for the job as held") {
    h.done("w1", first.id, std::nullopt, payload_bytes(7));
    REQUIRE(h.results("c1").size() == 1);
    CHECK(h.results("c1")[0].payload == payload_bytes(7));
  }
}

TEST_CASE("max attempts per type") {
  BrokerConfig config = test_config();
  config.type_max_attempts["once"] = 1;
  Harness h(config);
  h.ready("w1", {"once", "often"}, "", 5);
  h.submit("c1", "once", payload_bytes(1));
  h.fail("w1", h.jobs("w1").at(0).id, "nope");
  CHECK(h.core.counters().dead == 1);
  h.submit("c1", "often", payload_bytes(2));
  h.fail("w1", h.jobs("w1").at(1).id, "nope");
  CHECK(h.core.counters().dead == 1);
  CHECK(h.core.delayed() == 1);
}

TEST_CASE("a dead job leaves a record in the sync endpoint") {
  TempDb db;
  BrokerConfig config = test_config();
  config.sync_endpoint = "deadletters";
  Broker b(db.path(), config);
  const auto [flow, job] = b.one_attempt_job(number(50.5));
  b.h.fail("w1", job, "API down");
  CHECK(b.h.results("c1").empty());  // the RESULT waits for the record's commit
  b.h.core.end_turn();
  REQUIRE(b.h.results("c1").size() == 1);
  const auto record = b.record("deadletters", "dead-" + std::to_string(job));
  REQUIRE(record.has_value());
  CHECK((*record)["kind"] == "dead");
  CHECK((*record)["type"] == "a");
  CHECK((*record)["flow"] == flow);
  CHECK((*record)["payload"] == 50.5);
  CHECK((*record)["error"] == "API down");
  CHECK((*record)["attempts"] == 1);
  CHECK((*record)["retried"] == false);
  CHECK((*record)["died_at"] == kWallStart);
}

TEST_CASE("a dead job whose error is not UTF-8 still leaves a record, the bad bytes replaced") {
  TempDb db;
  Broker b(db.path());
  const auto job = b.one_attempt_job(number(1)).job;
  b.h.fail("w1", job, "caf\xe9 closed");  // Latin-1, as a command's stderr may be
  b.h.core.end_turn();
  const auto record = b.record("sync", "dead-" + std::to_string(job));
  REQUIRE(record.has_value());
  CHECK((*record)["error"] == "caf\xef\xbf\xbd closed");  // U+FFFD
  b.advance(10);
  CHECK(b.h.core.counters().dead == 1);
}

TEST_CASE("a dead record the store could not keep is written again until a commit keeps it") {
  TempDb db;
  BrokerConfig config = test_config();
  config.sync_endpoint = "deadletters";
  Broker b(db.path(), config);
  const auto job = b.one_attempt_job(number(7)).job;
  const std::string id = "dead-" + std::to_string(job);
  SUBCASE("the turn's commit fails") { b.store->fail_commits = true; }
  SUBCASE("the record's own write fails (disk full)") { b.store->fail_appends = true; }
  b.h.fail("w1", job, "API down");
  b.h.core.end_turn();
  CHECK_FALSE(b.record("deadletters", id).has_value());
  b.advance(10);  // still failing: kept, not lost
  CHECK_FALSE(b.record("deadletters", id).has_value());

  b.store->fail_commits = false;
  b.store->fail_appends = false;
  b.advance(10);
  const auto record = b.record("deadletters", id);
  REQUIRE(record.has_value());
  CHECK((*record)["error"] == "API down");
  CHECK((*record)["payload"] == 7);
  b.advance(10);  // written once: no "exists already"
  Broker after(db.path(), config);
  CHECK(after.record("deadletters", id).has_value());
  CHECK(after.recovered == 0);  // the job itself is gone from the store
}

TEST_CASE("a SUBMIT the store cannot commit is refused and never runs") {
  TempDb db;
  Broker b(db.path());
  b.store->fail_commits = true;
  auto header = submit_header(41, "a");
  header.key = "k";
  CHECK(b.submit(header, payload_bytes(1)) == 0);
  CHECK(b.last_error.code == ErrorCode::Internal);
  CHECK(b.last_error.request_id == 41);
  b.h.ready("w1", {"a"}, "", 1);
  CHECK(b.h.jobs("w1").empty());
  CHECK(b.h.core.counters().cancelled == 1);

  b.store->fail_commits = false;
  header.request_id = 42;
  const auto flow = b.submit(header, payload_bytes(2));  // the key was released
  REQUIRE(flow != 0);
  REQUIRE(b.h.jobs("w1").size() == 1);
  CHECK(b.h.jobs("w1")[0].payload == payload_bytes(2));
  Broker after(db.path());
  CHECK(after.recovered == 1);
}

TEST_CASE("a store failing between a create's two writes fails the whole turn, not half a call") {
  // A create on one document runs without a savepoint: its entity write
  // and its event append either both commit or the turn's commit fails.
  TempDb db;
  Broker b(db.path());
  const auto create = [&](std::uint64_t request_id, const char* id) {
    const std::string body = mw::Payload::from_json(Json{{"data", {{"id", id}}}}).bytes();
    b.h.command("c1", Command::Call, bytes_of(wire::encode(wire::Call{request_id, "users", "create", std::nullopt})),
                body);
  };
  const auto reply_codes = [&](std::size_t mark) {
    std::map<std::uint64_t, std::uint16_t> codes;
    for (const auto& s : b.h.to("c1", mark)) {
      if (s.command != Command::Reply) continue;
      const auto frame = frame_of(s.header);
      const auto r = wire::decode_reply(frame);
      codes[r.request_id] = r.code;
    }
    return codes;
  };

  std::size_t mark = b.h.transport.sent.size();
  create(1, "first");  // fine on its own
  b.store->fail_appends = true;
  create(2, "second");  // its entity row lands, then its event cannot
  b.store->fail_appends = false;
  CHECK(b.h.to("c1", mark).empty());  // every reply waits for the commit
  b.h.core.end_turn();
  auto codes = reply_codes(mark);
  REQUIRE(codes.size() == 2);
  CHECK(codes[1] == static_cast<std::uint16_t>(ErrorCode::Internal));  // its commit failed with the turn
  CHECK(codes[2] != 0);
  CHECK_FALSE(b.record("users", "first"));
  CHECK_FALSE(b.record("users", "second"));
  CHECK(b.entities.pending_events().empty());

  // The next turn commits normally, events numbered without a gap.
  mark = b.h.transport.sent.size();
  create(3, "second");
  b.h.core.end_turn();
  codes = reply_codes(mark);
  REQUIRE(codes.size() == 1);
  CHECK(codes[3] == 0);
  CHECK(b.record("users", "second"));
  CHECK(b.store->last_event_seq() == 1);
}

TEST_CASE("a write-back the store rolls back publishes no event of it") {
  // The flow's result is patched into its entity in a unit; when that
  // unit fails after the patch queued its `patched` event, the event goes
  // with it: listeners never hear of a change that was not kept.
  TempDb db;
  Broker b(db.path());
  b.h.transport.subscribers = true;
  const std::string body = mw::Payload::from_json(Json{{"data", {{"id", "o1"}, {"n", 1}}}}).bytes();
  b.h.command("c1", Command::Call, bytes_of(wire::encode(wire::Call{1, "orders", "create", std::nullopt})), body);
  b.h.core.end_turn();
  b.h.ready("w1", {"a"}, "", 1);
  REQUIRE(b.submit(submit_header(2, "a", true, 0, "orders/o1"), payload_bytes(1)) != 0);
  const auto jobs = b.h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  b.h.core.end_turn();
  const std::size_t published_before = b.h.transport.published.size();

  b.store->fail_releases = true;
  b.h.done("w1", jobs[0].id, std::nullopt, mw::Payload::from_json(Json{{"total", 9}}).bytes());
  b.h.core.end_turn();
  b.store->fail_releases = false;
  for (std::size_t i = published_before; i < b.h.transport.published.size(); ++i)
    CHECK(b.h.transport.published[i].topic != "orders.patched");
  const auto order = b.record("orders", "o1");
  REQUIRE(order.has_value());
  CHECK_FALSE(order->contains("total"));
}

TEST_CASE("$mw.heartbeat: published_seq counts the stored events already published, last_seq also this turn's") {
  // A listener takes published_seq for where it stands (a restart reads
  // back from there): an event numbered in this turn is published only
  // after the turn's commit, after any heartbeat of the turn.
  const auto last_heartbeat = [](const Broker& b) {
    Json beat;
    for (const auto& p : b.h.transport.published)
      if (p.topic == mw::kHeartbeatTopic) beat = Json::from_msgpack(p.data);
    return beat;
  };
  TempDb db;
  {
    Broker b(db.path());
    b.h.transport.subscribers = true;
    const auto create = [&](std::uint64_t request, const char* id) {
      const std::string body = mw::Payload::from_json(Json{{"data", {{"id", id}}}}).bytes();
      b.h.command("c1", Command::Call, bytes_of(wire::encode(wire::Call{request, "users", "create", std::nullopt})),
                  body);
    };
    create(1, "u1");
    b.h.core.end_turn();
    create(2, "u2");  // numbered, not yet committed nor published
    b.h.now += 1000;
    b.h.tick();
    const Json beat = last_heartbeat(b);
    REQUIRE(beat.is_object());
    CHECK(beat.at("last_seq") == 2);
    CHECK(beat.at("published_seq") == 1);
    b.h.core.end_turn();
    b.h.now += 1000;
    b.h.tick();
    CHECK(last_heartbeat(b).at("published_seq") == 2);
  }
  // A broker started on the store: what it holds went out in earlier runs.
  Broker again(db.path());
  again.h.transport.subscribers = true;
  again.h.tick();
  again.h.now += 1000;
  again.h.tick();
  const Json beat = last_heartbeat(again);
  REQUIRE(beat.is_object());
  CHECK(beat.at("published_seq") == 2);
}

namespace {

// Creates (or replaces) a schedule the way `mw schedule` does: a CALL.
void put_schedule(Broker& b, const Json& doc, std::string_view method = "create") {
  const std::string body = mw::Payload::from_json(Json{{"data", doc}}).bytes();
  std::optional<std::string_view> id;
  const std::string name = doc.at("id").get<std::string>();
  if (method != "create") id = name;
  b.h.command("admin", Command::Call, bytes_of(wire::encode(wire::Call{++b.request_id, "schedules", method, id})),
              body);
  b.h.core.end_turn();
}

}  // namespace

TEST_CASE("a schedule submits its job every interval, skipping a run while the last is unfinished") {
  TempDb db;
  Broker b(db.path());
  b.h.ready("w1", {"tick"}, "", 5);
  put_schedule(b, Json{{"id", "ticker"}, {"type", "tick"}, {"payload", {{"n", 1}}}, {"every_ms", 1000},
                       {"next_at", kWallStart + 500}});
  b.advance(100);
  CHECK(b.h.jobs("w1").empty());  // not due yet
  b.advance(400);
  auto jobs = b.h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].payload == mw::Payload::from_json(Json{{"n", 1}}).bytes());
  // Its run is recorded with the job.
  auto doc = b.record("schedules", "ticker");
  REQUIRE(doc.has_value());
  CHECK((*doc)["runs"] == 1);
  CHECK((*doc)["next_at"] == kWallStart + 1500);
  CHECK((*doc)["last_flow"] == jobs[0].flow);

  b.advance(1000);  // the first run is still in flight: skipped
  CHECK(b.h.jobs("w1").size() == 1);
  CHECK(b.h.core.counters().schedule_skipped == 1);
  b.h.done("w1", jobs[0].id, std::nullopt, payload_bytes(1));
  b.advance(1000);
  CHECK(b.h.jobs("w1").size() == 2);

  SUBCASE("paused, it does not run") {
    put_schedule(b, Json{{"paused", true}, {"id", "ticker"}}, "patch");
    b.h.done("w1", b.h.jobs("w1").at(1).id, std::nullopt, payload_bytes(1));
    b.advance(3000);
    CHECK(b.h.jobs("w1").size() == 2);
  }
  SUBCASE("removed, it does not run") {
    put_schedule(b, Json{{"id", "ticker"}}, "remove");
    b.h.done("w1", b.h.jobs("w1").at(1).id, std::nullopt, payload_bytes(1));
    b.advance(3000);
    CHECK(b.h.jobs("w1").size() == 2);
  }
  SUBCASE("after a restart it goes on from its stored next run, once") {
    const auto runs = b.record("schedules", "ticker").value()["runs"].get<int>();
    Broker after(db.path(), test_config(), kWallStart + 10'000);  // several runs were missed
    after.h.ready("w2", {"tick"}, "", 5);
    after.advance(10);
    // The unfinished second run's job comes back, and the schedule skips
    // until it is done: missed runs are not made up.
    CHECK(after.h.jobs("w2").size() == 1);
    CHECK(after.record("schedules", "ticker").value()["runs"].get<int>() == runs);
  }
}

TEST_CASE("a schedule due while the broker is full skips the run, and runs on time once there is room") {
  TempDb db;
  BrokerConfig config = test_config();
  config.max_waiting_jobs = 1;
  Broker b(db.path(), config);
  REQUIRE(b.submit(submit_header(1, "other"), payload_bytes(1)) != 0);  // full: one waits
  put_schedule(b, Json{{"id", "ticker"}, {"type", "tick"}, {"every_ms", 1000}, {"next_at", kWallStart + 500}});
  b.advance(500);
  CHECK(b.h.core.counters().schedule_skipped == 1);
  CHECK(b.h.queue.depth("tick") == 0);
  CHECK(b.record("schedules", "ticker").value()["skipped"] == 1);
  CHECK(b.record("schedules", "ticker").value()["next_at"] == kWallStart + 1500);
  b.h.ready("w1", {"other"});  // takes the waiting job: room again
  b.advance(1000);
  CHECK(b.h.queue.depth("tick") == 1);
  CHECK(b.record("schedules", "ticker").value()["runs"] == 1);
}

TEST_CASE("an invalid schedule is ignored, the others run") {
  TempDb db;
  Broker b(db.path());
  b.h.ready("w1", {"tick"}, "", 5);
  put_schedule(b, Json{{"id", "broken"}, {"type", "tick"}, {"every_ms", 5}});
  put_schedule(b, Json{{"id", "fine"}, {"type", "tick"}, {"every_ms", 1000}, {"next_at", 0}});
  b.advance(10);
  CHECK(b.h.jobs("w1").size() == 1);
}

TEST_CASE("a lone worker whose lease expired gets the job again once it answers for it") {
  BrokerConfig config = test_config();
  config.type_lease_ms["slow"] = 1'000;
  Harness h(config);
  h.ready("w1", {"slow"}, "", 1);
  h.submit("c1", "slow", payload_bytes(1));
  const auto first = h.jobs("w1").at(0);
  for (int i = 0; i < 3; ++i) {
    h.now += 500;
    h.heartbeat("w1");
    h.tick();
  }
  CHECK(h.core.counters().lease_expired == 1);
  CHECK(h.jobs("w1").size() == 1);  // its slot is still taken by the stuck job
  h.done("w1", first.id, std::nullopt, payload_bytes(2));  // late: ignored, but the slot is free
  CHECK(h.core.counters().stale_replies == 1);
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[1].id == first.id);
  CHECK(jobs[1].attempt == 2);
}

TEST_CASE("a second submitter of the same key that waits gets the flow's RESULT too") {
  Harness h;
  h.ready("w1", {"a"}, "", 1);
  auto header = submit_header(1, "a", true);
  header.key = "k";
  h.command("c1", Command::Submit, bytes_of(wire::encode(header)), payload_bytes(1));
  header.request_id = 2;
  h.command("c2", Command::Submit, bytes_of(wire::encode(header)), payload_bytes(2));
  REQUIRE(h.jobs("w1").size() == 1);
  h.done("w1", h.jobs("w1")[0].id, std::nullopt, payload_bytes(9));
  REQUIRE(h.results("c1").size() == 1);
  REQUIRE(h.results("c2").size() == 1);
  CHECK(h.results("c2")[0].flow == h.results("c1")[0].flow);
  CHECK(h.results("c2")[0].payload == payload_bytes(9));
  CHECK(h.results("c1")[0].payload == payload_bytes(9));
}

TEST_CASE("a flow cancelled on request does not come back after a restart") {
  TempDb db;
  Broker b(db.path());
  const auto kept = b.submit("a", payload_bytes(1), false);
  const auto cancelled = b.submit("a", payload_bytes(2), false);
  const std::string id = std::to_string(cancelled);
  const std::size_t mark = b.h.transport.sent.size();
  b.h.command("c1", Command::Call, bytes_of(wire::encode(wire::Call{77, "$flows", "remove", std::string_view(id)})),
              std::string("\xc0", 1));
  CHECK(b.h.to("c1", mark).empty());  // the REPLY waits for the commit of the journal's delete
  b.h.core.end_turn();
  const auto replies = b.h.to("c1", mark);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].command == Command::Reply);
  CHECK(wire::decode_reply(frame_of(replies[0].header)).code == 0);

  Broker after(db.path());
  CHECK(after.recovered == 1);
  after.h.ready("w1", {"a"}, "", 5);
  REQUIRE(after.h.jobs("w1").size() == 1);
  CHECK(after.h.jobs("w1")[0].flow == kept);
}

TEST_CASE("a recovered job's wait goes on from its SUBMIT, not from the restart") {
  TempDb db;
  {
    Broker b(db.path());
    b.submit("a", payload_bytes(1), false);
  }
  Broker after(db.path(), test_config(), kWallStart + 60'000);  // a minute later
  CHECK(after.h.type_stats("a").oldest_queued_ms == 60'000);
}

TEST_CASE("a flow cancelled in the turn of its SUBMIT: ACCEPTED still comes before the RESULT") {
  TempDb db;
  Broker b(db.path());
  const std::size_t mark = b.h.transport.sent.size();
  b.h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(5, "a", true))), payload_bytes(1));
  b.h.core.end_turn();
  std::uint64_t flow = 0;
  for (const auto& s : b.h.to("c1", mark))
    if (s.command == Command::Accepted) flow = wire::decode_accepted(frame_of(s.header)).flow_id;
  REQUIRE(flow != 0);

  // The next flow is cancelled in the turn of its SUBMIT (one BATCH from a
  // pipelining client); its id is the broker's next.
  const std::size_t mark2 = b.h.transport.sent.size();
  b.h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(7, "a", true))), payload_bytes(2));
  const std::string next = std::to_string(flow + 1);
  b.h.command("c1", Command::Call, bytes_of(wire::encode(wire::Call{8, "$flows", "remove", std::string_view(next)})),
              std::string("\xc0", 1));
  b.h.core.end_turn();
  std::vector<Command> order;
  for (const auto& s : b.h.to("c1", mark2)) order.push_back(s.command);
  CHECK(order == std::vector<Command>{Command::Accepted, Command::Result, Command::Reply});
  Broker after(db.path());
  CHECK(after.recovered == 1);  // the first flow only
}

TEST_CASE("after a restart, WAIT gets a recovered flow's RESULT when it ends, and an ended flow's at once") {
  TempDb db;
  std::uint64_t waiting = 0, ended = 0;
  {
    Broker b(db.path());
    b.h.ready("w1", {"a"}, "", 1);
    ended = b.submit("a", payload_bytes(1));
    b.h.done("w1", b.h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
    b.h.core.end_turn();
    waiting = b.submit("a", payload_bytes(3));  // in flight at w1 when the broker dies
  }
  Broker after(db.path());
  REQUIRE(after.recovered == 1);
  auto wait = [&](std::uint64_t flow, std::uint64_t request_id) {
    const std::size_t mark = after.h.transport.sent.size();
    after.h.command("c7", Command::Wait, bytes_of(wire::encode(wire::WaitRequest{request_id, flow})));
    after.h.core.end_turn();
    return after.h.to("c7", mark);
  };
  CHECK(wait(waiting, 1).empty());  // known (recovered): the RESULT comes when it ends
  // A flow that ended before the restart: its kept outcome was journaled.
  const auto kept = wait(ended, 2);
  REQUIRE(kept.size() == 1);
  REQUIRE(kept[0].command == Command::Result);

  after.h.ready("w2", {"a"}, "", 1);
  after.h.done("w2", after.h.jobs("w2").at(0).id, std::nullopt, payload_bytes(4));
  after.h.core.end_turn();
  const auto results = after.h.results("c7");
  REQUIRE(results.size() == 2);
  CHECK(results[0].flow == ended);
  CHECK(results[0].outcome == "done");
  CHECK(results[0].payload == payload_bytes(2));
  CHECK(results[1].flow == waiting);
  CHECK(results[1].payload == payload_bytes(4));
}

TEST_CASE("kept outcomes survive a restart: done with its result, dead with its error, cancelled; ids go on above them") {
  TempDb db;
  std::uint64_t done = 0, dead = 0, cancelled = 0;
  {
    BrokerConfig config = test_config();
    config.default_max_attempts = 1;
    Broker b(db.path(), config);
    b.h.ready("w1", {"a"}, "", 1);
    done = b.submit("a", payload_bytes(1));
    b.h.done("w1", b.h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
    b.h.core.end_turn();
    dead = b.submit("a", payload_bytes(3));
    b.h.command("w1", Command::Fail, bytes_of(wire::encode(wire::Fail{b.h.jobs("w1").at(1).id, "disk on fire", true})));
    b.h.core.end_turn();
    cancelled = b.submit("q", payload_bytes(5));  // no worker: it waits
    const std::string id = std::to_string(cancelled);
    b.h.command("c9", Command::Call, bytes_of(wire::encode(wire::Call{77, "$flows", "remove", std::string_view(id)})),
                mw::Payload::from_json(Json::object()).bytes());
    b.h.core.end_turn();
  }
  // Restarted with an earlier clock: its ids must still not meet the old ones.
  Broker after(db.path(), test_config(), kWallStart - 60'000);
  std::map<std::uint64_t, ResultMsg> told;
  for (const auto flow : {done, dead, cancelled}) {
    after.h.command("c7", Command::Wait, bytes_of(wire::encode(wire::WaitRequest{flow, flow})));
    after.h.core.end_turn();
  }
  for (const auto& r : after.h.results("c7")) told.emplace(r.flow, r);
  REQUIRE(told.size() == 3);
  CHECK(told.at(done).outcome == "done");
  CHECK(told.at(done).payload == payload_bytes(2));
  CHECK(told.at(dead).outcome == "dead");
  CHECK(told.at(dead).error.find("disk on fire") != std::string::npos);
  CHECK(told.at(dead).payload == payload_bytes(3));
  CHECK(told.at(cancelled).outcome == "cancelled");
  const auto next = after.submit("q", payload_bytes(6));
  CHECK(next > std::max({done, dead, cancelled}));
}

TEST_CASE("the store keeps only the newest --keep-results outcomes; --keep-results 0 keeps none across a restart") {
  TempDb db;
  std::vector<std::uint64_t> flows;
  std::uint64_t keep = 3;
  SUBCASE("--keep-results 3") { keep = 3; }
  SUBCASE("--keep-results 0") { keep = 0; }
  {
    BrokerConfig config = test_config();
    config.keep_results = keep;
    Broker b(db.path(), config);
    b.h.ready("w1", {"a"}, "", 1);
    for (int i = 0; i < 5; ++i) {
      flows.push_back(b.submit("a", payload_bytes(i)));
      b.h.done("w1", b.h.jobs("w1").back().id, std::nullopt, payload_bytes(10 + i));
      b.h.core.end_turn();
    }
    b.advance(2000);  // the once-a-second trim is due
  }
  BrokerConfig config = test_config();
  config.keep_results = 100;  // the restarted broker would keep them all: the store's trim decides
  Broker after(db.path(), config);
  const std::vector<std::uint64_t> newest(flows.end() - static_cast<std::ptrdiff_t>(keep), flows.end());
  CHECK(after.flows_told(flows) == newest);
}

TEST_CASE("the kept outcomes are trimmed once after the start, then only after outcomes were written") {
  TempDb db;
  Broker b(db.path());
  b.advance(2000);
  CHECK(b.store->outcome_trims == 1);  // rows an earlier run left beyond today's limits
  b.advance(2000);
  b.advance(2000);
  CHECK(b.store->outcome_trims == 1);  // a quiet broker does not scan the table
  b.h.ready("w1", {"a"}, "", 1);
  b.submit("a", payload_bytes(1));
  b.h.done("w1", b.h.jobs("w1").back().id, std::nullopt, payload_bytes(2));
  b.h.core.end_turn();
  b.advance(2000);
  CHECK(b.store->outcome_trims == 2);
  b.advance(2000);
  CHECK(b.store->outcome_trims == 2);

  // A trim whose commit fails is tried again, though no outcome came since.
  b.h.ready("w2", {"a"}, "", 1);  // w1 was silent long enough to be dropped
  b.submit("a", payload_bytes(3));
  b.h.done("w2", b.h.jobs("w2").back().id, std::nullopt, payload_bytes(4));
  b.h.core.end_turn();
  b.store->fail_commits = true;
  b.advance(2000);
  CHECK(b.store->outcome_trims == 3);
  b.store->fail_commits = false;
  b.advance(2000);
  CHECK(b.store->outcome_trims == 4);
  b.advance(2000);
  CHECK(b.store->outcome_trims == 4);
}

TEST_CASE("a flow whose SUBMIT could not be committed is not kept as ended, even if it ran in that turn") {
  TempDb db;
  Broker b(db.path());
  b.h.ready("w1", {"a"}, "", 1);
  b.store->fail_commits = true;
  const std::size_t mark = b.h.transport.sent.size();
  b.h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(9, "a", false))), payload_bytes(1));
  const auto job = b.h.jobs("w1").at(0);  // sent before the commit
  b.h.done("w1", job.id, std::nullopt, payload_bytes(2));
  b.h.core.end_turn();  // the commit fails: the SUBMIT is refused
  bool refused = false;
  for (const auto& s : b.h.to("c1", mark)) refused |= s.command == Command::Error;
  REQUIRE(refused);
  b.store->fail_commits = false;
  const std::size_t mark2 = b.h.transport.sent.size();
  b.h.command("c7", Command::Wait, bytes_of(wire::encode(wire::WaitRequest{3, job.flow})));
  const auto sent = b.h.to("c7", mark2);
  REQUIRE(sent.size() == 1);
  CHECK(Harness::error_of(sent[0]).code == ErrorCode::NotFound);

  // Nor is it journaled as ended, though a later turn committed.
  b.h.core.end_turn();
  Broker after(db.path());
  const std::size_t mark3 = after.h.transport.sent.size();
  after.h.command("c7", Command::Wait, bytes_of(wire::encode(wire::WaitRequest{4, job.flow})));
  const auto later = after.h.to("c7", mark3);
  REQUIRE(later.size() == 1);
  CHECK(Harness::error_of(later[0]).code == ErrorCode::NotFound);
}

TEST_CASE("a flow's stage count survives a restart: a loop still ends at its limit") {
  TempDb db;
  auto config = test_config();
  config.max_stages = 3;
  {
    Broker b(db.path(), config);
    b.h.ready("w1", {"a"}, "a", 1);
    b.submit("a", payload_bytes(1), false);
    b.h.done("w1", b.h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
    b.h.core.end_turn();  // stage 2 is journaled, in flight at w1 when the broker dies
  }
  Broker after(db.path(), config);
  REQUIRE(after.recovered == 1);
  after.h.ready("w2", {"a"}, "a", 1);
  after.h.done("w2", after.h.jobs("w2").at(0).id, std::nullopt, payload_bytes(3));  // stage 2 again
  after.h.done("w2", after.h.jobs("w2").at(1).id, std::nullopt, payload_bytes(4));  // stage 3
  after.h.core.end_turn();
  CHECK(after.h.jobs("w2").size() == 2);
  CHECK(after.h.core.counters().dead == 1);  // the limit counted the stages run before the restart
  CHECK(after.h.core.stats(after.h.now).dead == 1);
}

TEST_CASE("a store made before flows counted their stages is read, and gains the column") {
  TempDb db;
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.path().c_str(), &raw) == SQLITE_OK);
    // The jobs table as brokers before --max-stages made it, with one job.
    const char* old_schema =
        "CREATE TABLE jobs (flow INTEGER PRIMARY KEY, id INTEGER NOT NULL, type TEXT NOT NULL, "
        "attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, priority INTEGER NOT NULL, "
        "lease_ms INTEGER NOT NULL, due_at INTEGER NOT NULL, submitted_at INTEGER NOT NULL, key TEXT, entity TEXT, "
        "payload BLOB NOT NULL);"
        "INSERT INTO jobs VALUES (7, 9, 'a', 0, 5, 0, 0, 0, 1, NULL, NULL, x'2a');";
    REQUIRE(sqlite3_exec(raw, old_schema, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  {
    Broker b(db.path());
    CHECK(b.recovered == 1);
    b.h.ready("w1", {"a"}, "b", 1);
    const auto jobs = b.h.jobs("w1");
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].flow == 7);
    CHECK(jobs[0].payload == "\x2a");
    b.h.done("w1", jobs[0].id, std::nullopt, payload_bytes(1));  // stage 2 is journaled, with its stage
    b.h.core.end_turn();
  }
  std::vector<mw::broker::StoredJob> stored;
  mw::broker::open_sqlite_store(db.path())->load_jobs([&](mw::broker::StoredJob&& j) { stored.push_back(std::move(j)); });
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].flow_id == 7);
  CHECK(stored[0].type == "b");
  CHECK(stored[0].stage == 1);  // the second stage, in the column the old table gained
}

TEST_CASE("the store's kept outcomes: one row per turn, read back newest within the limit, oldest first") {
  TempDb db;
  auto outcome = [](std::uint64_t flow) {
    mw::broker::FinishedFlow f;
    f.flow_id = flow;
    f.outcome = flow % 2 ? mw::kOutcomeDone : mw::kOutcomeDead;
    f.error = flow % 2 ? "" : "why " + std::to_string(flow);
    f.last_type = "t";
    f.attempts = 2;
    f.submitted_at = 100;
    f.finished_at = 200 + static_cast<std::int64_t>(flow);
    f.entity = "users/1";
    f.key = "k" + std::to_string(flow);
    f.result = payload_bytes(static_cast<int>(flow));
    return f;
  };
  {
    auto store = mw::broker::open_sqlite_store(db.path());
    store->begin();
    const std::vector<mw::broker::FinishedFlow> turn1{outcome(1), outcome(2), outcome(3)}, turn2{outcome(4), outcome(5)};
    store->put_outcomes(turn1);
    store->put_outcomes(turn2);
    store->commit();
  }
  auto store = mw::broker::open_sqlite_store(db.path());
  auto load = [&](std::uint64_t limit, std::uint64_t limit_bytes = UINT64_MAX) {
    std::vector<mw::broker::FinishedFlow> out;
    store->load_outcomes(limit, limit_bytes, [&](mw::broker::FinishedFlow&& f) { out.push_back(std::move(f)); });
    return out;
  };
  const auto four = load(4);  // cuts into the older row
  REQUIRE(four.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(four[i].flow_id == i + 2);
  const auto& two = four[0];
  CHECK(two.outcome == mw::kOutcomeDead);
  CHECK(two.error == "why 2");
  CHECK(two.last_type == "t");
  CHECK(two.attempts == 2);
  CHECK(two.submitted_at == 100);
  CHECK(two.finished_at == 202);
  CHECK(two.entity == "users/1");
  CHECK(two.key == "k2");
  CHECK(two.result == payload_bytes(2));
  CHECK(load(100).size() == 5);
  CHECK(load(0).empty());
  // A byte limit the newest row reaches: only that row is read.
  CHECK(load(100, 1).size() == 2);

  store->begin();
  store->trim_outcomes(100, 1);  // the newest row reaches the byte limit: the older row goes
  store->commit();
  CHECK(load(100).size() == 2);
  store->begin();
  store->trim_outcomes(0, UINT64_MAX);
  store->commit();
  CHECK(load(100).empty());
}

TEST_CASE("the store splits a turn's outcomes into rows of bounded size, and reads them all back") {
  TempDb db;
  std::vector<mw::broker::FinishedFlow> turn;
  for (std::uint64_t flow = 1; flow <= 5; ++flow) {
    mw::broker::FinishedFlow f;
    f.flow_id = flow;
    f.outcome = mw::kOutcomeDone;
    f.last_type = "t";
    f.result = std::string(3 << 20, 'x');  // 3 MiB each: more than one fits no row
    turn.push_back(std::move(f));
  }
  auto store = mw::broker::open_sqlite_store(db.path());
  store->begin();
  store->put_outcomes(turn);
  store->commit();
  CHECK(sql_number(db.path(), "SELECT count(*) FROM outcomes") >= 3);
  CHECK(sql_number(db.path(), "SELECT max(length(records)) FROM outcomes") < (8 << 20));
  std::vector<std::uint64_t> read;
  store->load_outcomes(100, UINT64_MAX, [&](mw::broker::FinishedFlow&& f) {
    CHECK(f.result.size() == (3u << 20));
    read.push_back(f.flow_id);
  });
  CHECK(read == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("commits that keep failing hold back at most the outcomes the broker keeps, then write them once") {
  TempDb db;
  BrokerConfig config = test_config();
  config.keep_results = 3;
  Broker b(db.path(), config);
  std::vector<std::uint64_t> flows;
  for (int i = 0; i < 5; ++i) flows.push_back(b.submit("a", payload_bytes(i)));  // accepted, committed, waiting
  b.store->fail_commits = true;
  b.h.ready("w1", {"a"}, "", 5);
  for (const auto& job : b.h.jobs("w1")) {
    b.h.done("w1", job.id, std::nullopt, payload_bytes(100 + static_cast<int>(job.flow - flows[0])));
    b.h.core.end_turn();  // fails: the outcomes wait for the next commit
  }
  b.store->fail_commits = false;
  b.h.core.end_turn();  // the held-back writes go in now, once
  CHECK(sql_number(db.path(), "SELECT coalesce(sum(flows), 0) FROM outcomes") == 3);  // the newest three, each once
  Broker after(db.path(), config);
  CHECK(after.flows_told(flows) == std::vector<std::uint64_t>(flows.end() - 3, flows.end()));
}
