// Unit tests of the $flows endpoint (broker/src/flows.cpp): looking at
// unfinished flows where they are, and cancelling them. Driven as the other
// core tests are: frames in, a fake clock, a RecordingTransport.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <deque>

#include <nlohmann/json.hpp>

#include "core_harness.hpp"
#include "mw/payload.hpp"

using namespace core_test;
using nlohmann::json;

namespace {

struct Reply {
  std::uint16_t code = 0;
  std::string message;
  json result;
};

// One CALL on $flows from c9, and the REPLY it got.
Reply call_flows(Harness& h, std::string_view method, std::optional<std::string> id = std::nullopt,
                 const json& query = nullptr) {
  static std::uint64_t request_id = 7000;
  const std::size_t mark = h.transport.sent.size();
  std::optional<std::string_view> id_view;
  if (id) id_view = *id;
  json body = json::object();
  if (!query.is_null()) body["query"] = query;
  h.command("c9", Command::Call, bytes_of(wire::encode(wire::Call{++request_id, "$flows", method, id_view})),
            mw::Payload::from_json(body).bytes());
  const auto sent = h.to("c9", mark);
  REQUIRE(sent.size() == 1);
  REQUIRE(sent[0].command == Command::Reply);
  const auto frame = frame_of(sent[0].header);
  const auto reply = wire::decode_reply(frame);
  CHECK(reply.request_id == request_id);
  Reply out{reply.code, std::string(reply.message), nullptr};
  if (reply.code == 0) out.result = mw::Payload::adopt(*sent[0].payload).to_json();
  return out;
}

std::vector<std::uint64_t> ids_of(const json& page) {
  std::vector<std::uint64_t> ids;
  for (const auto& r : page.at("data")) ids.push_back(r.at("id").get<std::uint64_t>());
  return ids;
}

std::uint64_t submit_with(Harness& h, wire::Submit header, const std::string& payload, const std::string& peer = "c1") {
  const std::size_t mark = h.transport.sent.size();
  h.command(peer, Command::Submit, bytes_of(wire::encode(header)), payload);
  for (const auto& s : h.to(peer, mark)) {
    if (s.command != Command::Accepted) continue;
    const auto frame = frame_of(s.header);
    return wire::decode_accepted(frame).flow_id;
  }
  FAIL("SUBMIT was not accepted");
  return 0;
}

}  // namespace

TEST_CASE("$flows find lists unfinished flows in the order they run; get shows one with its input") {
  Harness h;
  constexpr std::int64_t kWall = 1'800'000'000'000;
  h.core.set_wall_clock([] { return kWall; });
  h.ready("w1", {"c"}, "", 1);
  const auto running = h.submit("c1", "c", payload_bytes(1));
  const auto a1 = h.submit("c1", "a", payload_bytes(2), false);
  const auto a2 = h.submit("c1", "a", payload_bytes(3), false);
  auto urgent = submit_header(900, "a");
  urgent.priority = 5;
  const auto a_urgent = submit_with(h, urgent, payload_bytes(4));
  auto later = submit_header(901, "b");
  later.delay_ms = 60'000;
  const auto b_later = submit_with(h, later, mw::Payload::of(42).bytes());
  auto sooner = submit_header(902, "b");
  sooner.delay_ms = 1'000;
  const auto b_sooner = submit_with(h, sooner, payload_bytes(5));

  const auto all = call_flows(h, "find");
  REQUIRE(all.code == 0);
  CHECK(ids_of(all.result) == std::vector<std::uint64_t>{running, a_urgent, a1, a2, b_sooner, b_later});  // delayed: soonest due first
  CHECK(all.result.at("data").at(4).at("due_at") == kWall + 1'000);
  CHECK(all.result.at("data").at(5).at("due_at") == kWall + 60'000);
  CHECK(all.result.at("more") == false);
  const auto& in_flight = all.result.at("data").at(0);
  CHECK(in_flight.at("state") == "in_flight");
  CHECK(in_flight.at("type") == "c");
  CHECK(in_flight.at("attempts") == 1);
  CHECK(in_flight.at("worker") == json{{"host", "testhost"}, {"pid", 1234}});
  CHECK(in_flight.at("submitter_waits") == true);
  CHECK(all.result.at("data").at(1).at("priority") == 5);
  CHECK(all.result.at("data").at(4).at("state") == "delayed");
  CHECK_FALSE(all.result.at("data").at(3).contains("due_at"));
  CHECK_FALSE(all.result.at("data").at(0).contains("payload"));  // find is a listing; get has the input

  const auto two = call_flows(h, "find", std::nullopt, {{"$limit", 2}});
  CHECK(ids_of(two.result) == std::vector<std::uint64_t>{running, a_urgent});
  CHECK(two.result.at("more") == true);
  CHECK(ids_of(call_flows(h, "find", std::nullopt, {{"type", "a"}, {"state", "queued"}}).result) ==
        std::vector<std::uint64_t>{a_urgent, a1, a2});
  CHECK(ids_of(call_flows(h, "find", std::nullopt, {{"state", "delayed"}, {"$limit", 1}}).result) ==
        std::vector<std::uint64_t>{b_sooner});

  const auto one = call_flows(h, "get", std::to_string(b_later));
  REQUIRE(one.code == 0);
  CHECK(one.result.at("state") == "delayed");
  CHECK(one.result.at("type") == "b");
  CHECK(one.result.at("payload") == 42);

  SUBCASE("bad calls get one clear error each") {
    CHECK(call_flows(h, "get", "123456789").code == static_cast<std::uint16_t>(ErrorCode::NotFound));
    CHECK(call_flows(h, "get", "abc").code == static_cast<std::uint16_t>(ErrorCode::BadRequest));
    CHECK(call_flows(h, "get").code == static_cast<std::uint16_t>(ErrorCode::BadRequest));
    CHECK(call_flows(h, "create").code == static_cast<std::uint16_t>(ErrorCode::BadRequest));
    const auto bad_query = call_flows(h, "find", std::nullopt, {{"status", "queued"}});
    CHECK(bad_query.code == static_cast<std::uint16_t>(ErrorCode::BadRequest));
    CHECK(bad_query.message.find("'status'") != std::string::npos);
    CHECK(call_flows(h, "find", std::nullopt, {{"state", "sleeping"}}).code ==
          static_cast<std::uint16_t>(ErrorCode::BadRequest));
  }
}

TEST_CASE("$flows remove cancels a queued flow: it leaves its queue and its waiting submitter hears 'cancelled'") {
  Harness h;
  const auto keep = h.submit("c1", "a", payload_bytes(1), false);
  auto keyed = submit_header(900, "a", true);
  keyed.key = "order-17";
  const auto gone = submit_with(h, keyed, payload_bytes(2), "c2");
  CHECK(h.core.stats(h.now).waiting == 2);

  const auto r = call_flows(h, "remove", std::to_string(gone));
  REQUIRE(r.code == 0);
  CHECK(r.result.at("id") == gone);
  CHECK(r.result.at("state") == "cancelled");
  CHECK(r.result.at("was") == "queued");
  CHECK(h.queue.depth("a") == 1);
  CHECK(h.core.stats(h.now).waiting == 1);
  CHECK(h.core.stats(h.now).cancelled == 1);
  const auto told = h.results("c2");
  REQUIRE(told.size() == 1);
  CHECK(told[0].flow == gone);
  CHECK(told[0].outcome == "cancelled");
  CHECK(told[0].payload == payload_bytes(2));  // the input of the stage it was at

  // Gone for good: not served, not found, its key free for a new flow.
  h.ready("w1", {"a"}, "", 5);
  const auto jobs = h.jobs("w1");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].flow == keep);
  CHECK(call_flows(h, "remove", std::to_string(gone)).code == static_cast<std::uint16_t>(ErrorCode::Conflict));
  CHECK(call_flows(h, "remove", "123456789").code == static_cast<std::uint16_t>(ErrorCode::NotFound));
  keyed.request_id = 901;
  CHECK(submit_with(h, keyed, payload_bytes(3), "c2") != gone);
}

TEST_CASE("$flows remove cancels a delayed flow: its time comes and nothing runs") {
  Harness h;
  auto later = submit_header(900, "a", true);
  later.delay_ms = 5'000;
  const auto flow = submit_with(h, later, payload_bytes(1));
  REQUIRE(h.core.delayed() == 1);
  CHECK(call_flows(h, "remove", std::to_string(flow)).result.at("was") == "delayed");
  CHECK(h.core.delayed() == 0);
  CHECK(h.results("c1").at(0).outcome == "cancelled");
  h.ready("w1", {"a"});
  h.now += 10'000;
  h.tick();
  CHECK(h.jobs("w1").empty());
}

TEST_CASE("$flows remove of a flow in flight: the submitter hears at once, the worker's answer is dropped") {
  Harness h;
  h.ready("w1", {"a"}, "b", 1);
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  const auto second = h.submit("c1", "a", payload_bytes(2), false);
  const auto job = h.jobs("w1").at(0);
  REQUIRE(job.flow == flow);

  const auto r = call_flows(h, "remove", std::to_string(flow));
  REQUIRE(r.code == 0);
  CHECK(r.result.at("was") == "in_flight");
  CHECK(r.result.at("worker").at("pid") == 1234);
  REQUIRE(h.results("c1").size() == 1);
  CHECK(h.results("c1")[0].outcome == "cancelled");
  CHECK(call_flows(h, "get", std::to_string(flow)).result.at("state") == "cancelled");  // ended: its outcome is kept
  CHECK(ids_of(call_flows(h, "find").result) == std::vector<std::uint64_t>{second});

  SUBCASE("handed back by its worker, it is dropped, not run, and stays out of sight") {
    h.disconnect("w1");  // graceful: its job would go back to the queue, but its flow has ended
    CHECK(ids_of(call_flows(h, "find").result) == std::vector<std::uint64_t>{second});
    CHECK(h.core.stats(h.now).waiting == 1);  // not held in the queue, nor counted against --max-waiting
    CHECK(h.core.counters().requeued == 0);
    CHECK(call_flows(h, "remove", std::to_string(flow)).code == static_cast<std::uint16_t>(ErrorCode::Conflict));
    h.ready("w2", {"a"}, "", 5);
    const auto jobs = h.jobs("w2");
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].flow == second);
    CHECK(h.results("c1").size() == 1);
    CHECK(h.core.stats(h.now).cancelled == 1);
    return;
  }
  // The worker finishes it anyway: no next stage, no second RESULT, and its
  // credit goes to the next job.
  h.done("w1", job.id, std::nullopt, payload_bytes(9));
  CHECK(h.results("c1").size() == 1);
  CHECK(h.queue.depth("b") == 0);
  CHECK(h.core.counters().flows_done == 0);
  REQUIRE(h.jobs("w1").size() == 2);
  CHECK(h.jobs("w1")[1].flow == second);
}

TEST_CASE("$flows remove of a flow in flight on a worker that takes CANCEL: the worker is told, and its FAIL frees the credit") {
  Harness h;
  h.ready("w1", {"a"}, "", 1, /*takes_cancel=*/true);
  h.ready("w0", {"z"}, "", 1);  // an older worker, holding nothing of this flow: told nothing
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  const auto second = h.submit("c1", "a", payload_bytes(2), false);
  const auto job = h.jobs("w1").at(0);
  REQUIRE(job.flow == flow);

  const std::size_t mark = h.transport.sent.size();
  const auto r = call_flows(h, "remove", std::to_string(flow));
  REQUIRE(r.code == 0);
  CHECK(r.result.at("stop_sent") == true);
  CHECK_FALSE(r.result.contains("expired_runs_told"));  // no run past its lease
  const auto to_worker = h.to("w1", mark);
  REQUIRE(to_worker.size() == 1);
  CHECK(to_worker[0].command == Command::Cancel);
  CHECK(wire::decode_cancel(frame_of(to_worker[0].header)).job_id == job.id);
  CHECK(h.to("w0", mark).empty());
  REQUIRE(h.results("c1").size() == 1);
  CHECK(h.results("c1")[0].outcome == "cancelled");

  // The worker stops the job and says so: dropped, not retried, not counted
  // as a failure; its credit goes to the next job.
  h.command("w1", Command::Fail, bytes_of(wire::encode(wire::Fail{job.id, "cancelled", false})));
  CHECK(h.core.counters().failed == 0);
  CHECK(h.core.stats(h.now).delayed == 0);
  REQUIRE(h.jobs("w1").size() == 2);
  CHECK(h.jobs("w1")[1].flow == second);
  CHECK(h.results("c1").size() == 1);
}

// Jobs of type "a" have a 5 s lease.
BrokerConfig five_second_lease_on_a() {
  BrokerConfig config = test_config();
  config.type_lease_ms["a"] = 5'000;
  return config;
}

// 6 s pass with `worker` heartbeating: the lease of the job of type a it holds runs out.
void outlive_lease(Harness& h, const std::string& worker) {
  for (int i = 0; i < 6; ++i) {
    h.now += 1000;
    h.heartbeat(worker);
    h.tick();
  }
  REQUIRE(h.core.counters().lease_expired >= 1);
}

TEST_CASE("$flows remove of a flow whose job outlived its lease: the worker still running it is told to stop") {
  Harness h(five_second_lease_on_a());
  h.ready("w1", {"a"}, "", 1, /*takes_cancel=*/true);
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  const auto job = h.jobs("w1").at(0);
  outlive_lease(h, "w1");
  REQUIRE(h.jobs("w1").size() == 1);  // the run's slot stays taken, so the job waits queued

  const std::size_t mark = h.transport.sent.size();
  const auto r = call_flows(h, "remove", std::to_string(flow));
  REQUIRE(r.code == 0);
  CHECK(r.result.at("was") == "queued");
  CHECK(r.result.at("expired_runs_told") == 1);
  const auto to_worker = h.to("w1", mark);
  REQUIRE(to_worker.size() == 1);
  CHECK(to_worker[0].command == Command::Cancel);
  CHECK(wire::decode_cancel(frame_of(to_worker[0].header)).job_id == job.id);

  // Its answer for the stopped run frees the slot: the next job goes to it.
  h.command("w1", Command::Fail, bytes_of(wire::encode(wire::Fail{job.id, "cancelled", false, job.attempt})));
  const auto next = h.submit("c1", "a", payload_bytes(2));
  REQUIRE(h.jobs("w1").size() == 2);
  CHECK(h.jobs("w1")[1].flow == next);
}

TEST_CASE("$flows remove stops a run past its lease of an earlier stage too: one CANCEL to each worker") {
  Harness h(five_second_lease_on_a());
  h.ready("w1", {"a"}, "b", 1, /*takes_cancel=*/true);
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  const auto first = h.jobs("w1").at(0);
  outlive_lease(h, "w1");
  h.ready("w2", {"a"}, "b", 1, /*takes_cancel=*/true);  // runs stage a again, and ends it
  REQUIRE(h.jobs("w2").size() == 1);
  h.done("w2", first.id, std::nullopt, payload_bytes(2));
  h.ready("w3", {"b"}, "", 1, /*takes_cancel=*/true);  // holds stage b
  REQUIRE(h.jobs("w3").size() == 1);
  const auto second = h.jobs("w3").at(0);

  const std::size_t mark = h.transport.sent.size();
  const auto r = call_flows(h, "remove", std::to_string(flow));
  REQUIRE(r.code == 0);
  CHECK(r.result.at("stop_sent") == true);
  CHECK(r.result.at("expired_runs_told") == 1);  // w3's is the job in flight
  const auto to_w1 = h.to("w1", mark), to_w3 = h.to("w3", mark);
  REQUIRE(to_w1.size() == 1);
  CHECK(to_w1[0].command == Command::Cancel);
  CHECK(wire::decode_cancel(frame_of(to_w1[0].header)).job_id == first.id);
  REQUIRE(to_w3.size() == 1);
  CHECK(wire::decode_cancel(frame_of(to_w3[0].header)).job_id == second.id);
  CHECK(h.to("w2", mark).empty());
}

TEST_CASE("$flows remove of a flow in flight on a worker that does not take CANCEL: nothing is sent to it") {
  Harness h;
  h.ready("w1", {"a"}, "", 1);
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  const std::size_t mark = h.transport.sent.size();
  const auto r = call_flows(h, "remove", std::to_string(flow));
  REQUIRE(r.code == 0);
  CHECK(r.result.at("stop_sent") == false);
  CHECK(h.to("w1", mark).empty());
  // Not in flight: no stop_sent in the record.
  const auto queued = h.submit("c1", "q", payload_bytes(2), false);
  CHECK_FALSE(call_flows(h, "remove", std::to_string(queued)).result.contains("stop_sent"));
}

TEST_CASE("CANCEL is sent by the broker: a peer that sends it gets ERROR 400") {
  Harness h;
  const std::size_t mark = h.transport.sent.size();
  h.command("p1", Command::Cancel, bytes_of(wire::encode(wire::CancelJob{5})));
  const auto sent = h.to("p1", mark);
  REQUIRE(sent.size() == 1);
  const auto error = Harness::error_of(sent[0]);
  CHECK(error.code == ErrorCode::BadRequest);
  CHECK(error.message == "CANCEL is sent by the broker, not to it");
}

TEST_CASE("$flows works without an entity store") {
  Harness h;  // no store attached: entity CALLs get 501, $flows does not need one
  const auto flow = h.submit("c1", "a", payload_bytes(1), false);
  CHECK(ids_of(call_flows(h, "find").result) == std::vector<std::uint64_t>{flow});
}

TEST_CASE("MemoryJobQueue::take_flow takes a job out of any lane and keeps the counts") {
  MemoryJobQueue q;
  auto job = [](std::uint64_t id, std::int32_t priority) {
    Job j;
    j.id = j.flow_id = id;
    j.type = "t";
    j.priority = priority;
    std::string bytes = payload_bytes(10);
    j.payload = zmq::message_t(bytes.data(), bytes.size());
    return j;
  };
  for (std::uint64_t id = 1; id <= 3; ++id) q.push_back(job(id, 0));
  q.push_back(job(4, 7));
  q.push_back(job(5, -2));
  const std::uint64_t bytes = q.payload_bytes();
  CHECK(q.take_flow(4).value().priority == 7);  // the only job of its lane: the lane goes
  CHECK(q.take_flow(2).value().id == 2);
  CHECK(q.take_flow(5).value().id == 5);
  CHECK_FALSE(q.take_flow(99).has_value());
  CHECK(q.size() == 2);
  CHECK(q.depth("t") == 2);
  CHECK(q.payload_bytes() == bytes * 2 / 5);
  CHECK(q.pop("t").value().id == 1);
  CHECK(q.pop("t").value().id == 3);
  CHECK_FALSE(q.pop("t").has_value());
}

// ---- kept outcomes: WAIT and $flows get of a flow that ended --------------

namespace {

// One WAIT from `peer`; what it was answered with at once.
std::vector<Sent> wait_for(Harness& h, const std::string& peer, std::uint64_t flow, std::uint64_t request_id = 31) {
  const std::size_t mark = h.transport.sent.size();
  h.command(peer, Command::Wait, bytes_of(wire::encode(wire::WaitRequest{request_id, flow})));
  return h.to(peer, mark);
}

// The one ERROR a WAIT got.
ErrorMsg wait_error(Harness& h, std::uint64_t flow, std::uint64_t request_id) {
  const auto sent = wait_for(h, "c3", flow, request_id);
  REQUIRE(sent.size() == 1);
  return Harness::error_of(sent[0]);
}

}  // namespace

TEST_CASE("WAIT on an unfinished flow: the RESULT comes when it ends, to every waiter once") {
  Harness h;
  h.ready("w1", {"a"}, "b", 1);
  h.ready("w2", {"b"}, "", 1);
  const auto flow = h.submit("c1", "a", payload_bytes(1));  // c1 waits as the submitter
  CHECK(wait_for(h, "c2", flow).empty());                   // nothing until it ends
  CHECK(wait_for(h, "c2", flow, 32).empty());               // asked twice: told once
  CHECK(wait_for(h, "c1", flow).empty());                   // the submitter asks again (it reconnected)
  CHECK(call_flows(h, "get", std::to_string(flow)).result.at("stage") == 1);
  h.done("w1", h.jobs("w1").at(0).id, std::nullopt, payload_bytes(5));
  CHECK(h.results("c2").empty());  // the flow goes on to stage b
  CHECK(call_flows(h, "get", std::to_string(flow)).result.at("stage") == 2);
  h.done("w2", h.jobs("w2").at(0).id, std::nullopt, payload_bytes(7));
  for (const std::string peer : {"c1", "c2"}) {
    INFO(peer);
    const auto results = h.results(peer);
    REQUIRE(results.size() == 1);
    CHECK(results[0].flow == flow);
    CHECK(results[0].outcome == "done");
    CHECK(results[0].last_type == "b");
    CHECK(results[0].payload == payload_bytes(7));
  }
}

TEST_CASE("WAIT on a flow that ended gets its RESULT at once; $flows get shows how it ended") {
  Harness h;
  constexpr std::int64_t kWall = 1'800'000'000'000;
  h.core.set_wall_clock([] { return kWall; });
  h.ready("w1", {"a"}, "", 1);
  const auto done_flow = h.submit("c1", "a", payload_bytes(1), false);
  h.done("w1", h.jobs("w1").at(0).id, std::nullopt, payload_bytes(9));
  const auto dead_flow = h.submit("c1", "a", mw::Payload::of("x").bytes(), false, 1);
  h.fail("w1", h.jobs("w1").at(1).id, "not a number", true);

  const auto sent = wait_for(h, "c3", done_flow);
  REQUIRE(sent.size() == 1);
  REQUIRE(sent[0].command == Command::Result);
  const auto header = frame_of(sent[0].header);
  const auto r = wire::decode_result(header);
  CHECK(r.flow_id == done_flow);
  CHECK(r.outcome == "done");
  CHECK(*sent[0].payload == payload_bytes(9));

  const auto dead = wait_for(h, "c3", dead_flow);
  REQUIRE(dead.size() == 1);
  const auto dead_header = frame_of(dead[0].header);
  CHECK(wire::decode_result(dead_header).outcome == "dead");
  CHECK(wire::decode_result(dead_header).error == "not a number");

  const auto got = call_flows(h, "get", std::to_string(done_flow));
  REQUIRE(got.code == 0);
  CHECK(got.result.at("state") == "done");
  CHECK(got.result.at("type") == "a");
  CHECK(got.result.at("finished_at") == kWall);
  CHECK(got.result.contains("result"));
  const auto got_dead = call_flows(h, "get", std::to_string(dead_flow));
  REQUIRE(got_dead.code == 0);
  CHECK(got_dead.result.at("state") == "dead");
  CHECK(got_dead.result.at("error") == "not a number");
  CHECK(got_dead.result.at("payload") == "x");  // the input of the stage that died
  CHECK(got_dead.result.at("attempts") == 1);
  // find still lists only unfinished flows.
  CHECK(call_flows(h, "find").result.at("data").empty());
}

TEST_CASE("WAIT on a flow the broker does not know: ERROR 404 with the request id") {
  SUBCASE("never submitted") {
    Harness h;
    const auto e = wait_error(h, 424242, 77);
    CHECK(e.code == ErrorCode::NotFound);
    CHECK(e.request_id == 77);
    CHECK(e.message.find("424242") != std::string::npos);
    CHECK(call_flows(h, "get", "424242").code == static_cast<std::uint16_t>(ErrorCode::NotFound));
  }
  SUBCASE("ended, with outcomes not kept (--keep-results 0)") {
    auto config = test_config();
    config.keep_results = 0;
    Harness h(config);
    h.ready("w1", {"a"}, "", 1);
    const auto flow = h.submit("c1", "a", payload_bytes(1), false);
    h.done("w1", h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
    const auto e = wait_error(h, flow, 31);
    CHECK(e.code == ErrorCode::NotFound);
    CHECK(e.message.find("keeps no outcomes") != std::string::npos);
  }
  SUBCASE("flow id 0 is malformed") {
    Harness h;
    const auto e = wait_error(h, 0, 78);
    CHECK(e.code == ErrorCode::BadRequest);
    CHECK(e.request_id == 78);
  }
}

TEST_CASE("a cancelled flow's outcome is kept: a later WAIT hears 'cancelled'") {
  Harness h;
  const auto flow = h.submit("c1", "a", payload_bytes(3), false);
  REQUIRE(call_flows(h, "remove", std::to_string(flow)).code == 0);
  const auto sent = wait_for(h, "c3", flow);
  REQUIRE(sent.size() == 1);
  const auto header = frame_of(sent[0].header);
  CHECK(wire::decode_result(header).outcome == "cancelled");
  CHECK(call_flows(h, "get", std::to_string(flow)).result.at("state") == "cancelled");
}

TEST_CASE("FinishedFlows keeps the newest outcomes within its count and bytes") {
  using mw::broker::FinishedFlows;
  auto add = [](FinishedFlows& kept, std::uint64_t id, std::size_t result_bytes) {
    REQUIRE(kept.fits(result_bytes));
    auto& entry = kept.add(id, mw::kOutcomeDone, "", std::string(result_bytes, 'r'));
    entry.last_type = "t" + std::to_string(id);
  };
  auto kept_ids = [](const FinishedFlows& kept, std::uint64_t up_to) {
    std::vector<std::uint64_t> ids;
    for (std::uint64_t id = 1; id <= up_to; ++id)
      if (kept.find(id)) ids.push_back(id);
    return ids;
  };
  SUBCASE("count: the oldest go first, and the ring wraps around") {
    FinishedFlows kept(3, 1 << 20);
    for (std::uint64_t id = 1; id <= 7; ++id) add(kept, id, 10);
    CHECK(kept_ids(kept, 7) == std::vector<std::uint64_t>{5, 6, 7});
    CHECK(kept.size() == 3);
    CHECK(kept.bytes() == 30);
    REQUIRE(kept.find(6) != nullptr);
    CHECK(kept.find(6)->last_type == "t6");  // each entry is its own, reused slots and all
    CHECK(kept.find(6)->result == std::string(10, 'r'));
  }
  SUBCASE("bytes: as many of the newest as fit; one larger than the whole allowance does not fit") {
    FinishedFlows kept(100, 100);
    add(kept, 1, 40);
    add(kept, 2, 40);
    add(kept, 3, 40);  // 120 > 100: flow 1 goes
    CHECK(kept_ids(kept, 3) == std::vector<std::uint64_t>{2, 3});
    CHECK(kept.bytes() == 80);
    CHECK_FALSE(kept.fits(101));
    // Fewer kept than slots made (the bytes let go of some): the free slots
    // are used before the ring grows, in order.
    add(kept, 4, 90);
    CHECK(kept_ids(kept, 4) == std::vector<std::uint64_t>{4});
    for (std::uint64_t id = 5; id <= 9; ++id) add(kept, id, 1);
    CHECK(kept_ids(kept, 9) == std::vector<std::uint64_t>{4, 5, 6, 7, 8, 9});
    add(kept, 10, 90);  // 90 + 5 + 90 > 100: 4 goes, then 5..9 stay within the bytes
    CHECK(kept_ids(kept, 10) == std::vector<std::uint64_t>{5, 6, 7, 8, 9, 10});
    CHECK(kept.bytes() == 95);
  }
  SUBCASE("the ring grows when full while the oldest is not in its first slot") {
    FinishedFlows kept(5, 100);
    add(kept, 1, 60);
    add(kept, 2, 30);
    add(kept, 3, 30);  // over 100: flow 1 goes; 3 takes its slot, so the oldest (2) is in slot 1
    add(kept, 4, 1);   // both slots taken, 61 bytes: a slot is added between 3 and 2
    add(kept, 5, 1);
    CHECK(kept_ids(kept, 5) == std::vector<std::uint64_t>{2, 3, 4, 5});
    for (std::uint64_t id = 6; id <= 12; ++id) add(kept, id, 1);  // five slots, then around
    CHECK(kept_ids(kept, 12) == std::vector<std::uint64_t>{8, 9, 10, 11, 12});
    CHECK(kept.bytes() == 5);
    CHECK(kept.find(10)->last_type == "t10");
  }
  SUBCASE("an error counts against the bytes as a result does") {
    FinishedFlows kept(10, 100);
    kept.add(1, mw::kOutcomeDead, std::string(60, 'e'), "x");
    kept.add(2, mw::kOutcomeDead, std::string(60, 'e'), "y");  // 122 > 100: flow 1 goes
    CHECK(kept.find(1) == nullptr);
    REQUIRE(kept.find(2) != nullptr);
    CHECK(kept.find(2)->error == std::string(60, 'e'));
    CHECK(kept.bytes() == 61);
    CHECK_FALSE(kept.fits(101));
  }
  SUBCASE("forget drops one; its slot is reused in turn") {
    FinishedFlows kept(3, 1000);
    add(kept, 1, 10);
    add(kept, 2, 10);
    kept.forget(2);
    CHECK(kept.find(2) == nullptr);
    CHECK(kept.bytes() == 10);
    add(kept, 3, 10);
    add(kept, 4, 10);  // three slots: 1 goes
    CHECK(kept_ids(kept, 4) == std::vector<std::uint64_t>{3, 4});
  }
  SUBCASE("agrees with a plain list of the newest over 20 000 random adds and forgets") {
    FinishedFlows kept(64, 2000);
    std::deque<std::pair<std::uint64_t, std::size_t>> model;  // oldest first: flow, bytes
    std::uint64_t state = 12345;
    auto next = [&](std::uint64_t bound) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      return (state >> 33) % bound;
    };
    std::uint64_t id = 0;
    for (int step = 0; step < 20'000; ++step) {
      if (next(10) == 0 && !model.empty()) {
        const auto victim = model[next(model.size())].first;
        kept.forget(victim);
        for (auto& [flow, bytes] : model)
          if (flow == victim) flow = 0, bytes = 0;  // its slot stays until it is the oldest
        continue;
      }
      const std::size_t size = next(4) == 0 ? next(1500) : next(40);
      add(kept, ++id, size);
      auto total = [&] {
        std::size_t sum = 0;
        for (const auto& entry : model) sum += entry.second;
        return sum;
      };
      while (!model.empty() && (model.size() >= 64 || total() + size > 2000)) model.pop_front();
      model.emplace_back(id, size);
      if (step % 97 == 0) {
        std::vector<std::uint64_t> expected;
        for (const auto& [flow, bytes] : model)
          if (flow) expected.push_back(flow);
        std::vector<std::uint64_t> got;
        for (std::uint64_t f = id > 200 ? id - 200 : 1; f <= id; ++f)
          if (const auto* entry = kept.find(f)) {
            got.push_back(f);
            REQUIRE(entry->last_type == "t" + std::to_string(f));
          }
        REQUIRE(got == expected);
        REQUIRE(kept.bytes() == total());
      }
    }
  }
  SUBCASE("0 keeps nothing") {
    FinishedFlows kept(0, 1000);
    CHECK_FALSE(kept.enabled());
    CHECK_FALSE(kept.fits(0));
    CHECK(kept.find(1) == nullptr);
  }
}

TEST_CASE("submitter_waits: the submitter that waits is gone once it says DISCONNECT or misses its heartbeats") {
  // The job still names it (its RESULT would go nowhere): the record must
  // not say that anyone waits (the probe of 2026-12-07: true for good after
  // a Ctrl-C of mw submit --wait).
  Harness h;
  h.hello("c1");
  const auto first = h.submit("c1", "a", payload_bytes(1), /*wait=*/true);
  CHECK(call_flows(h, "get", std::to_string(first)).result.at("submitter_waits") == true);
  h.disconnect("c1");
  CHECK(call_flows(h, "get", std::to_string(first)).result.at("submitter_waits") == false);

  h.hello("c2");
  const auto second = h.submit("c2", "a", payload_bytes(2), /*wait=*/true);
  CHECK(call_flows(h, "get", std::to_string(second)).result.at("submitter_waits") == true);
  for (int beat = 0; beat < 5; ++beat) {  // c2 says nothing more: expired after liveness x interval
    h.now += 1000;
    h.tick();
  }
  CHECK(call_flows(h, "get", std::to_string(second)).result.at("submitter_waits") == false);
}

TEST_CASE("a client that asked with WAIT and went away is not waited for") {
  Harness h;
  const auto flow = h.submit("c1", "a", payload_bytes(1), false);
  CHECK(wait_for(h, "c3", flow).empty());
  CHECK(call_flows(h, "get", std::to_string(flow)).result.at("submitter_waits") == true);
  h.disconnect("c3");
  CHECK(call_flows(h, "get", std::to_string(flow)).result.at("submitter_waits") == false);
  h.ready("w1", {"a"}, "", 1);
  h.done("w1", h.jobs("w1").at(0).id, std::nullopt, payload_bytes(2));
  CHECK(h.results("c3").empty());
}

// The values published on $mw.progress so far, checking each names `flow` and `type`.
std::vector<json> published_progress(const Harness& h, std::uint64_t flow, std::string_view type) {
  std::vector<json> events;
  for (const auto& p : h.transport.published) {
    if (p.topic != "$mw.progress") continue;
    const auto meta_frame = frame_of(p.meta);
    const auto meta = wire::decode_event_meta(meta_frame);
    CHECK(meta.flow_id == flow);
    CHECK(meta.type == type);
    events.push_back(mw::Payload::adopt(p.data).to_json());
  }
  return events;
}

TEST_CASE("PROGRESS: the holding worker's newest value shows in $flows and is published; it goes with the run") {
  Harness h;
  h.transport.subscribers = true;
  h.ready("w1", {"a"}, "b", 2);
  const auto flow = h.submit("c1", "a", payload_bytes(1));
  const auto job = h.jobs("w1").at(0);
  auto progress = [&](const std::string& peer, std::uint64_t job_id, const json& value) {
    h.command(peer, Command::Progress, bytes_of(wire::encode(wire::JobProgress{job_id})),
              mw::Payload::from_json(value).bytes());
  };

  progress("w1", job.id, 0.25);
  progress("w1", job.id, json{{"done", 3}, {"of", 10}});  // the newest counts
  const auto record = call_flows(h, "get", std::to_string(flow)).result;
  CHECK(record.at("progress") == json{{"done", 3}, {"of", 10}});
  CHECK(ids_of(call_flows(h, "find").result) == std::vector<std::uint64_t>{flow});
  CHECK(call_flows(h, "find").result.at("data").at(0).at("progress") == json{{"done", 3}, {"of", 10}});
  // Published with the flow and its type: the first at once, the second
  // (within 100 ms of it) once those are over.
  CHECK(published_progress(h, flow, "a") == std::vector<json>{0.25});
  h.now += BrokerCore::kProgressPublishEveryMs - 1;
  h.tick();
  CHECK(published_progress(h, flow, "a") == std::vector<json>{0.25});
  h.now += 1;
  CHECK(h.core.next_deadline_ms() <= h.now);
  h.tick();
  CHECK(published_progress(h, flow, "a") == std::vector<json>{0.25, json{{"done", 3}, {"of", 10}}});

  SUBCASE("only from the worker that holds the job, and only while it does") {
    h.ready("w2", {"a"}, "", 1);
    progress("w2", job.id, 0.9);   // not its job
    progress("w1", 424242, 0.9);   // no such job
    progress("nobody", job.id, 0.9);  // not a worker
    CHECK(call_flows(h, "get", std::to_string(flow)).result.at("progress") == json{{"done", 3}, {"of", 10}});
    h.done("w1", job.id, std::nullopt, payload_bytes(2));
    const auto next = call_flows(h, "get", std::to_string(flow)).result;
    CHECK(next.at("type") == "b");
    CHECK_FALSE(next.contains("progress"));  // the next stage starts with none
    progress("w1", job.id, 1.0);  // late: the job is done
    CHECK(h.core.stats(h.now).stale == 0);
    CHECK_FALSE(call_flows(h, "get", std::to_string(flow)).result.contains("progress"));
  }
  SUBCASE("a job taken back from a lost worker starts over without it") {
    h.now += 10'000;  // w1 misses its heartbeats
    h.tick();
    const auto back = call_flows(h, "get", std::to_string(flow)).result;
    CHECK(back.at("state") == "queued");
    CHECK_FALSE(back.contains("progress"));
  }
  SUBCASE("a worker sending a flood is published at most every 100 ms, the newest, and its last before the answer") {
    h.now += 1000;
    for (int i = 1; i <= 1000; ++i) {
      progress("w1", job.id, i);
      if (i % 100 == 0) {
        h.now += 10;  // 1000 values in 100 ms
        h.tick();
      }
    }
    const auto events = published_progress(h, flow, "a");
    REQUIRE(events.size() == 4);  // the two above, the flood's first, and its newest at the 100 ms mark
    CHECK(events[2] == 1);
    CHECK(events[3] == 1000);
    progress("w1", job.id, "last");  // within 100 ms: held back…
    CHECK(published_progress(h, flow, "a").size() == 4);
    h.done("w1", job.id, std::nullopt, payload_bytes(2));  // …and published as the run ends
    CHECK(published_progress(h, flow, "a").back() == "last");
    h.now += 1000;
    h.tick();
    CHECK(published_progress(h, flow, "a").size() == 5);  // the held entry is not published twice
  }
  SUBCASE("a value that comes just as a held one falls due is published once") {
    h.now += 50;
    progress("w1", job.id, "held");  // 50 ms after the last publish: held until +100
    h.now += 50;
    progress("w1", job.id, "on time");  // due now: published at once…
    progress("w1", job.id, "newer");     // …and this one held for the next 100 ms
    h.tick();                            // the first held entry falls due: nothing more to say
    CHECK(published_progress(h, flow, "a") == std::vector<json>{0.25, json{{"done", 3}, {"of", 10}}, "on time"});
    h.now += BrokerCore::kProgressPublishEveryMs;
    h.tick();
    CHECK(published_progress(h, flow, "a").back() == "newer");
  }
  // Where a held value stands among the published events: index of the
  // last `$mw.progress` and of the first event on `topic`.
  auto positions = [&](std::string_view topic) {
    std::ptrdiff_t last_progress = -1, first_other = -1;
    for (std::size_t i = 0; i < h.transport.published.size(); ++i) {
      if (h.transport.published[i].topic == "$mw.progress") last_progress = static_cast<std::ptrdiff_t>(i);
      if (h.transport.published[i].topic == topic && first_other < 0) first_other = static_cast<std::ptrdiff_t>(i);
    }
    return std::pair{last_progress, first_other};
  };
  SUBCASE("a held value goes out before the flow's cancel, and nothing of the flow after it") {
    progress("w1", job.id, "before the cancel");
    call_flows(h, "remove", std::to_string(flow));
    CHECK(published_progress(h, flow, "a").back() == "before the cancel");
    const auto [last_progress, cancelled] = positions("$mw.flow.cancelled");
    REQUIRE(cancelled >= 0);
    CHECK(last_progress < cancelled);
    progress("w1", job.id, "after the cancel");  // the handler runs on: not shown, not published
    h.now += 1000;
    h.tick();
    CHECK(published_progress(h, flow, "a").back() == "before the cancel");
  }
  SUBCASE("a held value goes out when its worker is lost, before the worker's gone event") {
    progress("w1", job.id, "last words");
    h.disconnect("w1");
    CHECK(published_progress(h, flow, "a").back() == "last words");
    const auto [last_progress, gone] = positions("$mw.worker.gone");
    REQUIRE(gone >= 0);
    CHECK(last_progress < gone);
  }
  SUBCASE("a value over kMaxProgressBytes is refused with ERROR 413 and changes nothing") {
    const std::size_t mark = h.transport.sent.size();
    h.command("w1", Command::Progress, bytes_of(wire::encode(wire::JobProgress{job.id})),
              mw::Payload::from_json(json(std::string(mw::kMaxProgressBytes, 'x'))).bytes());
    const auto sent = h.to("w1", mark);
    REQUIRE(sent.size() == 1);
    CHECK(Harness::error_of(sent[0]).code == ErrorCode::TooLarge);
    CHECK(call_flows(h, "get", std::to_string(flow)).result.at("progress") == json{{"done", 3}, {"of", 10}});
  }
}
