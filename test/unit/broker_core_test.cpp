// Unit tests of the broker as a state machine (mw/broker/core.hpp), driven
// without sockets: frames go in as a ROUTER would deliver them, a fake clock
// is passed to handle()/tick(), and a RecordingTransport keeps what the core
// sends. Also the worker registry, the memory queue and topic matching.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "core_harness.hpp"

using namespace core_test;

// ---- registration ---------------------------------------------------------------

TEST_CASE("HELLO is answered with WELCOME carrying the broker's settings") {
  Harness h;
  h.hello("client-1");
  const auto sent = h.to("client-1");
  REQUIRE(sent.size() == 1);
  REQUIRE(sent[0].command == Command::Welcome);
  const auto frame = frame_of(sent[0].header);
  const auto w = wire::decode_welcome(frame);
  CHECK(w.pub_address == "tcp://pub.example:5556");
  CHECK(w.heartbeat_ms == 1000);
  CHECK(w.broker_version == mw::kVersion);
  CHECK(w.max_message_bytes == std::uint64_t{1} << 20);
}

TEST_CASE("HELLO with another protocol version gets ERROR, not WELCOME") {
  Harness h;
  h.hello("client-1", 2);
  const auto sent = h.to("client-1");
  REQUIRE(sent.size() == 1);
  CHECK(Harness::error_of(sent[0]).code == ErrorCode::BadProtocol);
}

TEST_CASE("READY registers a worker with its types, next type and credit") {
  Harness h;
  h.transport.subscribers = true;
  h.ready("w1", {"resize", "thumb"}, "store", 3);
  REQUIRE(h.worker_count() == 1);
  const auto* w = h.worker("w1");
  REQUIRE(w != nullptr);
  CHECK(w->types == std::vector<std::string>{"resize", "thumb"});
  CHECK(w->next == "store");
  CHECK(w->credit == 3);
  CHECK(w->host == "testhost");
  CHECK(w->pid == 1234);
  CHECK(h.core.workers().count("resize") == 1);
  CHECK(h.core.workers().count("thumb") == 1);
  CHECK(h.core.workers().count("store") == 0);
  CHECK(h.type_stats("resize").workers == 1);
  CHECK(h.to("w1").empty());  // READY has no reply

  REQUIRE(h.transport.published.size() == 1);
  CHECK(h.transport.published[0].topic == "$mw.worker.ready");
  const auto meta_frame = frame_of(h.transport.published[0].meta);
  CHECK(wire::decode_event_meta(meta_frame).type == "resize,thumb");
  // Who it is, for a monitor listening to the events.
  const auto ready_data = mw::Payload::adopt(h.transport.published[0].data).to_json();
  CHECK(ready_data["types"] == nlohmann::json{"resize", "thumb"});
  CHECK(ready_data["next"] == "store");
  CHECK(ready_data["host"] == "testhost");
  CHECK(ready_data["pid"] == 1234);
  CHECK(ready_data["credit"] == 3);
  CHECK(ready_data["worker"].get<std::string>().size() > 0);

  SUBCASE("a second READY re-registers, keeping one entry") {
    h.ready("w1", {"store"}, "", 5);
    CHECK(h.worker_count() == 1);
    CHECK(h.core.workers().count("resize") == 0);
    CHECK(h.core.workers().count("store") == 1);
    CHECK(h.worker("w1")->credit == 5);
  }

  SUBCASE("credit 0: registered, and given nothing until a READY gives it room") {
    h.submit("c1", "crop", payload_bytes(8));
    h.ready("w2", {"crop"}, "", 0);
    REQUIRE(h.worker("w2") != nullptr);
    CHECK(h.jobs("w2").empty());
    CHECK(h.queue.depth("crop") == 1);
    h.ready("w2", {"crop"}, "", 1);
    CHECK(h.jobs("w2").size() == 1);
    CHECK(h.queue.depth("crop") == 0);
  }
}

TEST_CASE("$mw.heartbeat is published every heartbeat interval while someone subscribes") {
  Harness h;
  h.transport.subscribers = true;
  h.tick();
  const auto heartbeats = [&] {
    std::vector<nlohmann::json> out;
    for (const auto& p : h.transport.published)
      if (p.topic == mw::kHeartbeatTopic) out.push_back(nlohmann::json::from_msgpack(p.data));
    return out;
  };
  CHECK(heartbeats().empty());
  h.now += 1000;
  h.tick();
  REQUIRE(heartbeats().size() == 1);
  const auto beat = heartbeats().at(0);
  CHECK(beat.at("broker") == 1);  // this run's id: its first job id
  CHECK(beat.at("last_seq") == 0);
  CHECK(beat.at("durable") == false);
  CHECK(beat.at("interval_ms") == 1000);
  h.now += 1000;
  h.tick();
  CHECK(heartbeats().size() == 2);
  h.transport.subscribers = false;
  h.now += 1000;
  h.tick();
  CHECK(heartbeats().size() == 2);
}

TEST_CASE("no event is built when nobody subscribes") {
  Harness h;
  h.ready("w1", {"a"});
  const auto flow = h.submit("c1", "a", payload_bytes(4));
  h.done("w1", h.jobs("w1").at(0).id, std::nullopt, payload_bytes(4));
  CHECK(flow != 0);
  CHECK(h.transport.published.empty());
}

// ---- routing, ACCEPTED, RESULT ------------------------------------------------------

TEST_CASE("a job goes only to a worker of its type") {
  Harness h;
  h.ready("wa", {"a"});
  h.ready("wb", {"b"});
  const std::string payload = payload_bytes(10);
  const auto flow = h.submit("c1", "b", payload);
  CHECK(h.jobs("wa").empty());
  const auto jobs = h.jobs("wb");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].type == "b");
  CHECK(jobs[0].flow == flow);
  CHECK(jobs[0].attempt == 1);
  CHECK(jobs[0].payload == payload);
}

TEST_CASE("a job with no worker waits and is dispatched the moment one sends READY") {
  Harness h;
  h.ready("wa", {"a"});
  const std::string payload = payload_bytes(300, 7);
  const auto flow = h.submit("c1", "c", payload);
  CHECK(h.queue.depth("c") == 1);
  CHECK(h.jobs("wa").empty());
  CHECK(h.type_stats("c").queued == 1);
  CHECK(h.type_stats("c").workers == 0);

  h.now += 5000;
  h.ready("wc", {"x", "c"});
  const auto jobs = h.jobs("wc");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].type == "c");
  CHECK(jobs[0].flow == flow);
  CHECK(jobs[0].payload == payload);
  CHECK(h.queue.depth("c") == 0);
  CHECK(h.core.in_flight() == 1);
}

TEST_CASE("ACCEPTED carries the request id and a flow id; RESULT forwards the final payload byte for byte") {
  Harness h;
  h.ready("w1", {"a"});
  const std::string submitted = payload_bytes(1000, 1);
  const std::string result = payload_bytes(2000, 99);

  const auto flow = h.submit("c1", "a", submitted);  // checks the request id itself
  CHECK(flow != 0);
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].flow == flow);
  CHECK(jobs[0].payload == submitted);
  CHECK(h.results("c1").empty());

  h.done("w1", jobs[0].id, std::nullopt, result);
  const auto results = h.results("c1");
  REQUIRE(results.size() == 1);
  CHECK(results[0].flow == flow);
  CHECK(results[0].outcome == mw::kOutcomeDone);
  CHECK(results[0].error.empty());
  CHECK(results[0].last_type == "a");
  CHECK(results[0].attempts == 1);
  CHECK(results[0].payload == result);
  CHECK(h.core.counters().flows_done == 1);
  CHECK(h.core.in_flight() == 0);
  CHECK(h.worker("w1")->jobs.empty());
}

TEST_CASE("flows get distinct ids; a submitter that does not wait gets no RESULT") {
  Harness h;
  h.transport.subscribers = true;
  h.ready("w1", {"a"}, "", 2);
  const auto f1 = h.submit("c1", "a", payload_bytes(3), false);
  const auto f2 = h.submit("c1", "a", payload_bytes(3), false);
  CHECK(f1 != f2);
  for (const auto& j : h.jobs("w1")) h.done("w1", j.id, std::nullopt, payload_bytes(5, 3));
  CHECK(h.results("c1").empty());
  CHECK(h.core.counters().flows_done == 2);
  // Listeners still hear the flow end, with its result.
  std::size_t flow_done_events = 0;
  for (const auto& p : h.transport.published) {
    if (p.topic != "$mw.flow.done") continue;
    ++flow_done_events;
    CHECK(p.data == payload_bytes(5, 3));
  }
  CHECK(flow_done_events == 2);
}

// ---- pipelines -------------------------------------------------------------------

TEST_CASE("pipelines") {
  Harness h;
  const std::string p0 = payload_bytes(20, 0), p1 = payload_bytes(20, 1), p2 = payload_bytes(20, 2);

  SUBCASE("the static next type from READY makes the result a job of that type") {
    h.ready("wa", {"a"}, "b");
    h.ready("wb", {"b"});
    const auto flow = h.submit("c1", "a", p0);
    const auto ja = h.jobs("wa").at(0);
    h.done("wa", ja.id, std::nullopt, p1);
    CHECK(h.results("c1").empty());
    const auto jbs = h.jobs("wb");
    REQUIRE(jbs.size() == 1);
    CHECK(jbs[0].type == "b");
    CHECK(jbs[0].flow == flow);
    CHECK(jbs[0].id != ja.id);
    CHECK(jbs[0].attempt == 1);
    CHECK(jbs[0].payload == p1);
    h.done("wb", jbs[0].id, std::nullopt, p2);
    const auto results = h.results("c1");
    REQUIRE(results.size() == 1);
    CHECK(results[0].flow == flow);
    CHECK(results[0].last_type == "b");
    CHECK(results[0].payload == p2);
    CHECK(h.core.counters().flows_done == 1);
  }

  SUBCASE("DONE's next overrides the static next") {
    h.ready("wa", {"a"}, "b");
    h.ready("wb", {"b"});
    h.ready("wc", {"c"});
    const auto flow = h.submit("c1", "a", p0);
    h.done("wa", h.jobs("wa").at(0).id, std::string("c"), p1);
    CHECK(h.jobs("wb").empty());
    const auto jcs = h.jobs("wc");
    REQUIRE(jcs.size() == 1);
    CHECK(jcs[0].type == "c");
    CHECK(jcs[0].flow == flow);
    CHECK(jcs[0].payload == p1);
  }

  SUBCASE("DONE's next \"\" ends the flow even though READY had a next") {
    h.ready("wa", {"a"}, "b");
    h.ready("wb", {"b"});
    const auto flow = h.submit("c1", "a", p0);
    h.done("wa", h.jobs("wa").at(0).id, std::string(""), p1);
    CHECK(h.jobs("wb").empty());
    CHECK(h.queue.depth("b") == 0);
    const auto results = h.results("c1");
    REQUIRE(results.size() == 1);
    CHECK(results[0].flow == flow);
    CHECK(results[0].last_type == "a");
    CHECK(results[0].payload == p1);
    CHECK(h.core.counters().flows_done == 1);
  }

  SUBCASE("three stages keep the flow id, each stage has its own job id") {
    h.ready("wa", {"a"}, "b");
    h.ready("wb", {"b"}, "c");
    h.ready("wc", {"c"});
    const auto flow = h.submit("c1", "a", p0);
    const auto ja = h.jobs("wa").at(0);
    h.done("wa", ja.id, std::nullopt, p1);
    const auto jb = h.jobs("wb").at(0);
    h.done("wb", jb.id, std::nullopt, p2);
    const auto jc = h.jobs("wc").at(0);
    CHECK(ja.flow == flow);
    CHECK(jb.flow == flow);
    CHECK(jc.flow == flow);
    CHECK(std::set<std::uint64_t>{ja.id, jb.id, jc.id}.size() == 3);
    CHECK(jc.payload == p2);
    h.done("wc", jc.id, std::nullopt, p0);
    REQUIRE(h.results("c1").size() == 1);
    CHECK(h.results("c1")[0].last_type == "c");
    CHECK(h.core.counters().flows_done == 1);
  }

  SUBCASE("a next stage with no worker waits in its queue") {
    h.ready("wa", {"a"}, "b");
    h.submit("c1", "a", p0);
    h.done("wa", h.jobs("wa").at(0).id, std::nullopt, p1);
    CHECK(h.queue.depth("b") == 1);
    CHECK(h.results("c1").empty());
    h.ready("wb", {"b"});
    REQUIRE(h.jobs("wb").size() == 1);
    CHECK(h.jobs("wb")[0].payload == p1);
  }
}

// ---- credit and load balancing ------------------------------------------------------

TEST_CASE("a worker never holds more jobs than its credit; more follow each DONE") {
  Harness h;
  h.ready("w1", {"a"}, "", 2);
  for (int i = 0; i < 5; ++i) h.submit("c1", "a", payload_bytes(8, static_cast<unsigned char>(i)));
  CHECK(h.jobs("w1").size() == 2);
  CHECK(h.queue.depth("a") == 3);
  CHECK(h.type_stats("a").in_flight == 2);
  CHECK(h.type_stats("a").queued == 3);

  std::size_t finished = 0;
  while (finished < 5) {
    const auto jobs = h.jobs("w1");
    REQUIRE(jobs.size() > finished);
    CHECK(jobs.size() - finished <= 2);  // in flight
    h.done("w1", jobs[finished].id, std::nullopt, payload_bytes(1));
    ++finished;
    CHECK(h.jobs("w1").size() == std::min<std::size_t>(finished + 2, 5));
  }
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 5);
  // FIFO: the jobs came in the order they were submitted.
  for (std::size_t i = 0; i < 5; ++i) CHECK(jobs[i].payload == payload_bytes(8, static_cast<unsigned char>(i)));
  CHECK(h.core.counters().flows_done == 5);
}

TEST_CASE("--type-rate: no period sees more than N jobs of a type start; the rest wait for their turn") {
  auto config = test_config();
  config.type_rates["a"] = {2, 1000};  // at most two starts in any second
  Harness h(config);
  h.ready("w1", {"a"}, "", 10);
  h.ready("wb", {"b"}, "", 10);
  const auto t0 = h.now;
  for (int i = 0; i < 3; ++i) h.submit("c1", "a", payload_bytes(1), false);
  h.now += 400;
  for (int i = 0; i < 3; ++i) h.submit("c1", "a", payload_bytes(1), false);
  h.submit("c1", "b", payload_bytes(1), false);
  CHECK(h.jobs("w1").size() == 2);  // four wait though the worker has room for eight more
  CHECK(h.jobs("wb").size() == 1);  // other types are not held back
  CHECK(h.type_stats("a").queued == 4);
  CHECK(h.type_stats("a").rate_max == 2);
  CHECK(h.type_stats("a").rate_period_ms == 1000);
  CHECK(h.type_stats("b").rate_max == 0);

  h.now = t0 + 999;
  h.tick();
  CHECK(h.jobs("w1").size() == 2);
  h.now = t0 + 1000;  // a second after the first two
  h.tick();
  CHECK(h.jobs("w1").size() == 4);
  // A DONE frees credit, not room in the window.
  h.done("w1", h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
  CHECK(h.jobs("w1").size() == 4);
  h.now = t0 + 2000;
  h.tick();
  CHECK(h.jobs("w1").size() == 6);
  CHECK(h.type_stats("a").queued == 0);
}

TEST_CASE("--type-rate: a JOB that never left gives its start back") {
  auto config = test_config();
  config.type_rates["a"] = {1, 60'000};
  Harness h(config);
  h.ready("w1", {"a"}, "", 5);
  h.transport.fail_for["w1"] = SendResult::WouldBlock;  // its pipe is full: the JOB stays here
  h.submit("c1", "a", payload_bytes(1), false);
  CHECK(h.type_stats("a").queued == 1);
  h.transport.fail_for.clear();
  h.heartbeat("w1");  // speaks again: unpaused, and the job goes now, not a minute later
  CHECK(h.jobs("w1").size() == 1);
  CHECK(h.type_stats("a").in_flight == 1);
}

TEST_CASE("TypeRates: a sliding window of the last N starts") {
  mw::broker::TypeRates rates({{"slow", {3, 60'000}}, {"off", {0, 1000}}});
  CHECK(rates.any());
  CHECK(rates.try_take("other", 0));  // not limited
  CHECK(rates.try_take("off", 0));    // a limit of 0 is none
  CHECK_FALSE(rates.next_room_ms("other", 0).has_value());
  CHECK(rates.try_take("slow", 1000));
  CHECK(rates.try_take("slow", 5000));
  CHECK(rates.try_take("slow", 9000));
  CHECK_FALSE(rates.try_take("slow", 9000));
  CHECK(rates.next_room_ms("slow", 9000) == 61'000);  // when the first start is a minute old
  CHECK_FALSE(rates.try_take("slow", 60'999));
  CHECK(rates.try_take("slow", 61'000));
  CHECK_FALSE(rates.try_take("slow", 61'000));
  CHECK(rates.next_room_ms("slow", 61'000) == 65'000);
  rates.refund("slow");  // the start at 61 000 never happened
  CHECK(rates.try_take("slow", 61'000));
  CHECK_FALSE(mw::broker::TypeRates().any());
}

TEST_CASE("a flow that loops back on itself dies at its stage limit (--max-stages)") {
  auto config = test_config();
  config.max_stages = 3;
  Harness h(config);
  h.ready("w1", {"a"}, "a", 1);  // --next is its own type
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  for (unsigned char stage = 0; stage < 3; ++stage) {
    const auto jobs = h.jobs("w1");
    REQUIRE(jobs.size() == stage + 1u);  // stages 1, 2 and 3 run
    CHECK(h.results("c1").empty());
    h.done("w1", jobs.back().id, std::nullopt, payload_bytes(2, stage));
  }
  CHECK(h.jobs("w1").size() == 3);  // no fourth stage
  const auto results = h.results("c1");
  REQUIRE(results.size() == 1);
  CHECK(results[0].flow == flow);
  CHECK(results[0].outcome == "dead");
  CHECK(results[0].last_type == "a");
  CHECK(results[0].error.find("had run 3 stage(s)") != std::string::npos);
  CHECK(results[0].payload == payload_bytes(2, 2));  // what the fourth stage would have got
  CHECK(h.core.counters().dead == 1);
  CHECK(h.core.counters().flows_done == 0);
  CHECK(h.type_stats("a").queued == 0);
}

TEST_CASE("the least-loaded worker (jobs relative to credit) gets the next job") {
  Harness h;
  h.ready("big", {"a"}, "", 10);
  for (int i = 0; i < 4; ++i) h.submit("c1", "a", payload_bytes(2));
  REQUIRE(h.jobs("big").size() == 4);  // 4/10

  h.ready("small", {"a"}, "", 2);
  h.submit("c1", "a", payload_bytes(2));
  CHECK(h.jobs("small").size() == 1);  // 0/2 beat 4/10
  CHECK(h.jobs("big").size() == 4);

  h.submit("c1", "a", payload_bytes(2));
  CHECK(h.jobs("big").size() == 5);  // 4/10 beat 1/2
  CHECK(h.jobs("small").size() == 1);

  h.done("small", h.jobs("small").at(0).id, std::nullopt, payload_bytes(1));
  h.submit("c1", "a", payload_bytes(2));
  CHECK(h.jobs("small").size() == 2);  // 0/2 beat 5/10
  CHECK(h.jobs("big").size() == 5);
}

TEST_CASE("workers of one type share the load") {
  Harness h;
  SUBCASE("equal credit: an even split") {
    h.ready("w1", {"a"}, "", 10);
    h.ready("w2", {"a"}, "", 10);
    for (int i = 0; i < 10; ++i) h.submit("c1", "a", payload_bytes(2));
    CHECK(h.jobs("w1").size() == 5);
    CHECK(h.jobs("w2").size() == 5);
  }
  SUBCASE("credit 1 each: one job each, the rest waits") {
    h.ready("w1", {"a"});
    h.ready("w2", {"a"});
    h.ready("w3", {"a"});
    for (int i = 0; i < 4; ++i) h.submit("c1", "a", payload_bytes(2));
    CHECK(h.jobs("w1").size() == 1);
    CHECK(h.jobs("w2").size() == 1);
    CHECK(h.jobs("w3").size() == 1);
    CHECK(h.queue.depth("a") == 1);
  }
}

// ---- lost workers -------------------------------------------------------------------

TEST_CASE("a silent worker is dropped after heartbeat_ms x liveness and its job goes first to another worker") {
  Harness h;
  h.transport.subscribers = true;
  const std::int64_t t0 = h.now;
  h.ready("w1", {"a"});
  h.submit("c1", "a", payload_bytes(4, 1));  // X1 -> w1
  h.submit("c1", "a", payload_bytes(4, 2));  // X2 queued
  h.submit("c1", "a", payload_bytes(4, 3));  // X3 queued
  h.ready("w2", {"a"});                      // takes X2
  const auto x1 = h.jobs("w1").at(0);
  const auto x2 = h.jobs("w2").at(0);
  CHECK(x2.payload == payload_bytes(4, 2));

  // w2 keeps talking, w1 says nothing; the clock runs as the server runs it.
  std::int64_t dropped_at = -1;
  for (std::int64_t t = t0 + 100; t <= t0 + 6000; t += 100) {
    h.now = t;
    if ((t - t0) % 1000 == 0) h.heartbeat("w2");
    h.tick();
    if (dropped_at < 0 && !h.worker("w1")) dropped_at = t;
    CHECK(h.worker("w2") != nullptr);
  }
  REQUIRE(dropped_at > 0);
  CHECK(dropped_at > t0 + 3000);         // not before heartbeat_ms x liveness of silence
  CHECK(dropped_at <= t0 + 3000 + 1000);  // and within one heartbeat after
  CHECK(h.core.counters().requeued == 1);
  CHECK(h.core.workers().count("a") == 1);

  // Heartbeats went to the live worker.
  const auto to_w2 = h.to("w2");
  CHECK(std::count_if(to_w2.begin(), to_w2.end(), [](const Sent& s) { return s.command == Command::Heartbeat; }) >= 3);

  const Published* gone = nullptr;
  for (const auto& p : h.transport.published)
    if (p.topic == "$mw.worker.gone") gone = &p;
  REQUIRE(gone != nullptr);
  CHECK(mw::Payload::adopt(gone->data).to_json()["requeued"] == 1);  // its job went back

  // X1 was requeued at the front: it comes before X3, which waited longer in the queue.
  CHECK(h.queue.depth("a") == 2);
  h.done("w2", x2.id, std::nullopt, payload_bytes(1));
  auto jobs = h.jobs("w2");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[1].id == x1.id);
  CHECK(jobs[1].flow == x1.flow);
  CHECK(jobs[1].attempt == 2);
  CHECK(jobs[1].payload == payload_bytes(4, 1));
  h.done("w2", x1.id, std::nullopt, payload_bytes(1));
  jobs = h.jobs("w2");
  REQUIRE(jobs.size() == 3);
  CHECK(jobs[2].payload == payload_bytes(4, 3));
  CHECK(jobs[2].attempt == 1);
}

TEST_CASE("a worker that keeps heartbeating is never dropped") {
  Harness h;
  h.ready("w1", {"a"});
  for (int i = 1; i <= 20; ++i) {
    h.now += 900;
    h.heartbeat("w1");
    h.tick();
  }
  CHECK(h.worker("w1") != nullptr);
}

TEST_CASE("DISCONNECT from a worker requeues its jobs to another worker") {
  Harness h;
  h.ready("w1", {"a"});
  h.submit("c1", "a", payload_bytes(4));
  const auto x = h.jobs("w1").at(0);
  h.ready("w2", {"a"});
  CHECK(h.jobs("w2").empty());
  h.disconnect("w1");
  CHECK(h.worker("w1") == nullptr);
  CHECK(h.core.counters().requeued == 1);
  const auto jobs = h.jobs("w2");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].id == x.id);
  CHECK(jobs[0].flow == x.flow);
  CHECK(jobs[0].payload == x.payload);
  // A worker that says DISCONNECT reported every job it started, so what
  // it hands back was never started: that delivery is not an attempt.
  CHECK(jobs[0].attempt == 1);
}

TEST_CASE("jobs handed back by DISCONNECT are requeued even on their last attempt") {
  Harness h;
  h.ready("w1", {"a"});
  h.submit("c1", "a", payload_bytes(4), true, 1);
  h.disconnect("w1");
  CHECK(h.core.counters().dead == 0);
  CHECK(h.queue.depth("a") == 1);
  CHECK(h.results("c1").empty());
  h.ready("w2", {"a"});
  REQUIRE(h.jobs("w2").size() == 1);
  CHECK(h.jobs("w2")[0].attempt == 1);
}

TEST_CASE("a lost worker's jobs come back in the order they were dispatched") {
  Harness h;
  h.ready("w1", {"a"}, "", 3);
  for (int i = 1; i <= 4; ++i) h.submit("c1", "a", payload_bytes(4, static_cast<unsigned char>(i)));
  auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 3);
  h.done("w1", jobs[0].id, std::nullopt, payload_bytes(1));  // X1 done, X4 dispatched
  jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 4);
  h.disconnect("w1");
  CHECK(h.queue.depth("a") == 3);
  h.ready("w2", {"a"}, "", 3);
  const auto again = h.jobs("w2");
  REQUIRE(again.size() == 3);
  CHECK(again[0].id == jobs[1].id);
  CHECK(again[1].id == jobs[2].id);
  CHECK(again[2].id == jobs[3].id);
}

TEST_CASE("a job lost with its worker on its last attempt is dead, not requeued") {
  Harness h;
  h.ready("w1", {"a"});
  const auto flow = h.submit("c1", "a", payload_bytes(4), true, 1);
  // w1 goes silent with the job: lost, not handed back.
  for (int i = 0; i < 6; ++i) {
    h.now += 1000;
    h.tick();
  }
  REQUIRE(h.worker("w1") == nullptr);
  CHECK(h.queue.depth("a") == 0);
  CHECK(h.core.counters().requeued == 0);
  CHECK(h.core.counters().dead == 1);
  const auto results = h.results("c1");
  REQUIRE(results.size() == 1);
  CHECK(results[0].flow == flow);
  CHECK(results[0].outcome == mw::kOutcomeDead);
  CHECK(results[0].error.find("lost with its worker") != std::string::npos);
}

TEST_CASE("a send that finds the worker unreachable drops it and requeues") {
  Harness h;
  SUBCASE("the job being sent stays queued for the next worker") {
    h.ready("w1", {"a"});
    h.transport.fail_for["w1"] = SendResult::Unreachable;
    const auto flow = h.submit("c1", "a", payload_bytes(6));
    CHECK(h.worker("w1") == nullptr);
    CHECK(h.queue.depth("a") == 1);
    CHECK(h.core.in_flight() == 0);
    h.ready("w2", {"a"});
    const auto jobs = h.jobs("w2");
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].flow == flow);
    CHECK(jobs[0].attempt == 1);  // never delivered before
  }
  SUBCASE("jobs it already held are requeued too, ahead of the one being sent") {
    h.ready("w1", {"a"}, "", 2);
    h.submit("c1", "a", payload_bytes(6, 1));
    const auto x1 = h.jobs("w1").at(0);
    h.transport.fail_for["w1"] = SendResult::Unreachable;
    h.submit("c1", "a", payload_bytes(6, 2));
    CHECK(h.worker("w1") == nullptr);
    CHECK(h.core.counters().requeued == 1);
    CHECK(h.queue.depth("a") == 2);
    h.ready("w2", {"a"}, "", 2);
    const auto jobs = h.jobs("w2");
    REQUIRE(jobs.size() == 2);
    CHECK(jobs[0].id == x1.id);
    CHECK(jobs[0].attempt == 2);
    CHECK(jobs[1].payload == payload_bytes(6, 2));
    CHECK(jobs[1].attempt == 1);
  }
  SUBCASE("another live worker gets the job at once") {
    h.ready("w1", {"a"});
    h.ready("w2", {"a"});
    h.transport.fail_for["w1"] = SendResult::Unreachable;
    h.transport.fail_for["w2"] = SendResult::Sent;
    h.submit("c1", "a", payload_bytes(6));
    h.submit("c1", "a", payload_bytes(6));
    CHECK(h.worker("w1") == nullptr);
    CHECK(h.jobs("w2").size() == 1);
    CHECK(h.queue.depth("a") == 1);
  }
}

TEST_CASE("WouldBlock leaves the job queued and pauses the worker until it speaks again") {
  Harness h;
  h.ready("w1", {"a"}, "", 4);
  h.transport.fail_for["w1"] = SendResult::WouldBlock;
  h.submit("c1", "a", payload_bytes(6, 1));
  CHECK(h.attempts_to("w1") == 1);
  CHECK(h.jobs("w1").empty());
  CHECK(h.queue.depth("a") == 1);
  CHECK(h.worker("w1") != nullptr);  // not dropped
  CHECK(h.worker("w1")->paused);

  h.submit("c1", "a", payload_bytes(6, 2));
  CHECK(h.attempts_to("w1") == 1);  // paused: not even tried
  CHECK(h.queue.depth("a") == 2);

  h.transport.fail_for.erase("w1");
  SUBCASE("a HEARTBEAT resumes it and the queued jobs flow") {
    h.heartbeat("w1");
  }
  SUBCASE("a READY resumes it") {
    h.ready("w1", {"a"}, "", 4);
  }
  SUBCASE("even a malformed message resumes it (it is alive and reading)") {
    h.command("w1", Command::Ready);  // no header: answered with ERROR
    CHECK(Harness::error_of(h.to("w1").at(0)).code == ErrorCode::BadRequest);
  }
  CHECK_FALSE(h.worker("w1")->paused);
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].payload == payload_bytes(6, 1));
  CHECK(jobs[0].attempt == 1);
  CHECK(jobs[1].payload == payload_bytes(6, 2));
  CHECK(h.queue.depth("a") == 0);
}

// ---- BATCH ----------------------------------------------------------------

TEST_CASE("HELLO tells the transport how many messages per BATCH the peer takes; WELCOME says the broker's") {
  Harness h;
  h.command("c1", Command::Hello, bytes_of(wire::encode(wire::Hello{mw::kRoleClient, "c", 1, 64})));
  CHECK(h.transport.batch_limits.at("c1") == 64);
  const auto welcome_frame = frame_of(h.to("c1").at(0).header);
  CHECK(wire::decode_welcome(welcome_frame).batch == mw::kMaxBatchEntries);
  CHECK_FALSE(h.transport.inline_payloads_to.at("c1"));
  CHECK(wire::decode_welcome(welcome_frame).inline_payloads);  // the broker takes them
  wire::Hello inlining{mw::kRoleWorker, "w", 1, 64};
  inlining.inline_payloads = true;
  h.command("c3", Command::Hello, bytes_of(wire::encode(inlining)));
  CHECK(h.transport.inline_payloads_to.at("c3"));
  h.hello("c2");  // an older peer: no batch field
  CHECK(h.transport.batch_limits.at("c2") == 0);
  CHECK_FALSE(h.transport.inline_payloads_to.at("c2"));
  // Forgotten with the peer, so a later peer with its id starts unbatched.
  h.disconnect("c1");
  CHECK(h.transport.forgotten == std::vector<std::string>{"c1"});
}

TEST_CASE("ACCEPTED to a submitter that waits for the RESULT may wait for company; to others it may not") {
  Harness h;
  h.submit("c1", "a", payload_bytes(4), /*wait=*/true);
  REQUIRE(h.to("c1").size() == 1);
  CHECK(h.to("c1")[0].hold_ms == BrokerCore::kAcceptedHoldMs);
  CHECK(BrokerCore::kAcceptedHoldMs <= 2);
  h.submit("c2", "a", payload_bytes(4), /*wait=*/false);
  REQUIRE(h.to("c2").size() == 1);
  CHECK(h.to("c2")[0].hold_ms == 0);
}

TEST_CASE("a BATCH is handled as its messages, one after another") {
  Harness h;
  h.ready("w1", {"a"}, "b", 8);
  h.ready("w2", {"b"}, "", 8);
  wire::Batch submits;
  for (std::uint64_t r = 1; r <= 3; ++r) {
    auto header = wire::encode(submit_header(r, "a", true, 0));
    zmq::message_t payload = frame_of(payload_bytes(6, static_cast<unsigned char>(r)));
    submits.add(Command::Submit, header, &payload);
  }
  h.send_batch("c1", submits);
  const auto accepted = h.to("c1");
  REQUIRE(accepted.size() == 3);
  for (std::uint64_t r = 1; r <= 3; ++r) {
    const auto frame = frame_of(accepted[r - 1].header);
    CHECK(wire::decode_accepted(frame).request_id == r);
  }
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 3);
  CHECK(jobs[2].payload == payload_bytes(6, 3));

  // The worker's DONEs in one BATCH move every flow on, results byte for byte.
  wire::Batch dones;
  for (const auto& j : jobs) {
    auto header = wire::encode(wire::Done{j.id, std::nullopt});
    zmq::message_t result = frame_of(j.payload + "");
    dones.add(Command::Done, header, &result);
  }
  h.send_batch("w1", dones);
  const auto next = h.jobs("w2");
  REQUIRE(next.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(next[i].flow == jobs[i].flow);
    CHECK(next[i].payload == jobs[i].payload);
  }
  CHECK(h.worker("w1")->jobs.empty());
}

TEST_CASE("payloads inline in a BATCH index are the broker's own copies: a queued job keeps its bytes") {
  Harness h;
  h.ready("w1", {"a"}, "", 1);  // room for one: the other two wait in the queue
  wire::Batch submits;
  submits.inline_payloads_up_to(mw::kMaxInlinePayloadBytes);
  for (std::uint64_t r = 1; r <= 3; ++r) {
    auto header = wire::encode(submit_header(r, "a", false, 0));
    zmq::message_t payload = frame_of(payload_bytes(40, static_cast<unsigned char>(r)));
    submits.add(Command::Submit, header, &payload);
  }
  h.send_batch("c1", submits);  // its frames are gone once it is handled
  CHECK(h.to("c1").size() == 3);
  for (unsigned char r = 1; r <= 3; ++r) {
    const auto jobs = h.jobs("w1");
    REQUIRE(jobs.size() == r);
    CHECK(jobs.back().payload == payload_bytes(40, r));
    wire::Batch done;
    done.inline_payloads_up_to(mw::kMaxInlinePayloadBytes);
    auto header = wire::encode(wire::Done{jobs.back().id, std::nullopt});
    zmq::message_t result = frame_of("\xc3");
    done.add(Command::Done, header, &result);
    auto status = wire::encode(wire::StatusRequest{100u + r});  // a second entry: a BATCH, not one message
    done.add(Command::Status, status, nullptr);
    h.send_batch("w1", done);
  }
  CHECK(h.type_stats("a").done == 3);
}

TEST_CASE("a bad message inside a BATCH gets its own ERROR; the others are handled") {
  Harness h;
  h.ready("w1", {"a"}, "", 8);
  wire::Batch batch;
  auto good1 = wire::encode(submit_header(1, "a", false, 0));
  zmq::message_t p1 = frame_of(payload_bytes(6, 1));
  batch.add(Command::Submit, good1, &p1);
  auto bad = frame_of("\x92\x07");  // truncated SUBMIT header
  zmq::message_t p2 = frame_of(payload_bytes(6, 2));
  batch.add(Command::Submit, bad, &p2);
  auto good3 = wire::encode(submit_header(3, "a", false, 0));
  zmq::message_t p3 = frame_of(payload_bytes(6, 3));
  batch.add(Command::Submit, good3, &p3);
  h.send_batch("c1", batch);
  const auto replies = h.to("c1");
  REQUIRE(replies.size() == 3);
  CHECK(replies[0].command == Command::Accepted);
  CHECK(Harness::error_of(replies[1]).code == ErrorCode::BadRequest);
  CHECK(replies[2].command == Command::Accepted);
  CHECK(h.jobs("w1").size() == 2);
}

TEST_CASE("a malformed BATCH gets one ERROR and changes nothing") {
  Harness h;
  h.ready("w1", {"a"}, "", 8);
  const std::string tag = bytes_of(wire::encode_tag(Command::Batch));
  const std::string submit = bytes_of(wire::encode(submit_header(1, "a", false, 0)));
  auto index_of = [](std::vector<std::pair<std::uint8_t, std::string>> entries) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p(b);
    p.pack_array(static_cast<std::uint32_t>(2 * entries.size()));
    for (auto& [c, hdr] : entries) {
      p.pack_uint8(c);
      p.pack_bin(static_cast<std::uint32_t>(hdr.size()));
      p.pack_bin_body(hdr.data(), static_cast<std::uint32_t>(hdr.size()));
    }
    return std::string(b.data(), b.size());
  };
  const auto before = Snapshot::of(h);
  const std::vector<std::vector<std::string>> bad = {
      {"c1", tag},                                                            // no index
      {"c1", tag, "\xc0"},                                                    // index not an array
      {"c1", tag, index_of({{0x07, submit}})},                                // SUBMIT without its payload
      {"c1", tag, index_of({{0x07, submit}}), payload_bytes(6), "\xc0"},      // one payload too many
      {"c1", tag, index_of({{0x11, submit}}), payload_bytes(6)},              // BATCH inside BATCH
      {"c1", tag, index_of({{0x0e, ""}})},                                    // HEARTBEAT has no header
  };
  for (const auto& frames : bad) {
    CAPTURE(frames.size());
    const std::size_t mark = h.transport.sent.size();
    h.raw(frames);
    const auto replies = h.to("c1", mark);
    REQUIRE(replies.size() == 1);
    CHECK(Harness::error_of(replies[0]).code == ErrorCode::BadRequest);
    CHECK(Snapshot::of(h) == before);
  }
}

TEST_CASE("JOBs a batched send could not deliver go back to the front of the queue") {
  Harness h;
  h.ready("w1", {"a"}, "", 4);
  const auto f1 = h.submit("c1", "a", payload_bytes(6, 1));
  const auto f2 = h.submit("c1", "a", payload_bytes(6, 2));
  const auto f3 = h.submit("c1", "a", payload_bytes(6, 3));
  const auto sent = h.jobs("w1");
  REQUIRE(sent.size() == 3);
  SUBCASE("WouldBlock: the worker keeps what did arrive and is paused") {
    const std::uint64_t lost[] = {sent[1].id, sent[2].id};
    h.core.on_undelivered("w1", SendResult::WouldBlock, lost);
    CHECK(h.worker("w1")->paused);
    REQUIRE(h.worker("w1")->jobs.size() == 1);
    CHECK(h.worker("w1")->jobs.front().flow_id == f1);
    CHECK(h.queue.depth("a") == 2);
    const std::size_t mark = h.transport.sent.size();
    h.heartbeat("w1");  // it speaks again: what waited is sent, in order, as first attempts
    const auto again = h.jobs("w1");
    REQUIRE(again.size() == 5);
    CHECK(again[3].flow == f2);
    CHECK(again[3].attempt == 1);
    CHECK(again[4].flow == f3);
    CHECK(h.transport.sent.size() > mark);
  }
  SUBCASE("Unreachable: the worker is dropped and all it held is requeued") {
    const std::uint64_t lost[] = {sent[2].id};
    h.core.on_undelivered("w1", SendResult::Unreachable, lost);
    CHECK(h.worker("w1") == nullptr);
    CHECK(h.queue.depth("a") == 3);
    h.ready("w2", {"a"}, "", 4);
    const auto jobs = h.jobs("w2");
    REQUIRE(jobs.size() == 3);
    CHECK(jobs[0].flow == f1);
    CHECK(jobs[0].attempt == 2);  // delivered, then lost with its worker: an attempt
    CHECK(jobs[1].flow == f2);
    CHECK(jobs[2].flow == f3);
    CHECK(jobs[2].attempt == 1);  // never left the broker: not an attempt
  }
  SUBCASE("Unreachable on a job's last attempt: one that never left is not buried") {
    h.disconnect("w1");  // graceful: its jobs go back, attempts not counted
    h.ready("w9", {"a"}, "", 4);
    const auto again = h.jobs("w9");
    REQUIRE(again.size() == 3);
    // Pretend each was on its last attempt: max_attempts 1 by a new flow.
    const auto last = h.submit("c1", "a", payload_bytes(6, 4), true, 1);
    const auto jobs = h.jobs("w9");
    REQUIRE(jobs.size() == 4);
    REQUIRE(jobs[3].flow == last);
    const std::uint64_t lost[] = {jobs[3].id};
    h.core.on_undelivered("w9", SendResult::Unreachable, lost);
    CHECK(h.results("c1").empty());  // not dead
    CHECK(h.queue.depth("a") == 4);
  }
  SUBCASE("WouldBlock: another worker of the type gets them at once") {
    h.ready("w2", {"a"}, "", 4);
    const std::uint64_t lost[] = {sent[1].id, sent[2].id};
    h.core.on_undelivered("w1", SendResult::WouldBlock, lost);
    const auto jobs = h.jobs("w2");
    REQUIRE(jobs.size() == 2);
    CHECK(jobs[0].flow == f2);
    CHECK(jobs[1].flow == f3);
    CHECK(h.queue.depth("a") == 0);
  }
  SUBCASE("messages to a peer that is not a worker are simply lost") {
    const std::uint64_t none[] = {0};
    h.core.on_undelivered("c1", SendResult::Unreachable, none);
    CHECK(h.worker("w1")->jobs.size() == 3);
  }
}

TEST_CASE("a late DONE from a worker that no longer holds the job is ignored") {
  Harness h;
  const std::int64_t t0 = h.now;
  h.ready("w1", {"a"});
  const auto flow = h.submit("c1", "a", payload_bytes(4));
  const auto x = h.jobs("w1").at(0);
  h.ready("w2", {"a"});
  // w1 goes silent; w2 keeps heartbeating.
  for (std::int64_t t = t0 + 500; t <= t0 + 5000; t += 500) {
    h.now = t;
    h.heartbeat("w2");
    h.tick();
  }
  REQUIRE(h.worker("w1") == nullptr);
  REQUIRE(h.jobs("w2").size() == 1);
  CHECK(h.jobs("w2")[0].id == x.id);

  SUBCASE("from the dropped worker: DISCONNECT, no RESULT") {
    const std::size_t mark = h.transport.sent.size();
    h.done("w1", x.id, std::nullopt, payload_bytes(9, 9));
    CHECK(h.core.counters().stale_replies == 1);
    const auto sent = h.to("w1", mark);
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].command == Command::Disconnect);
  }
  SUBCASE("from the same worker registered again: silently ignored") {
    h.ready("w1", {"a"});
    const std::size_t mark = h.transport.sent.size();
    h.done("w1", x.id, std::nullopt, payload_bytes(9, 9));
    CHECK(h.core.counters().stale_replies == 1);
    CHECK(h.to("w1", mark).empty());
  }
  CHECK(h.results("c1").empty());
  CHECK(h.core.counters().flows_done == 0);
  CHECK(h.core.in_flight() == 1);

  // The real holder finishes the flow, once.
  h.done("w2", x.id, std::nullopt, payload_bytes(3, 3));
  auto results = h.results("c1");
  REQUIRE(results.size() == 1);
  CHECK(results[0].flow == flow);
  CHECK(results[0].payload == payload_bytes(3, 3));
  // A repeated DONE does not finish it twice.
  h.done("w2", x.id, std::nullopt, payload_bytes(3, 3));
  CHECK(h.results("c1").size() == 1);
  CHECK(h.core.counters().flows_done == 1);
  CHECK(h.core.counters().stale_replies == 2);
}

TEST_CASE("a late FAIL from a worker that no longer holds the job is ignored") {
  Harness h;
  h.ready("w1", {"a"});
  h.submit("c1", "a", payload_bytes(4));
  const auto x = h.jobs("w1").at(0);
  h.done("w1", x.id, std::nullopt, payload_bytes(1));
  h.fail("w1", x.id, "too late", false);
  CHECK(h.core.counters().stale_replies == 1);
  CHECK(h.core.counters().dead == 0);
  CHECK(h.core.counters().failed == 0);
  REQUIRE(h.results("c1").size() == 1);
  CHECK(h.results("c1")[0].outcome == mw::kOutcomeDone);
}

// ---- retries and dead jobs ----------------------------------------------------------------

TEST_CASE("FAIL retries after an exponential backoff, then the job is dead") {
  Harness h;
  h.transport.subscribers = true;
  h.ready("w1", {"a"});
  const std::string payload = payload_bytes(40, 5);
  const auto flow = h.submit("c1", "a", payload, true, 3);
  auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  const auto x = jobs[0];
  CHECK(x.attempt == 1);

  // Attempt 1 fails: the retry waits retry_base_ms (1000) +-25 %.
  std::int64_t failed_at = h.now;
  h.fail("w1", x.id, "flaky");
  CHECK(h.core.counters().failed == 1);
  CHECK(h.core.counters().retried == 1);
  CHECK(h.core.delayed() == 1);
  CHECK(h.core.next_deadline_ms() <= failed_at + 1250);
  CHECK(h.jobs("w1").size() == 1);  // not redelivered at once
  h.now = failed_at + 749;
  h.tick();
  CHECK(h.jobs("w1").size() == 1);
  h.now = failed_at + 1251;
  h.tick();
  jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[1].id == x.id);
  CHECK(jobs[1].flow == flow);
  CHECK(jobs[1].attempt == 2);
  CHECK(jobs[1].payload == payload);
  CHECK(h.core.delayed() == 0);

  // Attempt 2 fails: twice the wait, 2000 +-25 %.
  failed_at = h.now;
  h.fail("w1", x.id, "flaky again");
  h.now = failed_at + 1499;
  h.tick();
  CHECK(h.jobs("w1").size() == 2);
  h.now = failed_at + 2501;
  h.tick();
  jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 3);
  CHECK(jobs[2].attempt == 3);

  // Attempt 3 of 3 fails: dead.
  h.fail("w1", x.id, "still broken");
  CHECK(h.core.counters().dead == 1);
  CHECK(h.core.counters().failed == 3);
  CHECK(h.core.delayed() == 0);
  CHECK(h.core.in_flight() == 0);
  const auto results = h.results("c1");
  REQUIRE(results.size() == 1);
  CHECK(results[0].flow == flow);
  CHECK(results[0].outcome == mw::kOutcomeDead);
  CHECK(results[0].error == "still broken");
  CHECK(results[0].last_type == "a");
  CHECK(results[0].attempts == 3);
  CHECK(results[0].payload == payload);
  CHECK(h.type_stats("a").dead == 1);
  CHECK(h.type_stats("a").failed == 3);

  bool dead_event = false;
  for (const auto& p : h.transport.published) {
    if (p.topic != "$mw.job.dead") continue;
    dead_event = true;
    const auto meta = frame_of(p.meta);
    CHECK(wire::decode_event_meta(meta).error == "still broken");
    CHECK(wire::decode_event_meta(meta).flow_id == flow);
    CHECK(p.data == payload);
  }
  CHECK(dead_event);

  // Nothing more is delivered, however long we wait.
  h.now += 120'000;
  h.heartbeat("w1");
  h.tick();
  CHECK(h.jobs("w1").size() == 3);
}

// Sends a SUBMIT from "c1" by hand (the harness's submit() requires
// ACCEPTED) and returns the ERROR that answered it, if one did.
std::optional<ErrorMsg> refusal(Harness& h, std::uint64_t request_id, const std::string& type,
                                const std::string& payload, std::uint64_t delay_ms = 0, std::string_view key = {}) {
  const std::size_t mark = h.transport.sent.size();
  auto header = submit_header(request_id, type);
  header.delay_ms = delay_ms;
  header.key = key;
  h.command("c1", Command::Submit, bytes_of(wire::encode(header)), payload);
  for (const auto& s : h.to("c1", mark))
    if (s.command == Command::Error && Harness::error_of(s).request_id == request_id) return Harness::error_of(s);
  return std::nullopt;
}

TEST_CASE("a type at its own waiting limit is refused with ERROR 507 while other types go on") {
  BrokerConfig config = test_config();
  config.max_waiting_per_type = 2;
  config.type_max_waiting = {{"bulk", 3}, {"free", 0}};
  Harness h(config);
  h.submit("c1", "a", payload_bytes(8));
  h.submit("c1", "a", payload_bytes(8));
  const auto refused = refusal(h, 7101, "a", payload_bytes(8));
  REQUIRE(refused);
  CHECK(refused->code == ErrorCode::Full);
  CHECK(refused->message.find("type a is full: 2 job(s) of it wait") != std::string::npos);
  CHECK(refused->message.find("once a worker serves it (none does now)") != std::string::npos);
  CHECK(refused->message.find("--max-waiting-per-type 2") != std::string::npos);
  CHECK(h.core.counters().refused_full == 1);
  CHECK_FALSE(refusal(h, 7102, "b", payload_bytes(8)));  // another type has room

  // A delayed job counts for its type, as a queued one does.
  CHECK_FALSE(refusal(h, 7103, "c", payload_bytes(8), 60'000));
  CHECK_FALSE(refusal(h, 7104, "c", payload_bytes(8)));
  CHECK(refusal(h, 7105, "c", payload_bytes(8)));

  // A type named on its own has its own limit, and 0 lifts it.
  for (int i = 0; i < 3; ++i) CHECK_FALSE(refusal(h, 7110 + i, "bulk", payload_bytes(8)));
  const auto bulk = refusal(h, 7120, "bulk", payload_bytes(8));
  REQUIRE(bulk);
  CHECK(bulk->message.find("--type-max-waiting bulk=3") != std::string::npos);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(refusal(h, 7130 + i, "free", payload_bytes(8)));

  // STATUS says each type's limit (a type named on its own even before it has jobs).
  const auto stats = h.core.stats(h.now);
  const auto of = [&](std::string_view type) -> wire::TypeStats {
    for (const auto& t : stats.types)
      if (t.type == type) return t;
    FAIL("no STATUS entry for type ", type);
    return {};
  };
  CHECK(of("a").max_waiting == 2u);
  CHECK(of("bulk").max_waiting == 3u);
  CHECK(of("free").max_waiting == 0u);
  // And how many SUBMITs each type's own limit refused.
  CHECK(of("a").refused == 1u);
  CHECK(of("c").refused == 1u);
  CHECK(of("bulk").refused == 1u);
  CHECK(of("free").refused == 0u);
  CHECK(stats.refused == 3);

  // Once a worker takes one, the type has room again.
  h.ready("w1", {"a"});
  CHECK_FALSE(refusal(h, 7140, "a", payload_bytes(8)));
}

TEST_CASE("a full broker refuses new flows with ERROR 507; what it already holds always moves on") {
  BrokerConfig config = test_config();
  config.max_waiting_jobs = 2;
  Harness h(config);
  h.submit("c1", "a", payload_bytes(8));
  h.submit("c1", "a", payload_bytes(8));

  const std::size_t mark = h.transport.sent.size();
  const auto refused = refusal(h, 7001, "a", payload_bytes(8));
  REQUIRE(refused);
  CHECK(refused->code == ErrorCode::Full);
  CHECK(refused->message.find("--max-waiting 2") != std::string::npos);
  CHECK(h.to("c1", mark).size() == 1);  // the ERROR, no ACCEPTED
  CHECK(h.queue.depth("a") == 2);
  CHECK(h.core.counters().submitted == 2);
  CHECK(h.core.counters().refused_full == 1);
  const auto stats = h.core.stats(h.now);
  CHECK(stats.waiting == 2);
  CHECK(stats.max_waiting == 2);
  CHECK(stats.refused == 1);
  for (const auto& t : stats.types) CHECK(t.refused == 0);  // the broker's limit, not the type's

  SUBCASE("a delayed SUBMIT waits too, and counts") {
    h.ready("w1", {"a"});  // takes one: one waits
    CHECK_FALSE(refusal(h, 7002, "a", payload_bytes(8), 60'000));
    CHECK(h.core.delayed() == 1);
    CHECK(refusal(h, 7003, "a", payload_bytes(8)));
  }

  SUBCASE("a SUBMIT whose key names an unfinished flow is answered: it adds nothing") {
    BrokerConfig keyed = test_config();
    keyed.max_waiting_jobs = 1;
    Harness k(keyed);
    CHECK_FALSE(refusal(k, 1, "a", payload_bytes(8), 0, "nightly"));
    CHECK_FALSE(refusal(k, 2, "a", payload_bytes(8), 0, "nightly"));
    CHECK(k.core.counters().duplicates == 1);
  }

  SUBCASE("the next stage, a retry and a job handed back are never refused") {
    BrokerConfig small = test_config();
    small.max_waiting_jobs = 2;
    Harness f(small);
    f.ready("w1", {"a"}, "b");
    f.submit("c1", "a", payload_bytes(8));  // straight to w1
    f.submit("c1", "z", payload_bytes(8));
    f.submit("c1", "z", payload_bytes(8));  // full: two wait
    f.done("w1", f.jobs("w1").at(0).id, std::nullopt, payload_bytes(8, 1));
    CHECK(f.queue.depth("b") == 1);  // its next stage waits beyond the limit
    CHECK(f.core.stats(f.now).waiting == 3);
    f.ready("w2", {"b"});
    f.fail("w2", f.jobs("w2").at(0).id, "flaky");
    CHECK(f.core.delayed() == 1);  // its retry too
    CHECK(f.core.stats(f.now).waiting == 3);
    f.ready("w3", {"z"});
    f.disconnect("w3");  // the z it took goes back
    CHECK(f.core.counters().requeued == 1);
    CHECK(f.queue.depth("z") == 2);
    CHECK(f.core.stats(f.now).waiting == 3);  // still beyond the limit
    CHECK(f.core.counters().dead == 0);
    CHECK(refusal(f, 7004, "a", payload_bytes(8)));
  }
}

TEST_CASE("a broker full of payload bytes refuses the SUBMIT that would go beyond them") {
  BrokerConfig config = test_config();
  config.max_waiting_jobs = 0;  // no limit on the count
  config.max_waiting_bytes = 100;
  Harness h(config);
  h.submit("c1", "a", payload_bytes(57));  // 60 bytes with its bin header
  const auto refused = refusal(h, 8001, "a", payload_bytes(57));
  REQUIRE(refused);
  CHECK(refused->code == ErrorCode::Full);
  CHECK(refused->message.find("--max-waiting-mb") != std::string::npos);
  CHECK(h.core.stats(h.now).waiting_bytes == 60);
  // A smaller one still fits.
  CHECK_FALSE(refusal(h, 8002, "a", payload_bytes(37)));
  CHECK(h.core.stats(h.now).waiting_bytes == 100);
  // A worker takes them: the bytes are free again.
  h.ready("w1", {"a"}, "", 2);
  CHECK(h.core.stats(h.now).waiting_bytes == 0);
  CHECK_FALSE(refusal(h, 8003, "a", payload_bytes(57)));
}

TEST_CASE("a payload larger than --max-waiting-mb is taken when nothing waits") {
  BrokerConfig config = test_config();
  config.max_waiting_jobs = 0;
  config.max_waiting_bytes = 100;
  Harness h(config);
  h.submit("c1", "a", payload_bytes(500));  // alone: accepted, never refused forever
  CHECK(refusal(h, 9001, "a", payload_bytes(10)));  // behind it: over the limit
}

TEST_CASE("STATUS counts delayed jobs per type: a delayed SUBMIT and a retry's backoff, until they are due") {
  Harness h;
  auto delayed_of = [&](std::string_view type) -> std::uint64_t {
    for (const auto& t : h.core.stats(h.now).types)
      if (t.type == type) return t.delayed;
    return 0;
  };
  h.ready("w1", {"a"});
  REQUIRE_FALSE(refusal(h, 900, "later", payload_bytes(10, 1), 5000).has_value());
  REQUIRE_FALSE(refusal(h, 901, "later", payload_bytes(10, 2), 5000).has_value());
  h.submit("c1", "a", payload_bytes(10, 3));
  h.fail("w1", h.jobs("w1").back().id, "flaky");  // waits for its retry
  CHECK(delayed_of("later") == 2);
  CHECK(delayed_of("a") == 1);
  CHECK(h.core.stats(h.now).delayed == 3);

  h.now += 2000;  // the retry is due (1000 ms +-25 %), the delayed SUBMITs are not
  h.tick();
  CHECK(delayed_of("a") == 0);
  CHECK(delayed_of("later") == 2);
  h.now += 4000;
  h.tick();
  CHECK(delayed_of("later") == 0);
  CHECK(h.queue.depth("later") == 2);  // due, and queued for a worker
  CHECK(h.core.stats(h.now).delayed == 0);
}

TEST_CASE("FAIL with retryable=false makes the job dead at once") {
  Harness h;
  h.ready("w1", {"a"});
  const auto flow = h.submit("c1", "a", payload_bytes(4));
  h.fail("w1", h.jobs("w1").at(0).id, "bad input", false);
  CHECK(h.core.counters().dead == 1);
  CHECK(h.core.counters().retried == 0);
  CHECK(h.core.delayed() == 0);
  const auto results = h.results("c1");
  REQUIRE(results.size() == 1);
  CHECK(results[0].flow == flow);
  CHECK(results[0].outcome == mw::kOutcomeDead);
  CHECK(results[0].error == "bad input");
  CHECK(results[0].attempts == 1);
}

TEST_CASE("SUBMIT's max_attempts overrides the broker default") {
  BrokerConfig config = test_config();
  config.default_max_attempts = 2;
  Harness h(config);
  h.ready("w1", {"a"});

  SUBCASE("max_attempts 1: the first retryable FAIL is final") {
    h.submit("c1", "a", payload_bytes(4), true, 1);
    h.fail("w1", h.jobs("w1").at(0).id, "nope");
    CHECK(h.core.counters().dead == 1);
    REQUIRE(h.results("c1").size() == 1);
    CHECK(h.results("c1")[0].attempts == 1);
  }
  SUBCASE("max_attempts 4: four deliveries") {
    h.submit("c1", "a", payload_bytes(4), true, 4);
    for (std::uint32_t attempt = 1; attempt <= 4; ++attempt) {
      const auto jobs = h.jobs("w1");
      REQUIRE(jobs.size() == attempt);
      CHECK(jobs.back().attempt == attempt);
      h.fail("w1", jobs.back().id, "nope");
      h.now += 60'000;  // past any backoff
      h.heartbeat("w1");
      h.tick();
    }
    CHECK(h.jobs("w1").size() == 4);
    CHECK(h.core.counters().dead == 1);
  }
  SUBCASE("max_attempts 0: the default (2) applies") {
    h.submit("c1", "a", payload_bytes(4), true, 0);
    h.fail("w1", h.jobs("w1").at(0).id, "nope");
    h.now += 60'000;
    h.heartbeat("w1");
    h.tick();
    REQUIRE(h.jobs("w1").size() == 2);
    h.fail("w1", h.jobs("w1").at(1).id, "nope");
    CHECK(h.core.counters().dead == 1);
  }
}

// ---- hostile input -----------------------------------------------------------------

TEST_CASE("malformed messages get exactly one ERROR and change nothing") {
  Harness h;
  h.ready("w1", {"a"});
  h.submit("c1", "a", payload_bytes(4, 1));  // X1 in flight on w1
  h.submit("c1", "a", payload_bytes(4, 2));  // X2 queued
  const auto x1 = h.jobs("w1").at(0);

  const std::string tag_ready = bytes_of(wire::encode_tag(Command::Ready));
  const std::string tag_submit = bytes_of(wire::encode_tag(Command::Submit));
  const std::string tag_done = bytes_of(wire::encode_tag(Command::Done));
  const std::string tag_fail = bytes_of(wire::encode_tag(Command::Fail));
  const std::string tag_hello = bytes_of(wire::encode_tag(Command::Hello));
  const std::string tag_status = bytes_of(wire::encode_tag(Command::Status));
  const std::string tag_heartbeat = bytes_of(wire::encode_tag(Command::Heartbeat));
  const std::string hostile("\xdd\xff\xff\xff\xff", 5);
  const std::string valid_ready = bytes_of(wire::encode(wire::Ready{{"a"}, "", 1, "", 0}));
  const std::string valid_submit = bytes_of(wire::encode(submit_header(7, "a", true)));
  const std::string pl = payload_bytes(4);

  struct Case {
    std::string name;
    std::vector<std::string> frames_after_id;
    ErrorCode code;
  };
  const std::vector<Case> cases = {
      {"routing id only", {}, ErrorCode::BadProtocol},
      {"garbage tag", {"garbage"}, ErrorCode::BadProtocol},
      {"garbage tag with more frames", {"MW2\x03", valid_ready}, ErrorCode::BadProtocol},
      {"empty tag", {""}, ErrorCode::BadProtocol},
      {"unknown command byte", {std::string("MW1\x7f"), "\xc0"}, ErrorCode::UnknownCommand},
      {"command byte zero", {std::string("MW1\0", 4)}, ErrorCode::UnknownCommand},
      {"READY without header", {tag_ready}, ErrorCode::BadRequest},
      {"SUBMIT without payload", {tag_submit, valid_submit}, ErrorCode::BadRequest},
      {"HEARTBEAT with a header", {tag_heartbeat, "\xc0"}, ErrorCode::BadRequest},
      {"DONE with an extra frame", {tag_done, bytes_of(wire::encode(wire::Done{x1.id, std::nullopt})), pl, pl},
       ErrorCode::BadRequest},
      {"READY garbage header", {tag_ready, "\xc1\xc1"}, ErrorCode::BadRequest},
      {"READY header not an array", {tag_ready, "\xa5hello"}, ErrorCode::BadRequest},
      {"READY credit over 10000", {tag_ready, bytes_of(wire::encode(wire::Ready{{"a"}, "", 10001, "", 0}))},
       ErrorCode::BadRequest},
      {"READY empty type", {tag_ready, bytes_of(wire::encode(wire::Ready{{""}, "", 1, "", 0}))}, ErrorCode::BadRequest},
      {"READY 4G-element header", {tag_ready, hostile}, ErrorCode::BadRequest},
      {"SUBMIT 4G-element header", {tag_submit, hostile, pl}, ErrorCode::BadRequest},
      {"DONE 4G-element header", {tag_done, hostile, pl}, ErrorCode::BadRequest},
      {"FAIL 4G-element header", {tag_fail, hostile}, ErrorCode::BadRequest},
      {"HELLO 4G-element header", {tag_hello, hostile}, ErrorCode::BadRequest},
      {"STATUS 4G-element header", {tag_status, hostile}, ErrorCode::BadRequest},
      {"READY oversize header", {tag_ready, std::string(mw::kMaxHeaderBytes + 1, '\x01')}, ErrorCode::TooLarge},
      {"SUBMIT empty type", {tag_submit, bytes_of(wire::encode(submit_header(7, "", true))), pl},
       ErrorCode::BadRequest},
      {"SUBMIT empty payload frame", {tag_submit, valid_submit, ""}, ErrorCode::BadRequest},
      {"DONE next too long",
       {tag_done, bytes_of(wire::encode(wire::Done{x1.id, std::string_view(std::string(200, 'n'))})), pl},
       ErrorCode::BadRequest},
      {"JOB sent to the broker",
       {bytes_of(wire::encode_tag(Command::Job)), bytes_of(wire::encode(wire::JobHeader{1, "a", 1, 1, ""})), pl},
       ErrorCode::BadRequest},
      {"RESULT sent to the broker",
       {bytes_of(wire::encode_tag(Command::Result)), bytes_of(wire::encode(wire::Result{1, "done", "", "a", 1})), pl},
       ErrorCode::BadRequest},
      {"WELCOME sent to the broker",
       {bytes_of(wire::encode_tag(Command::Welcome)), bytes_of(wire::encode(wire::Welcome{"x", 1, "v", 1}))},
       ErrorCode::BadRequest},
      {"ACCEPTED sent to the broker",
       {bytes_of(wire::encode_tag(Command::Accepted)), bytes_of(wire::encode(wire::Accepted{1, 1}))},
       ErrorCode::BadRequest},
      {"STATS sent to the broker",
       {bytes_of(wire::encode_tag(Command::Stats)), bytes_of(wire::encode(wire::Stats{}))}, ErrorCode::BadRequest},
      {"ERROR sent to the broker",
       {bytes_of(wire::encode_tag(Command::Error)), bytes_of(wire::encode(wire::ErrorReply{ErrorCode::Internal, "x", 0}))},
       ErrorCode::BadRequest},
      {"REPLY sent to the broker",
       {bytes_of(wire::encode_tag(Command::Reply)), bytes_of(wire::encode(wire::Reply{1, 0, ""})), "\xc0"},
       ErrorCode::BadRequest},
      {"CALL without its body frame",
       {bytes_of(wire::encode_tag(Command::Call)), bytes_of(wire::encode(wire::Call{1, "users", "find", std::nullopt}))},
       ErrorCode::BadRequest},
      {"CALL 4G-element header", {bytes_of(wire::encode_tag(Command::Call)), hostile, "\xc0"}, ErrorCode::BadRequest},
  };

  const Snapshot before = Snapshot::of(h);
  REQUIRE(before.in_flight == 1);
  REQUIRE(before.depth_a == 1);
  for (const std::string sender : {"evil", "w1", "c1"}) {
    for (const auto& c : cases) {
      CAPTURE(sender);
      CAPTURE(c.name);
      std::vector<std::string> frames{sender};
      frames.insert(frames.end(), c.frames_after_id.begin(), c.frames_after_id.end());
      const std::size_t mark = h.transport.sent.size();
      h.raw(frames);
      REQUIRE(h.transport.sent.size() == mark + 1);  // one reply, to the sender alone
      const auto& reply = h.transport.sent.back();
      CHECK(reply.peer == sender);
      REQUIRE(reply.command == Command::Error);
      const auto error = Harness::error_of(reply);
      CHECK(error.code == c.code);
      CHECK_FALSE(error.message.empty());
      CHECK(Snapshot::of(h) == before);
    }
  }
  CHECK(h.core.counters().bad_messages >= 3 * 25);

  // The valid peers' flows still complete.
  h.done("w1", x1.id, std::nullopt, payload_bytes(2, 1));
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[1].payload == payload_bytes(4, 2));
  h.done("w1", jobs[1].id, std::nullopt, payload_bytes(2, 2));
  const auto results = h.results("c1");
  REQUIRE(results.size() == 2);
  CHECK(results[0].payload == payload_bytes(2, 1));
  CHECK(results[1].payload == payload_bytes(2, 2));
}

TEST_CASE("a SUBMIT whose header fails to decode is answered with its request id") {
  Harness h;
  h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(4343, ""))), payload_bytes(4));
  const auto sent = h.to("c1");
  REQUIRE(sent.size() == 1);
  const auto e = Harness::error_of(sent[0]);
  CHECK(e.code == ErrorCode::BadRequest);
  CHECK(e.request_id == 4343);
  CHECK(h.core.counters().submitted == 0);
}

TEST_CASE("an empty SUBMIT payload is refused with the request id") {
  Harness h;
  h.command("c1", Command::Submit, bytes_of(wire::encode(submit_header(4242, "a", true))), std::string());
  const auto sent = h.to("c1");
  REQUIRE(sent.size() == 1);
  const auto e = Harness::error_of(sent[0]);
  CHECK(e.code == ErrorCode::BadRequest);
  CHECK(e.request_id == 4242);
  CHECK(h.core.counters().submitted == 0);
  CHECK(h.queue.depth("a") == 0);
}

TEST_CASE("without an entity store, CALL gets a REPLY NotImplemented and SUBMIT with an entity is refused") {
  Harness h;
  h.ready("w1", {"a"});
  h.command("c1", Command::Call, bytes_of(wire::encode(wire::Call{31, "users", "find", std::nullopt})),
            std::string("\xc0", 1));
  auto sent = h.to("c1");
  REQUIRE(sent.size() == 1);
  REQUIRE(sent[0].command == Command::Reply);
  {
    const auto frame = frame_of(sent[0].header);
    const auto reply = wire::decode_reply(frame);
    CHECK(reply.request_id == 31);
    CHECK(reply.code == static_cast<std::uint16_t>(ErrorCode::NotImplemented));
  }

  const std::size_t mark = h.transport.sent.size();
  h.command("c1", Command::Submit,
            bytes_of(wire::encode(submit_header(32, "a", true, 0, "orders/o1"))),
            payload_bytes(4));
  sent = h.to("c1", mark);
  REQUIRE(sent.size() == 1);
  const auto e = Harness::error_of(sent[0]);
  CHECK(e.code == ErrorCode::NotImplemented);
  CHECK(e.request_id == 32);
  CHECK(h.core.counters().submitted == 0);
  CHECK(h.jobs("w1").empty());
}

TEST_CASE("HEARTBEAT from a peer the broker never met is answered with DISCONNECT") {
  Harness h;
  h.heartbeat("stranger");
  auto sent = h.to("stranger");
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].command == Command::Disconnect);

  SUBCASE("a registered worker's HEARTBEAT needs no answer") {
    h.ready("w1", {"a"});
    h.heartbeat("w1");
    CHECK(h.to("w1").empty());
  }
  SUBCASE("nor does one after HELLO") {
    h.hello("c1");
    h.heartbeat("c1");
    sent = h.to("c1");
    REQUIRE(sent.size() == 1);
    CHECK(sent[0].command == Command::Welcome);
  }
}

TEST_CASE("DONE or FAIL from an unregistered peer is answered with DISCONNECT") {
  Harness h;
  h.ready("w1", {"a"});
  h.submit("c1", "a", payload_bytes(4));
  const auto x = h.jobs("w1").at(0);

  h.done("intruder", x.id, std::nullopt, payload_bytes(1));
  auto sent = h.to("intruder");
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].command == Command::Disconnect);

  h.fail("intruder2", x.id, "x", false);
  sent = h.to("intruder2");
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].command == Command::Disconnect);

  CHECK(h.core.counters().stale_replies == 2);
  CHECK(h.core.counters().flows_done == 0);
  CHECK(h.core.counters().dead == 0);
  CHECK(h.core.in_flight() == 1);
  CHECK(h.results("c1").empty());
}

// ---- status ----------------------------------------------------------------

TEST_CASE("stats report per-type queues, work in flight, workers and outcomes") {
  Harness h;
  const std::int64_t t0 = h.now;
  h.ready("w1", {"a"}, "", 1);
  for (int i = 0; i < 3; ++i) h.submit("c1", "a", payload_bytes(4));
  h.submit("c1", "b", payload_bytes(4));

  auto a = h.type_stats("a");
  CHECK(a.workers == 1);
  CHECK(a.queued == 2);
  CHECK(a.in_flight == 1);
  CHECK(a.oldest_queued_ms == 0);
  auto b = h.type_stats("b");
  CHECK(b.workers == 0);
  CHECK(b.queued == 1);
  CHECK(b.in_flight == 0);

  h.now = t0 + 500;
  CHECK(h.type_stats("a").oldest_queued_ms == 500);
  h.now = t0 + 1500;
  CHECK(h.type_stats("a").oldest_queued_ms == 1500);
  CHECK(h.type_stats("b").oldest_queued_ms == 1500);

  auto jobs = h.jobs("w1");
  h.done("w1", jobs.at(0).id, std::nullopt, payload_bytes(1));
  jobs = h.jobs("w1");
  h.fail("w1", jobs.at(1).id, "broken", false);

  a = h.type_stats("a");
  CHECK(a.done == 1);
  CHECK(a.failed == 1);
  CHECK(a.dead == 1);
  CHECK(a.queued == 0);
  CHECK(a.in_flight == 1);
  CHECK(a.oldest_queued_ms == 0);

  const auto s = h.core.stats(h.now);
  CHECK(s.submitted == 4);
  CHECK(s.done == 1);
  CHECK(s.failed == 1);
  CHECK(s.dead == 1);
  CHECK(s.uptime_ms == 1500);
  CHECK(s.store == ":memory:");
  CHECK(s.broker_version == mw::kVersion);
  REQUIRE(s.workers.size() == 1);
  CHECK(s.workers[0].types == std::vector<std::string>{"a"});
  CHECK(s.workers[0].credit == 1);
  CHECK(s.workers[0].in_flight == 1);
  CHECK(s.workers[0].done == 1);
  CHECK(s.workers[0].pid == 1234);
}

TEST_CASE("STATUS is answered with STATS carrying the request id") {
  Harness h;
  h.ready("w1", {"a"});
  h.submit("c1", "b", payload_bytes(4));
  h.command("c2", Command::Status, bytes_of(wire::encode(wire::StatusRequest{55})));
  const auto sent = h.to("c2");
  REQUIRE(sent.size() == 1);
  REQUIRE(sent[0].command == Command::Stats);
  const auto frame = frame_of(sent[0].header);
  const auto s = wire::decode_stats(frame);
  CHECK(s.request_id == 55);
  CHECK(s.submitted == 1);
  REQUIRE(s.types.size() == 2);
  CHECK(s.types[0].type == "a");
  CHECK(s.types[0].workers == 1);
  CHECK(s.types[1].type == "b");
  CHECK(s.types[1].queued == 1);
  CHECK(s.workers.size() == 1);
}

TEST_CASE("say_goodbye tells every peer that introduced itself DISCONNECT") {
  Harness h;
  h.ready("w1", {"a"});
  h.hello("c1");
  h.heartbeat("stranger");
  const std::size_t mark = h.transport.sent.size();
  h.core.say_goodbye();
  CHECK(h.to("w1", mark).size() == 1);
  CHECK(h.to("w1", mark).at(0).command == Command::Disconnect);
  CHECK(h.to("c1", mark).size() == 1);
  CHECK(h.to("stranger", mark).empty());
}

// ---- WorkerRegistry -------------------------------------------------------------------

namespace {
WorkerEntry entry(std::string id, std::vector<std::string> types, std::uint32_t credit,
                  std::vector<std::uint64_t> jobs = {}) {
  WorkerEntry e;
  e.id = std::move(id);
  e.types = std::move(types);
  e.credit = credit;
  for (auto id : jobs) {
    Job job;
    job.id = id;
    e.jobs.push_back(std::move(job));
  }
  return e;
}

std::vector<std::uint64_t> held_ids(const WorkerEntry& w) {
  std::vector<std::uint64_t> ids;
  for (const auto& job : w.jobs) ids.push_back(job.id);
  return ids;
}
}  // namespace

TEST_CASE("WorkerRegistry::least_loaded") {
  WorkerRegistry r;
  CHECK(r.least_loaded("a") == nullptr);

  SUBCASE("lowest jobs/credit ratio wins") {
    r.upsert(entry("big", {"a"}, 10, {1, 2, 3, 4}));  // 0.4
    r.upsert(entry("small", {"a"}, 2, {5}));          // 0.5
    for (int i = 0; i < 3; ++i) {
      REQUIRE(r.least_loaded("a") != nullptr);
      CHECK(r.least_loaded("a")->id == "big");
    }
    r.find("small")->jobs.clear();  // 0
    CHECK(r.least_loaded("a")->id == "small");
  }
  SUBCASE("workers without free credit or paused are skipped") {
    r.upsert(entry("full", {"a"}, 1, {1}));
    CHECK(r.least_loaded("a") == nullptr);
    r.upsert(entry("paused", {"a"}, 5));
    r.find("paused")->paused = true;
    CHECK(r.least_loaded("a") == nullptr);
    r.find("paused")->paused = false;
    CHECK(r.least_loaded("a")->id == "paused");
  }
  SUBCASE("round robin among equally loaded workers") {
    r.upsert(entry("w1", {"a"}, 2));
    r.upsert(entry("w2", {"a"}, 2));
    r.upsert(entry("w3", {"a"}, 2));
    std::set<std::string> picked;
    for (int i = 0; i < 3; ++i) picked.insert(r.least_loaded("a")->id);
    CHECK(picked.size() == 3);
  }
  SUBCASE("only workers of the type") {
    r.upsert(entry("wb", {"b"}, 5));
    CHECK(r.least_loaded("a") == nullptr);
    CHECK(r.least_loaded("b")->id == "wb");
  }
}

TEST_CASE("WorkerRegistry registration and removal") {
  WorkerRegistry r;
  r.upsert(entry("w2", {"a", "b"}, 3, {7, 8}));
  r.upsert(entry("w1", {"b"}, 1));
  CHECK(r.size() == 2);
  CHECK(r.count("a") == 1);
  CHECK(r.count("b") == 2);
  CHECK(r.types() == std::vector<std::string>{"a", "b"});
  const auto all = r.all();
  REQUIRE(all.size() == 2);
  CHECK(all[0]->id == "w1");
  CHECK(all[1]->id == "w2");

  SUBCASE("re-registration keeps jobs in flight and re-indexes types") {
    r.find("w2")->done = 9;
    r.upsert(entry("w2", {"c"}, 4));
    CHECK(r.size() == 2);
    CHECK(held_ids(*r.find("w2")) == std::vector<std::uint64_t>{7, 8});
    CHECK(r.find("w2")->done == 9);
    CHECK(r.count("a") == 0);
    CHECK(r.count("b") == 1);
    CHECK(r.count("c") == 1);
    CHECK(r.least_loaded("a") == nullptr);
  }
  SUBCASE("remove hands back the jobs it held") {
    auto removed = r.remove("w2");
    REQUIRE(removed.has_value());
    CHECK(held_ids(*removed) == std::vector<std::uint64_t>{7, 8});
    CHECK(r.find("w2") == nullptr);
    CHECK(r.count("a") == 0);
    CHECK(r.count("b") == 1);
    CHECK(r.least_loaded("b")->id == "w1");
    CHECK_FALSE(r.remove("w2").has_value());
  }
}

// ---- MemoryJobQueue --------------------------------------------------------------

namespace {
Job job(std::uint64_t id, std::string type, std::int64_t enqueued_ms = 0) {
  Job j;
  j.id = id;
  j.flow_id = id;
  j.type = std::move(type);
  j.enqueued_ms = enqueued_ms;
  return j;
}

std::vector<std::uint64_t> drain(MemoryJobQueue& q, std::string_view type) {
  std::vector<std::uint64_t> ids;
  while (auto j = q.pop(type)) ids.push_back(j->id);
  return ids;
}
}  // namespace

TEST_CASE("MemoryJobQueue ordering") {
  MemoryJobQueue q;
  CHECK_FALSE(q.pop("a").has_value());
  CHECK_FALSE(q.oldest_enqueued_ms("a").has_value());

  SUBCASE("FIFO per type") {
    q.push_back(job(1, "a"));
    q.push_back(job(2, "a"));
    q.push_back(job(3, "a"));
    CHECK(drain(q, "a") == std::vector<std::uint64_t>{1, 2, 3});
  }
  SUBCASE("a job pushed to the front comes out first") {
    q.push_back(job(1, "a"));
    q.push_back(job(2, "a"));
    q.push_front(job(9, "a"));
    q.push_back(job(3, "a"));
    CHECK(drain(q, "a") == std::vector<std::uint64_t>{9, 1, 2, 3});
  }
  SUBCASE("the latest push_front is first") {
    q.push_back(job(1, "a"));
    q.push_front(job(8, "a"));
    q.push_front(job(9, "a"));
    CHECK(drain(q, "a") == std::vector<std::uint64_t>{9, 8, 1});
  }
  SUBCASE("types are independent") {
    q.push_back(job(1, "a"));
    q.push_back(job(2, "b"));
    q.push_front(job(3, "b"));
    CHECK(q.depth("a") == 1);
    CHECK(q.depth("b") == 2);
    CHECK(q.depth("c") == 0);
    CHECK_FALSE(q.pop("c").has_value());
    CHECK(drain(q, "b") == std::vector<std::uint64_t>{3, 2});
    CHECK(drain(q, "a") == std::vector<std::uint64_t>{1});
    CHECK(q.types() == std::vector<std::string>{"a", "b"});
  }
  SUBCASE("order holds across the jobs kept as they are and the ones packed beyond kMaxHotJobs") {
    constexpr std::uint64_t n = MemoryJobQueue::kMaxHotJobs + 500;
    std::vector<std::uint64_t> expected;
    for (std::uint64_t id = 1; id <= n; ++id) {
      Job j = job(id, id % 2 ? "a" : "b");
      j.payload = zmq::message_t(std::string(100, static_cast<char>('a' + id % 26)));
      j.reply_to = id % 3 ? "" : "client-" + std::to_string(id);
      q.push_back(std::move(j));
      if (id % 2) expected.push_back(id);
    }
    q.push_front(job(n + 1, "a"));  // a requeue goes first, whatever form the rest is in
    expected.insert(expected.begin(), n + 1);
    // Half of "a" drained frees room: a later job still waits behind the packed ones.
    std::vector<std::uint64_t> got;
    for (std::size_t i = 0; i < expected.size() / 2; ++i) got.push_back(q.pop("a")->id);
    q.push_back(job(n + 2, "a"));
    expected.push_back(n + 2);
    while (auto j = q.pop("a")) {
      got.push_back(j->id);
      if (j->id <= n) {  // payload and rare fields survive either form
        CHECK(j->payload.size() == 100);
        CHECK(j->payload.data<char>()[0] == static_cast<char>('a' + j->id % 26));
        CHECK(j->reply_to == (j->id % 3 ? "" : "client-" + std::to_string(j->id)));
        CHECK(j->type == "a");
      }
    }
    CHECK(got == expected);
    CHECK(q.depth("a") == 0);
    CHECK(q.depth("b") == n / 2);
  }
  SUBCASE("priorities still come first when the normal lane is kept as it is") {
    q.push_back(job(1, "a"));
    Job high = job(2, "a");
    high.priority = 5;
    q.push_back(std::move(high));
    Job low = job(3, "a");
    low.priority = -5;
    q.push_back(std::move(low));
    q.push_back(job(4, "a"));
    CHECK(drain(q, "a") == std::vector<std::uint64_t>{2, 1, 4, 3});
  }
  SUBCASE("oldest_enqueued_ms sees requeued jobs at the front") {
    q.push_back(job(1, "a", 500));
    q.push_back(job(2, "a", 700));
    CHECK(q.oldest_enqueued_ms("a") == 500);
    q.push_front(job(3, "a", 100));
    CHECK(q.oldest_enqueued_ms("a") == 100);
    (void)q.pop("a");
    CHECK(q.oldest_enqueued_ms("a") == 500);
  }
}

// ---- topic patterns ---------------------------------------------------------------

TEST_CASE("topic_matches") {
  using mw::topic_matches;
  CHECK(topic_matches("*", "users.created"));
  CHECK(topic_matches("*", ""));
  CHECK(topic_matches("*", "$mw.flow.done"));
  CHECK(topic_matches("orders.*", "orders.created"));
  CHECK(topic_matches("orders.*", "orders."));
  CHECK_FALSE(topic_matches("orders.*", "orders"));
  CHECK_FALSE(topic_matches("orders.*", "users.created"));
  CHECK_FALSE(topic_matches("orders.*", "xorders.created"));
  CHECK(topic_matches("*.created", "users.created"));
  CHECK(topic_matches("*.created", "a.b.created"));
  CHECK_FALSE(topic_matches("*.created", "users.created.late"));
  CHECK_FALSE(topic_matches("*.created", "users.patched"));
  CHECK(topic_matches("$mw.flow.done", "$mw.flow.done"));
  CHECK_FALSE(topic_matches("$mw.flow.done", "$mw.flow.done2"));
  CHECK_FALSE(topic_matches("$mw.flow.done", "$mw.flow"));
  CHECK(topic_matches("$mw.*.done", "$mw.flow.done"));
  CHECK(topic_matches("a*b*c", "a__b__c"));
  CHECK_FALSE(topic_matches("a*b*c", "a__c__b"));
  CHECK_FALSE(topic_matches("", "x"));
  CHECK(topic_matches("", ""));
  CHECK_FALSE(topic_matches("users", "users.created"));  // whole topic, not a prefix

  // Pathological pattern: must answer quickly (no exponential backtracking).
  const std::string long_a(100000, 'a');
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(topic_matches("a*a*a*a*b", long_a));
  CHECK(topic_matches("a*a*a*a*b", long_a + "b"));
  CHECK_FALSE(topic_matches("*a*a*a*a*a*a*a*a*b", long_a));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}
