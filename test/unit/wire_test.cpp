// Unit tests of the MW/1 codec (mw/wire.hpp): a round trip for every header,
// and hostile input for every decoder.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

#include "mw/error.hpp"
#include "mw/protocol.hpp"
#include "mw/wire.hpp"
#include "submit_header.hpp"

namespace {

using mw::Command;
using mw::ErrorCode;
namespace wire = mw::wire;

zmq::message_t frame_of(std::string_view bytes) { return zmq::message_t(bytes.data(), bytes.size()); }

std::string bytes_of(const zmq::message_t& frame) { return std::string(frame.data<char>(), frame.size()); }

// Runs `f` and returns the DecodeError's code; fails the test when `f` does
// not throw DecodeError (any other exception, e.g. bad_alloc, fails too).
template <typename F>
ErrorCode decode_error_code(F&& f) {
  try {
    f();
  } catch (const wire::DecodeError& e) {
    CHECK(std::string_view(e.what()).size() > 0);
    return e.code();
  }
  FAIL("expected mw::wire::DecodeError");
  return ErrorCode::Internal;
}

// One decoder under test: how to decode, a valid header for it, and how many
// leading fields it requires (0 for the map-shaped EventMeta).
struct DecoderCase {
  std::string name;
  std::function<void(const zmq::message_t&)> decode;
  std::string valid;          // a well-formed header
  std::size_t required = 0;   // fields a header must have (array decoders)
  bool is_array = true;       // false for EventMeta (a map)
  bool check_field_types = true;  // false for EventMeta: a lenient map read by key
  std::set<std::uint32_t> signed_fields;  // integer fields where a negative value is valid
};

std::vector<DecoderCase> all_decoders() {
  std::vector<DecoderCase> cases;
  auto add = [&](std::string name, auto decode, zmq::message_t valid, std::size_t required, bool is_array = true) {
    cases.push_back({std::move(name), [decode](const zmq::message_t& f) { (void)decode(f); }, bytes_of(valid),
                     required, is_array, is_array, {}});
  };
  add("HELLO", wire::decode_hello, wire::encode(wire::Hello{"worker", "w@host", 1, 64}), 3);
  add("WELCOME", wire::decode_welcome,
      wire::encode(wire::Welcome{"tcp://127.0.0.1:5556", 1000, "0.1.0", 1 << 20, 1024}), 4);
  add("READY", wire::decode_ready, wire::encode(wire::Ready{{"resize", "thumb"}, "store", 4, "host", 77}), 5);
  add("JOB", wire::decode_job, wire::encode(wire::JobHeader{9, "resize", 2, 3, "users/1"}), 4);
  add("DONE", wire::decode_done, wire::encode(wire::Done{9, std::string_view("next"), 1}), 1);
  add("DONE(nil next)", wire::decode_done, wire::encode(wire::Done{9, std::nullopt, 1}), 1);
  add("FAIL", wire::decode_fail, wire::encode(wire::Fail{9, "boom", false, 1}), 2);
  add("PROGRESS", wire::decode_progress, wire::encode(wire::JobProgress{9, 1}), 1);
  add("SUBMIT", wire::decode_submit,
      wire::encode(submit_header(5, "resize", true, 3, "o/1")), 2);
  cases.back().signed_fields = {6};  // priority
  add("ACCEPTED", wire::decode_accepted, wire::encode(wire::Accepted{5, 6}), 2);
  add("RESULT", wire::decode_result, wire::encode(wire::Result{6, mw::kOutcomeDead, "why", "resize", 3}), 4);
  add("RESULT(nil error)", wire::decode_result, wire::encode(wire::Result{6, mw::kOutcomeDone, "", "resize", 1}), 4);
  add("CALL", wire::decode_call, wire::encode(wire::Call{8, "users", "get", std::string_view("u1")}), 3);
  add("CALL(nil id)", wire::decode_call, wire::encode(wire::Call{8, "users", "find", std::nullopt}), 3);
  add("REPLY", wire::decode_reply, wire::encode(wire::Reply{8, 404, "no such user"}), 2);
  add("REPLY(ok)", wire::decode_reply, wire::encode(wire::Reply{8, 0, ""}), 2);
  add("STATUS", wire::decode_status, wire::encode(wire::StatusRequest{12}), 1);
  add("WAIT", wire::decode_wait, wire::encode(wire::WaitRequest{13, 99}), 2);
  add("CANCEL", wire::decode_cancel, wire::encode(wire::CancelJob{9}), 1);
  add("ERROR", wire::decode_error, wire::encode(wire::ErrorReply{ErrorCode::TooLarge, "big", 3}), 2);
  {
    wire::Stats s;
    s.request_id = 4;
    s.types.push_back({"resize", 1, 2, 3, 4, 5, 6, 7, 0.5});
    add("STATS", wire::decode_stats, wire::encode(s), 2);
  }
  add("EVENTMETA", wire::decode_event_meta, wire::encode(wire::EventMeta{1, 2, "resize", "err"}), 0, false);
  return cases;
}

msgpack::object_handle unpack(const std::string& bytes) { return msgpack::unpack(bytes.data(), bytes.size()); }

// Re-packs the array `valid` keeping only its first `keep` elements.
std::string first_fields(const std::string& valid, std::size_t keep) {
  auto handle = unpack(valid);
  const auto& array = handle.get().via.array;
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(keep));
  for (std::size_t i = 0; i < keep; ++i) packer.pack(array.ptr[i]);
  return std::string(buffer.data(), buffer.size());
}

// Re-packs the array `valid` with element `index` replaced by what `replace` packs.
std::string replace_field(const std::string& valid, std::size_t index,
                          const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& replace) {
  auto handle = unpack(valid);
  const auto& array = handle.get().via.array;
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(array.size);
  for (std::uint32_t i = 0; i < array.size; ++i) {
    if (i == index) replace(packer);
    else packer.pack(array.ptr[i]);
  }
  return std::string(buffer.data(), buffer.size());
}

// Appends one extra element (array) or key "zz_pad" (map): a string of
// `pad` bytes. Newer peers may append fields, so this alone stays valid.
std::string with_extra_field(const std::string& valid, bool is_array, std::size_t pad) {
  auto handle = unpack(valid);
  const auto& obj = handle.get();
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  const std::string padding(pad, 'p');
  if (is_array) {
    packer.pack_array(obj.via.array.size + 1);
    for (std::uint32_t i = 0; i < obj.via.array.size; ++i) packer.pack(obj.via.array.ptr[i]);
  } else {
    packer.pack_map(obj.via.map.size + 1);
    for (std::uint32_t i = 0; i < obj.via.map.size; ++i) {
      packer.pack(obj.via.map.ptr[i].key);
      packer.pack(obj.via.map.ptr[i].val);
    }
    packer.pack(std::string("zz_pad"));
  }
  packer.pack(padding);
  return std::string(buffer.data(), buffer.size());
}

// A header of exactly `total` bytes: `valid` plus one padding field.
std::string padded_to(const std::string& valid, bool is_array, std::size_t total) {
  const std::size_t overhead = with_extra_field(valid, is_array, 0).size();  // fixstr header: 1 byte
  // A str of length L costs 1 (L<32), 2 (L<256), 3 (L<65536) or 5 bytes of header.
  for (std::size_t header : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}}) {
    if (total < overhead - 1 + header) continue;
    const std::size_t len = total - (overhead - 1) - header;
    std::string out = with_extra_field(valid, is_array, len);
    if (out.size() == total) return out;
  }
  FAIL("could not pad header to the requested size");
  return {};
}

}  // namespace

// ---- round trips ------------------------------------------------------------

TEST_CASE("HELLO round trip") {
  const auto frame = wire::encode(wire::Hello{mw::kRoleClient, "cli@box", 7});
  const auto m = wire::decode_hello(frame);
  CHECK(m.role == mw::kRoleClient);
  CHECK(m.name == "cli@box");
  CHECK(m.version == 7);
}

TEST_CASE("WELCOME round trip") {
  const auto frame = wire::encode(wire::Welcome{"tcp://10.0.0.1:6000", 250, "9.8.7", 123456789012ULL});
  const auto m = wire::decode_welcome(frame);
  CHECK(m.pub_address == "tcp://10.0.0.1:6000");
  CHECK(m.heartbeat_ms == 250);
  CHECK(m.broker_version == "9.8.7");
  CHECK(m.max_message_bytes == 123456789012ULL);
  CHECK_FALSE(m.progress);
  CHECK(wire::decode_welcome(wire::encode(wire::Welcome{"tcp://x:1", 1000, "1", 1 << 20, 0, true})).progress);
  // An older broker's five-field WELCOME: it takes no PROGRESS.
  msgpack::sbuffer old;
  msgpack::packer<msgpack::sbuffer>(old).pack(
      std::make_tuple(std::string("tcp://x:1"), 1000, std::string("0.1.0"), 1 << 20, 1024));
  CHECK_FALSE(wire::decode_welcome(zmq::message_t(old.data(), old.size())).progress);
}

TEST_CASE("READY round trip") {
  SUBCASE("with a next type") {
    const auto frame = wire::encode(wire::Ready{{"a", "bb", "ccc"}, "next", mw::kMaxCredit, "host-1", 4242});
    const auto m = wire::decode_ready(frame);
    REQUIRE(m.types.size() == 3);
    CHECK(m.types[0] == "a");
    CHECK(m.types[1] == "bb");
    CHECK(m.types[2] == "ccc");
    CHECK(m.next == "next");
    CHECK(m.credit == mw::kMaxCredit);
    CHECK(m.host == "host-1");
    CHECK(m.pid == 4242);
    CHECK_FALSE(m.cancel);
  }
  SUBCASE("a worker that takes CANCEL says so in field 5; a READY of five fields does not") {
    wire::Ready r{{"a"}, "", 2, "h", 7};
    r.cancel = true;
    CHECK(wire::decode_ready(wire::encode(r)).cancel);
    CHECK_FALSE(wire::decode_ready(frame_of(first_fields(bytes_of(wire::encode(r)), 5))).cancel);
    CHECK_FALSE(wire::decode_ready(frame_of(replace_field(bytes_of(wire::encode(r)), 5,
                                                             [](auto& p) { p.pack_nil(); }))).cancel);
  }
  SUBCASE("no next type, one type of the longest allowed name") {
    const std::string longest(mw::kMaxTypeNameBytes, 't');
    const auto frame = wire::encode(wire::Ready{{longest}, "", 1, "", 0});
    const auto m = wire::decode_ready(frame);
    REQUIRE(m.types.size() == 1);
    CHECK(m.types[0] == longest);
    CHECK(m.next.empty());
    CHECK(m.credit == 1);
  }
  SUBCASE("the most types a worker may serve") {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < mw::kMaxTypesPerWorker; ++i) names.push_back("t" + std::to_string(i));
    wire::Ready r;
    for (const auto& n : names) r.types.push_back(n);
    const auto frame = wire::encode(r);
    const auto m = wire::decode_ready(frame);
    REQUIRE(m.types.size() == mw::kMaxTypesPerWorker);
    CHECK(m.types.back() == names.back());
  }
}

TEST_CASE("JOB round trip") {
  SUBCASE("with an entity and large ids") {
    const auto frame = wire::encode(wire::JobHeader{std::numeric_limits<std::uint64_t>::max(), "resize",
                                                    std::numeric_limits<std::uint32_t>::max(), 1ULL << 40, "users/42"});
    const auto m = wire::decode_job(frame);
    CHECK(m.job_id == std::numeric_limits<std::uint64_t>::max());
    CHECK(m.type == "resize");
    CHECK(m.attempt == std::numeric_limits<std::uint32_t>::max());
    CHECK(m.flow_id == 1ULL << 40);
    CHECK(m.entity == "users/42");
  }
  SUBCASE("without an entity") {
    const auto frame = wire::encode(wire::JobHeader{1, "t", 1, 1, ""});
    const auto m = wire::decode_job(frame);
    CHECK(m.job_id == 1);
    CHECK(m.entity.empty());
  }
}

TEST_CASE("DONE round trip keeps absent, empty and set next apart") {
  SUBCASE("absent: continue with the worker's static next") {
    const auto frame = wire::encode(wire::Done{17, std::nullopt});
    const auto m = wire::decode_done(frame);
    CHECK(m.job_id == 17);
    CHECK_FALSE(m.next.has_value());
  }
  SUBCASE("empty: the flow ends here") {
    const auto frame = wire::encode(wire::Done{18, std::string_view("")});
    const auto m = wire::decode_done(frame);
    CHECK(m.job_id == 18);
    REQUIRE(m.next.has_value());
    CHECK(m.next->empty());
  }
  SUBCASE("set") {
    const auto frame = wire::encode(wire::Done{19, std::string_view("thumbnail")});
    const auto m = wire::decode_done(frame);
    CHECK(m.job_id == 19);
    REQUIRE(m.next.has_value());
    CHECK(*m.next == "thumbnail");
  }
}

TEST_CASE("DONE, FAIL and PROGRESS quote the JOB's attempt when they are given one, and read as 0 without") {
  const auto done = wire::decode_done(wire::encode(wire::Done{19, std::nullopt, 3}));
  CHECK(done.attempt == 3);
  CHECK_FALSE(done.next.has_value());  // field 1 written as nil to reach field 2: still "not said"
  CHECK(wire::decode_done(wire::encode(wire::Done{19, std::string_view("x"), 4})).attempt == 4);
  CHECK(wire::decode_done(wire::encode(wire::Done{19, std::nullopt})).attempt == 0);
  const auto fail = wire::decode_fail(wire::encode(wire::Fail{21, "disk full", false, 2}));
  CHECK(fail.attempt == 2);
  CHECK_FALSE(fail.retryable);
  CHECK(wire::decode_fail(wire::encode(wire::Fail{21, "disk full", true})).attempt == 0);
  CHECK(wire::decode_progress(wire::encode(wire::JobProgress{7, 5})).attempt == 5);
  CHECK(wire::decode_progress(wire::encode(wire::JobProgress{7})).attempt == 0);
  // An older peer's answers hold no attempt: they are exactly as before.
  CHECK(wire::encode(wire::Done{19, std::nullopt}).size() == wire::encode(wire::Done{19, std::nullopt, 0}).size());
  // Not a number: 400, as any field of the wrong type.
  msgpack::sbuffer bad;
  msgpack::packer<msgpack::sbuffer> pk(bad);
  pk.pack_array(3).pack_uint64(19).pack_nil().pack(std::string("two"));
  CHECK(decode_error_code([&] { wire::decode_done(zmq::message_t(bad.data(), bad.size())); }) == ErrorCode::BadRequest);
}

TEST_CASE("FAIL round trip") {
  for (bool retryable : {true, false}) {
    const auto frame = wire::encode(wire::Fail{21, "disk full", retryable});
    const auto m = wire::decode_fail(frame);
    CHECK(m.job_id == 21);
    CHECK(m.error == "disk full");
    CHECK(m.retryable == retryable);
  }
}

TEST_CASE("SUBMIT round trip") {
  for (bool wait : {true, false}) {
    const auto frame = wire::encode(submit_header(99, "orders", wait, 8));
    const auto m = wire::decode_submit(frame);
    CHECK(m.request_id == 99);
    CHECK(m.type == "orders");
    CHECK(m.wait == wait);
    CHECK(m.max_attempts == 8);
    CHECK(m.entity.empty());
  }
  SUBCASE("with an entity") {
    const auto frame = wire::encode(submit_header(1, "t", false, 0, "orders/o-17"));
    CHECK(wire::decode_submit(frame).entity == "orders/o-17");
  }
  SUBCASE("an entity over 512 bytes is refused") {
    const std::string big(513, 'e');
    CHECK(decode_error_code([&] {
            (void)wire::decode_submit(wire::encode(submit_header(1, "t", false, 0, big)));
          }) == ErrorCode::BadRequest);
  }
  SUBCASE("delay, priority, key and lease") {
    auto h = submit_header(1, "t");
    h.delay_ms = 1500;
    h.priority = -7;
    h.key = "order-17";
    h.lease_ms = 60'000;
    const auto frame = wire::encode(h);
    const auto m = wire::decode_submit(frame);
    CHECK(m.delay_ms == 1500);
    CHECK(m.priority == -7);
    CHECK(m.key == "order-17");
    CHECK(m.lease_ms == 60'000);
    CHECK(m.entity.empty());
  }
  SUBCASE("options out of range are refused") {
    auto h = submit_header(1, "t");
    h.priority = 1001;
    CHECK(decode_error_code([&] { (void)wire::decode_submit(wire::encode(h)); }) == ErrorCode::BadRequest);
    h.priority = -1001;
    CHECK(decode_error_code([&] { (void)wire::decode_submit(wire::encode(h)); }) == ErrorCode::BadRequest);
    h.priority = 0;
    const std::string long_key(257, 'k');
    h.key = long_key;
    CHECK(decode_error_code([&] { (void)wire::decode_submit(wire::encode(h)); }) == ErrorCode::BadRequest);
    h.key = "$schedule:nightly";  // reserved for the broker's own runs
    CHECK(decode_error_code([&] { (void)wire::decode_submit(wire::encode(h)); }) == ErrorCode::BadRequest);
    h.key = {};
    h.delay_ms = mw::kMaxSubmitDelayMs + 1;
    CHECK(decode_error_code([&] { (void)wire::decode_submit(wire::encode(h)); }) == ErrorCode::BadRequest);
    h.delay_ms = 0;
    h.lease_ms = mw::kMaxSubmitDelayMs + 1;
    CHECK(decode_error_code([&] { (void)wire::decode_submit(wire::encode(h)); }) == ErrorCode::BadRequest);
  }
}

TEST_CASE("CALL round trip") {
  SUBCASE("with an id") {
    const auto frame = wire::encode(wire::Call{41, "users", "patch", std::string_view("u-9")});
    const auto m = wire::decode_call(frame);
    CHECK(m.request_id == 41);
    CHECK(m.endpoint == "users");
    CHECK(m.method == "patch");
    REQUIRE(m.id.has_value());
    CHECK(*m.id == "u-9");
  }
  SUBCASE("without an id") {
    const auto frame = wire::encode(wire::Call{42, "orders", "find", std::nullopt});
    const auto m = wire::decode_call(frame);
    CHECK(m.request_id == 42);
    CHECK_FALSE(m.id.has_value());
  }
}

TEST_CASE("REPLY round trip") {
  SUBCASE("success") {
    const auto frame = wire::encode(wire::Reply{43, 0, ""});
    const auto m = wire::decode_reply(frame);
    CHECK(m.request_id == 43);
    CHECK(m.code == 0);
    CHECK(m.message.empty());
  }
  SUBCASE("failure") {
    const auto frame = wire::encode(wire::Reply{44, static_cast<std::uint16_t>(ErrorCode::NotFound), "no user u-9"});
    const auto m = wire::decode_reply(frame);
    CHECK(m.request_id == 44);
    CHECK(m.code == static_cast<std::uint16_t>(ErrorCode::NotFound));
    CHECK(m.message == "no user u-9");
  }
}

TEST_CASE("ACCEPTED round trip") {
  const auto frame = wire::encode(wire::Accepted{5, 1ULL << 50});
  const auto m = wire::decode_accepted(frame);
  CHECK(m.request_id == 5);
  CHECK(m.flow_id == 1ULL << 50);
}

TEST_CASE("RESULT round trip") {
  SUBCASE("done") {
    const auto frame = wire::encode(wire::Result{31, mw::kOutcomeDone, "", "store", 1});
    const auto m = wire::decode_result(frame);
    CHECK(m.flow_id == 31);
    CHECK(m.outcome == mw::kOutcomeDone);
    CHECK(m.error.empty());
    CHECK(m.last_type == "store");
    CHECK(m.attempts == 1);
  }
  SUBCASE("dead") {
    const auto frame = wire::encode(wire::Result{32, mw::kOutcomeDead, "gave up", "resize", 5});
    const auto m = wire::decode_result(frame);
    CHECK(m.flow_id == 32);
    CHECK(m.outcome == mw::kOutcomeDead);
    CHECK(m.error == "gave up");
    CHECK(m.last_type == "resize");
    CHECK(m.attempts == 5);
  }
}

TEST_CASE("STATUS round trip") {
  const auto frame = wire::encode(wire::StatusRequest{1234});
  CHECK(wire::decode_status(frame).request_id == 1234);
}

TEST_CASE("ERROR round trip") {
  for (ErrorCode code : {ErrorCode::BadRequest, ErrorCode::NotRegistered, ErrorCode::UnknownCommand,
                         ErrorCode::TooLarge, ErrorCode::BadProtocol, ErrorCode::NotImplemented}) {
    const auto frame = wire::encode(wire::ErrorReply{code, "what went wrong", 77});
    const auto m = wire::decode_error(frame);
    CHECK(m.code == code);
    CHECK(m.message == "what went wrong");
    CHECK(m.request_id == 77);
  }
}

TEST_CASE("STATS rates are float 64 on the wire, also when whole") {
  wire::Stats s;
  s.submitted_per_second = 60.0;
  s.done_per_second = 0.0;
  s.types.push_back({"t", 1, 0, 0, 0, 0, 0, 0, 3.0});
  const std::string bytes = bytes_of(wire::encode(s));
  // key, then 0xcb and the 8 big-endian bytes of the double
  const auto value_after = [&](std::string_view key) {
    const std::string packed_key = std::string(1, static_cast<char>(0xa0 | key.size())) + std::string(key);
    const auto at = bytes.find(packed_key);
    REQUIRE(at != std::string::npos);
    return bytes.substr(at + packed_key.size(), 9);
  };
  CHECK(value_after("submitted_per_second") == std::string("\xcb\x40\x4e\x00\x00\x00\x00\x00\x00", 9));
  CHECK(value_after("done_per_second") == std::string("\xcb\x00\x00\x00\x00\x00\x00\x00\x00", 9));
  const auto m = wire::decode_stats(wire::encode(s));
  CHECK(m.submitted_per_second == 60.0);
  CHECK(m.types.at(0).done_per_second == 3.0);
}

TEST_CASE("STATS round trip keeps every field") {
  wire::Stats s;
  s.request_id = 3;
  s.broker_version = "0.1.0";
  s.uptime_ms = 123456;
  s.store = ":memory:";
  s.submitted = 100;
  s.done = 90;
  s.failed = 7;
  s.dead = 2;
  s.retried = 5;
  s.requeued = 4;
  s.waiting = 12;
  s.waiting_bytes = 3400;
  s.max_waiting = 10'000'000;
  s.max_waiting_bytes = std::uint64_t{4} << 30;
  s.refused = 6;
  s.cancelled = 8;
  s.submitted_per_second = 12.5;
  s.done_per_second = 11.25;
  s.types.push_back({"resize", 2, 10, 1500, 3, 80, 6, 1, 9.5, 4, 10, 60'000, 7, 5000, 12});
  s.types.push_back({"store", 1, 0, 0, 1, 10, 1, 1, 0.0});
  s.workers.push_back({"00a1b2", {"resize", "thumb"}, "store", "host-a", 4321, 4, 3, 70, 1});
  s.workers.push_back({"00c3d4", {"store"}, "", "host-b", 99, 1, 0, 10});

  const auto frame = wire::encode(s);
  const auto m = wire::decode_stats(frame);
  CHECK(m.request_id == 3);
  CHECK(m.broker_version == "0.1.0");
  CHECK(m.uptime_ms == 123456);
  CHECK(m.store == ":memory:");
  CHECK(m.submitted == 100);
  CHECK(m.done == 90);
  CHECK(m.failed == 7);
  CHECK(m.dead == 2);
  CHECK(m.retried == 5);
  CHECK(m.requeued == 4);
  CHECK(m.waiting == 12);
  CHECK(m.waiting_bytes == 3400);
  CHECK(m.max_waiting == 10'000'000);
  CHECK(m.max_waiting_bytes == std::uint64_t{4} << 30);
  CHECK(m.refused == 6);
  CHECK(m.cancelled == 8);
  CHECK(m.submitted_per_second == doctest::Approx(12.5));
  CHECK(m.done_per_second == doctest::Approx(11.25));
  REQUIRE(m.types.size() == 2);
  CHECK(m.types[0].type == "resize");
  CHECK(m.types[0].workers == 2);
  CHECK(m.types[0].queued == 10);
  CHECK(m.types[0].oldest_queued_ms == 1500);
  CHECK(m.types[0].in_flight == 3);
  CHECK(m.types[0].done == 80);
  CHECK(m.types[0].failed == 6);
  CHECK(m.types[0].dead == 1);
  CHECK(m.types[0].done_per_second == doctest::Approx(9.5));
  CHECK(m.types[0].delayed == 4);
  CHECK(m.types[0].rate_max == 10);
  CHECK(m.types[0].rate_period_ms == 60'000);
  CHECK(m.types[0].rate_held == 7);
  CHECK(m.types[0].max_waiting == 5000);
  CHECK(m.types[0].refused == 12);
  CHECK(m.types[1].rate_max == 0);
  CHECK(m.types[1].refused == 0);
  CHECK(m.types[1].rate_held == 0);
  CHECK(m.types[1].max_waiting == 0);
  CHECK(m.types[1].type == "store");
  CHECK(m.types[1].workers == 1);
  REQUIRE(m.workers.size() == 2);
  CHECK(m.workers[0].id == "00a1b2");
  CHECK(m.workers[0].types == std::vector<std::string>{"resize", "thumb"});
  CHECK(m.workers[0].next == "store");
  CHECK(m.workers[0].host == "host-a");
  CHECK(m.workers[0].pid == 4321);
  CHECK(m.workers[0].credit == 4);
  CHECK(m.workers[0].in_flight == 3);
  CHECK(m.workers[0].done == 70);
  CHECK(m.workers[0].expired == 1);
  CHECK(m.workers[1].id == "00c3d4");
  CHECK(m.workers[1].expired == 0);
  CHECK(m.workers[1].next.empty());
}

TEST_CASE("EVENTMETA round trip") {
  const auto frame = wire::encode(wire::EventMeta{5, 6, "resize,thumb", "worker lost", 1839675095941120});
  const auto m = wire::decode_event_meta(frame);
  CHECK(m.seq == 5);
  CHECK(m.flow_id == 6);
  CHECK(m.type == "resize,thumb");
  CHECK(m.error == "worker lost");
  CHECK(m.run == 1839675095941120);
  // A meta without "run" (an older broker) reads as 0.
  const auto old_meta = wire::decode_event_meta(frame_of(std::string("\x81\xa3seq\x01", 6)));  // {"seq": 1}
  CHECK(old_meta.seq == 1);
  CHECK(old_meta.run == 0);
}

TEST_CASE("headers with only the required fields decode with the documented defaults") {
  SUBCASE("DONE without next") {
    const auto frame = frame_of(first_fields(bytes_of(wire::encode(wire::Done{4, std::string_view("x")})), 1));
    const auto m = wire::decode_done(frame);
    CHECK(m.job_id == 4);
    CHECK_FALSE(m.next.has_value());
  }
  SUBCASE("FAIL without retryable is retryable") {
    const auto frame = frame_of(first_fields(bytes_of(wire::encode(wire::Fail{4, "e", false})), 2));
    CHECK(wire::decode_fail(frame).retryable);
  }
  SUBCASE("SUBMIT without wait and max attempts") {
    const auto full = wire::encode(submit_header(4, "t", true, 9, "e/1"));
    const auto frame = frame_of(first_fields(bytes_of(full), 2));
    const auto m = wire::decode_submit(frame);
    CHECK(m.type == "t");
    CHECK_FALSE(m.wait);
    CHECK(m.max_attempts == 0);
    CHECK(m.entity.empty());
  }
  SUBCASE("JOB without entity") {
    const auto frame = frame_of(first_fields(bytes_of(wire::encode(wire::JobHeader{1, "t", 2, 3, "e/1"})), 4));
    const auto m = wire::decode_job(frame);
    CHECK(m.attempt == 2);
    CHECK(m.entity.empty());
  }
  SUBCASE("RESULT without attempts") {
    const auto frame = frame_of(first_fields(bytes_of(wire::encode(wire::Result{1, "done", "", "t", 3})), 4));
    CHECK(wire::decode_result(frame).attempts == 0);
  }
  SUBCASE("ERROR without request id") {
    const auto frame = frame_of(first_fields(bytes_of(wire::encode(wire::ErrorReply{ErrorCode::Conflict, "m", 5})), 2));
    const auto m = wire::decode_error(frame);
    CHECK(m.code == ErrorCode::Conflict);
    CHECK(m.request_id == 0);
  }
}

TEST_CASE("fields appended by a newer peer are ignored") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    const auto frame = frame_of(with_extra_field(c.valid, c.is_array, 10));
    CHECK_NOTHROW(c.decode(frame));
  }
}

// ---- malformed input, every decoder -------------------------------------------

TEST_CASE("every decoder accepts its valid sample") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    CHECK_NOTHROW(c.decode(frame_of(c.valid)));
  }
}

TEST_CASE("every decoder rejects bytes that are not msgpack") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    for (std::string_view bad : {std::string_view(""), std::string_view("\xc1"), std::string_view("\xc1\xc1\xc1"),
                                 std::string_view("hello world")}) {
      CHECK(decode_error_code([&] { c.decode(frame_of(bad)); }) == ErrorCode::BadRequest);
    }
  }
}

TEST_CASE("every decoder rejects every truncation of a valid header") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    for (std::size_t n = 0; n < c.valid.size(); ++n) {
      CAPTURE(n);
      CHECK(decode_error_code([&] { c.decode(frame_of(std::string_view(c.valid).substr(0, n))); }) ==
            ErrorCode::BadRequest);
    }
  }
}

TEST_CASE("every decoder rejects trailing bytes") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    for (std::string tail : {std::string("\xc0"), std::string("\x01"), std::string(1, '\0'), c.valid}) {
      CHECK(decode_error_code([&] { c.decode(frame_of(c.valid + tail)); }) == ErrorCode::BadRequest);
    }
  }
}

TEST_CASE("every decoder rejects the wrong top-level type") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    std::vector<std::string> wrong = {"\xc0", "\x05", "\xa3" "abc", "\xc3",
                                     std::string("\xcb\x3f\xf0\0\0\0\0\0\0", 9)};
    if (c.is_array) wrong.push_back("\x81\xa1k\x01");  // a map
    else wrong.push_back("\x91\x01");                  // an array
    for (const auto& w : wrong) {
      CAPTURE(w);
      CHECK(decode_error_code([&] { c.decode(frame_of(w)); }) == ErrorCode::BadRequest);
    }
  }
}

TEST_CASE("every array decoder rejects too few fields") {
  for (const auto& c : all_decoders()) {
    if (!c.is_array) continue;
    CAPTURE(c.name);
    for (std::size_t keep = 0; keep < c.required; ++keep) {
      CAPTURE(keep);
      CHECK(decode_error_code([&] { c.decode(frame_of(first_fields(c.valid, keep))); }) == ErrorCode::BadRequest);
    }
    CHECK_NOTHROW(c.decode(frame_of(first_fields(c.valid, c.required))));
  }
}

TEST_CASE("every array decoder rejects a field of the wrong type") {
  for (const auto& c : all_decoders()) {
    if (!c.check_field_types) continue;
    CAPTURE(c.name);
    auto handle = unpack(c.valid);
    const auto& array = handle.get().via.array;
    for (std::uint32_t i = 0; i < array.size; ++i) {
      CAPTURE(i);
      const auto type = array.ptr[i].type;
      std::vector<std::function<void(msgpack::packer<msgpack::sbuffer>&)>> wrongs;
      if (type == msgpack::type::STR || type == msgpack::type::NIL) {
        wrongs.push_back([](auto& p) { p.pack(7); });
        wrongs.push_back([](auto& p) { p.pack_true(); });
      }
      if (type == msgpack::type::POSITIVE_INTEGER) {
        wrongs.push_back([](auto& p) { p.pack(std::string("12")); });
        if (!c.signed_fields.count(i)) wrongs.push_back([](auto& p) { p.pack(-1); });
        wrongs.push_back([](auto& p) { p.pack(1.5); });
        wrongs.push_back([](auto& p) { p.pack_true(); });
      }
      if (type == msgpack::type::BOOLEAN) {
        wrongs.push_back([](auto& p) { p.pack(1); });
        wrongs.push_back([](auto& p) { p.pack(std::string("true")); });
      }
      if (type == msgpack::type::ARRAY || type == msgpack::type::MAP) {
        wrongs.push_back([](auto& p) { p.pack(3); });
        wrongs.push_back([](auto& p) { p.pack(std::string("a")); });
      }
      REQUIRE_FALSE(wrongs.empty());
      for (const auto& w : wrongs)
        CHECK(decode_error_code([&] { c.decode(frame_of(replace_field(c.valid, i, w))); }) == ErrorCode::BadRequest);
    }
  }
}

TEST_CASE("every decoder rejects a header over kMaxHeaderBytes as TooLarge") {
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    // Well-formed apart from its size: without the limit it would decode.
    const std::string at_limit = padded_to(c.valid, c.is_array, mw::kMaxHeaderBytes);
    REQUIRE(at_limit.size() == mw::kMaxHeaderBytes);
    CHECK_NOTHROW(c.decode(frame_of(at_limit)));
    const std::string over = padded_to(c.valid, c.is_array, mw::kMaxHeaderBytes + 1);
    REQUIRE(over.size() == mw::kMaxHeaderBytes + 1);
    CHECK(decode_error_code([&] { c.decode(frame_of(over)); }) == ErrorCode::TooLarge);
  }
}

TEST_CASE("hostile length prefixes throw DecodeError quickly instead of allocating") {
  const std::vector<std::string> hostile = {
      std::string("\xdd\xff\xff\xff\xff", 5),          // array32 claiming 4G elements
      std::string("\xdf\xff\xff\xff\xff", 5),          // map32 claiming 4G pairs
      std::string("\xdb\xff\xff\xff\xff", 5),          // str32 claiming 4 GB
      std::string("\xc6\xff\xff\xff\xff", 5),          // bin32 claiming 4 GB
      std::string("\x95\xdd\xff\xff\xff\xff", 6),      // inside an array
      std::string("\x93\x01\xdd\x7f\xff\xff\xff", 7),  // 2G elements in a field
  };
  const auto start = std::chrono::steady_clock::now();
  for (const auto& c : all_decoders()) {
    CAPTURE(c.name);
    for (const auto& h : hostile) {
      CAPTURE(h);
      CHECK(decode_error_code([&] { c.decode(frame_of(h)); }) == ErrorCode::BadRequest);
    }
  }
  for (const auto& h : hostile) CHECK_THROWS_AS(wire::check_msgpack(h), wire::DecodeError);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < std::chrono::seconds(2));
}

TEST_CASE("type names must be 1..128 bytes") {
  const std::string longest(mw::kMaxTypeNameBytes, 'x');
  const std::string too_long(mw::kMaxTypeNameBytes + 1, 'x');

  SUBCASE("READY types") {
    CHECK_NOTHROW(wire::decode_ready(wire::encode(wire::Ready{{longest}, "", 1, "", 0})));
    CHECK(decode_error_code([&] { (void)wire::decode_ready(wire::encode(wire::Ready{{""}, "", 1, "", 0})); }) ==
          ErrorCode::BadRequest);
    CHECK(decode_error_code([&] { (void)wire::decode_ready(wire::encode(wire::Ready{{too_long}, "", 1, "", 0})); }) ==
          ErrorCode::BadRequest);
    CHECK(decode_error_code([&] { (void)wire::decode_ready(wire::encode(wire::Ready{{"ok", ""}, "", 1, "", 0})); }) ==
          ErrorCode::BadRequest);
  }
  SUBCASE("READY types list: 1..64 strings") {
    CHECK(decode_error_code([&] { (void)wire::decode_ready(wire::encode(wire::Ready{{}, "", 1, "", 0})); }) ==
          ErrorCode::BadRequest);
    std::vector<std::string> names;
    for (std::size_t i = 0; i <= mw::kMaxTypesPerWorker; ++i) names.push_back("t" + std::to_string(i));
    wire::Ready r;
    for (const auto& n : names) r.types.push_back(n);
    CHECK(decode_error_code([&] { (void)wire::decode_ready(wire::encode(r)); }) == ErrorCode::BadRequest);
    const std::string types_not_strings = replace_field(bytes_of(wire::encode(wire::Ready{{"a"}, "", 1, "", 0})), 0,
                                                        [](auto& p) { p.pack_array(1); p.pack(5); });
    CHECK(decode_error_code([&] { (void)wire::decode_ready(frame_of(types_not_strings)); }) == ErrorCode::BadRequest);
  }
  SUBCASE("READY next") {
    CHECK_NOTHROW(wire::decode_ready(wire::encode(wire::Ready{{"a"}, longest, 1, "", 0})));
    CHECK(decode_error_code([&] { (void)wire::decode_ready(wire::encode(wire::Ready{{"a"}, too_long, 1, "", 0})); }) ==
          ErrorCode::BadRequest);
  }
  SUBCASE("SUBMIT type") {
    CHECK_NOTHROW(wire::decode_submit(wire::encode(submit_header(1, longest))));
    CHECK(decode_error_code([&] {
            (void)wire::decode_submit(wire::encode(submit_header(1, "")));
          }) == ErrorCode::BadRequest);
    CHECK(decode_error_code([&] {
            (void)wire::decode_submit(wire::encode(submit_header(1, too_long)));
          }) == ErrorCode::BadRequest);
  }
  SUBCASE("DONE next") {
    CHECK_NOTHROW(wire::decode_done(wire::encode(wire::Done{1, std::string_view(longest)})));
    CHECK(decode_error_code([&] { (void)wire::decode_done(wire::encode(wire::Done{1, std::string_view(too_long)})); }) ==
          ErrorCode::BadRequest);
  }
}

TEST_CASE("a type is one word of UTF-8: no spaces, commas or control characters") {
  for (const std::string& ok : std::vector<std::string>{"sampleworker", "resize-image", "billing.invoice/v2", "\u0440\u0435\u0437\u0430\u0442\u044c",
                               std::string(mw::kMaxTypeNameBytes, 'x')}) {
    CAPTURE(ok);
    CHECK(mw::type_name_problem(ok).empty());
  }
  CHECK(mw::type_name_problem("") == "a type may not be empty");
  CHECK(mw::type_name_problem("a,b").starts_with("type 'a,b' holds a comma"));
  CHECK(mw::type_name_problem("a b").starts_with("type 'a b' holds a space"));
  CHECK(mw::type_name_problem("new\nline").starts_with("type 'new\\x0aline' holds a control character"));
  CHECK(mw::type_name_problem("del\x7f").starts_with("type 'del\\x7f' holds a control character"));
  // Beyond ASCII too: a NEL, a no-break space, a line separator, a bidi override, a zero-width space.
  CHECK(mw::type_name_problem("a\u0085b").starts_with("type 'a\\u{0085}b' holds a control character"));
  CHECK(mw::type_name_problem("a\u00a0b").starts_with("type 'a\\u{00a0}b' holds a space"));
  CHECK(mw::type_name_problem("a\u2028b").starts_with("type 'a\\u{2028}b' holds a space"));
  CHECK(mw::type_name_problem("a\u202eb").starts_with("type 'a\\u{202e}b' holds an invisible formatting character"));
  CHECK(mw::type_name_problem("a\u200bb").find("invisible") != std::string::npos);
  CHECK(mw::type_name_problem("a\U000E0041b").starts_with("type 'a\\u{0e0041}b' holds an invisible"));
  CHECK(mw::type_name_problem("caf\u00e9").empty());  // a letter beyond ASCII is fine
  for (const std::string& bad_utf8 : std::vector<std::string>{"\xff", "\xc0\xaf", "\xed\xa0\x80", "caf\xc3", "\xf4\x90\x80\x80"}) {
    CAPTURE(bad_utf8);
    CHECK(mw::type_name_problem(bad_utf8).find("is not valid UTF-8") != std::string::npos);
  }
  CHECK(mw::type_name_problem(std::string(200, 'y')).find("is 200 bytes long") != std::string::npos);
  CHECK(mw::type_name_problem(std::string(200, 'y')).size() < 160);  // the name is cut short

  // Every decoder of a type says so with 400.
  CHECK(decode_error_code([] { (void)wire::decode_submit(wire::encode(submit_header(1, "a,b"))); }) ==
        ErrorCode::BadRequest);
  CHECK(decode_error_code([] { (void)wire::decode_ready(wire::encode(wire::Ready{{"ok", "a b"}, "", 1, "", 0})); }) ==
        ErrorCode::BadRequest);
  CHECK(decode_error_code([] { (void)wire::decode_ready(wire::encode(wire::Ready{{"ok"}, "x\ty", 1, "", 0})); }) ==
        ErrorCode::BadRequest);
  CHECK(decode_error_code([] { (void)wire::decode_done(wire::encode(wire::Done{1, std::string_view("\xff")})); }) ==
        ErrorCode::BadRequest);
  CHECK_NOTHROW(wire::decode_done(wire::encode(wire::Done{1, std::string_view("")})));  // the flow ends there
}

TEST_CASE("a worker's --type lists: comma-separated, every item a type, none empty or twice") {
  using Types = std::vector<std::string>;
  CHECK(mw::split_types({"resize"}, "--type") == Types{"resize"});
  CHECK(mw::split_types({"resize,thumb", "crop"}, "--type") == Types{"resize", "thumb", "crop"});
  auto refusal = [](const Types& lists) {
    try {
      (void)mw::split_types(lists, "--type");
    } catch (const mw::UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refusal({"q,"}) == "--type 'q,': an empty type at the end (give types separated by single commas: resize,thumb)");
  CHECK(refusal({",q"}).starts_with("--type ',q': an empty type at the start"));
  CHECK(refusal({"a,,b"}).starts_with("--type 'a,,b': an empty type between two commas"));
  CHECK(refusal({""}).starts_with("--type '': no type given"));
  CHECK(refusal({}) == "--type: no type given");
  CHECK(refusal({"a", "b,a"}) == "--type: type 'a' is given twice");
  CHECK(refusal({"ok,a b"}).starts_with("--type: type 'a b' holds a space"));
  CHECK(mw::joined_types({"resize", "thumb"}) == "resize,thumb");
  CHECK(mw::joined_types({}).empty());
}

TEST_CASE("READY credit must be 0..10000") {
  auto ready_with_credit = [](std::uint64_t credit) {
    const std::string valid = bytes_of(wire::encode(wire::Ready{{"a"}, "", 1, "", 0}));
    return frame_of(replace_field(valid, 2, [credit](auto& p) { p.pack(credit); }));
  };
  CHECK(wire::decode_ready(ready_with_credit(1)).credit == 1);
  CHECK(wire::decode_ready(ready_with_credit(mw::kMaxCredit)).credit == mw::kMaxCredit);
  CHECK(wire::decode_ready(ready_with_credit(0)).credit == 0);  // registered, busy with jobs of an earlier connection
  CHECK(decode_error_code([&] { (void)wire::decode_ready(ready_with_credit(mw::kMaxCredit + 1)); }) ==
        ErrorCode::BadRequest);
  CHECK(decode_error_code([&] { (void)wire::decode_ready(ready_with_credit(1ULL << 32)); }) == ErrorCode::BadRequest);
}

TEST_CASE("32-bit fields reject values that do not fit") {
  const std::string hello = bytes_of(wire::encode(wire::Hello{"worker", "n", 1}));
  CHECK(decode_error_code([&] {
          (void)wire::decode_hello(frame_of(replace_field(hello, 2, [](auto& p) { p.pack(std::uint64_t{1} << 32); })));
        }) == ErrorCode::BadRequest);
  const std::string job = bytes_of(wire::encode(wire::JobHeader{1, "t", 1, 1, ""}));
  CHECK(decode_error_code([&] {
          (void)wire::decode_job(frame_of(replace_field(job, 2, [](auto& p) { p.pack(std::uint64_t{1} << 33); })));
        }) == ErrorCode::BadRequest);
}

TEST_CASE("peek_request_id reads the first field and never throws") {
  CHECK(wire::peek_request_id(wire::encode(submit_header(77, "t"))) == 77);
  CHECK(wire::peek_request_id(frame_of(first_fields(bytes_of(wire::encode(submit_header(78, "t"))), 1))) == 78);
  CHECK(wire::peek_request_id(wire::encode(wire::StatusRequest{79})) == 79);
  for (const std::string& bad : {std::string(), std::string("\xc1"), std::string("\x90"), std::string("\x91\xa1x"),
                                 std::string("\x91\xff"), std::string("\xdd\xff\xff\xff\xff", 5),
                                 std::string("\x81\x01\x02"), std::string(100000, '\x91')}) {
    CAPTURE(bad.size());
    CHECK(wire::peek_request_id(frame_of(bad)) == 0);
  }
  // A header broken after its first field still names its request.
  CHECK(wire::peek_request_id(frame_of(std::string("\x93\x0b", 2))) == 11);                 // truncated
  CHECK(wire::peek_request_id(frame_of(std::string("\x91\x0c\xc0", 3))) == 12);             // trailing bytes
  CHECK(wire::peek_request_id(frame_of("\x92\x1b" + std::string(20, '\x91') + "\xc0")) == 27);  // too deep
  CHECK(wire::peek_request_id(frame_of(std::string("\x92\xcd\x01\x00\xc0", 5))) == 256);    // uint16
  CHECK(wire::peek_request_id(frame_of(std::string("\x91\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 10))) ==
        std::uint64_t{1} << 32);  // uint64
  CHECK(wire::peek_request_id(frame_of(std::string("\x91\xce\x00\x01", 4))) == 0);  // uint32 cut short
}

// ---- check_msgpack ---------------------------------------------------------------

TEST_CASE("check_msgpack accepts one value and rejects the rest") {
  CHECK_NOTHROW(wire::check_msgpack(std::string_view("\xc0")));
  CHECK_NOTHROW(wire::check_msgpack(std::string_view("\x92\x01\xa1x")));
  CHECK_THROWS_AS(wire::check_msgpack(std::string_view("")), wire::DecodeError);
  CHECK_THROWS_AS(wire::check_msgpack(std::string_view("\xc0\xc0")), wire::DecodeError);
  CHECK_THROWS_AS(wire::check_msgpack(std::string_view("\x92\x01")), wire::DecodeError);
  CHECK_THROWS_AS(wire::check_msgpack(std::string_view("\xc1")), wire::DecodeError);
}

TEST_CASE("check_msgpack rejects deep nesting without crashing") {
  SUBCASE("100000 nested arrays") {
    std::string deep(100000, '\x91');
    deep.push_back('\xc0');
    CHECK_THROWS_AS(wire::check_msgpack(deep), wire::DecodeError);
  }
  SUBCASE("100000 nested maps") {
    std::string deep;
    for (int i = 0; i < 100000; ++i) deep += "\x81\xc0";
    deep.push_back('\xc0');
    CHECK_THROWS_AS(wire::check_msgpack(deep), wire::DecodeError);
  }
  SUBCASE("the depth limit is honoured, shallow nesting passes") {
    std::string shallow(10, '\x91');
    shallow.push_back('\xc0');
    CHECK_NOTHROW(wire::check_msgpack(shallow));
    CHECK_THROWS_AS(wire::check_msgpack(shallow, 5), wire::DecodeError);
  }
  SUBCASE("a deeply nested header is rejected by the decoders") {
    std::string deep(60000, '\x91');
    deep.push_back('\xc0');
    CHECK(decode_error_code([&] { (void)wire::decode_ready(frame_of(deep)); }) == ErrorCode::BadRequest);
    CHECK(decode_error_code([&] { (void)wire::decode_event_meta(frame_of(deep)); }) == ErrorCode::BadRequest);
  }
}

// ---- the tag frame -------------------------------------------------------------

TEST_CASE("encode_tag and decode_tag round trip every command") {
  for (std::uint8_t b = 0x01; b <= 0x13; ++b) {
    const auto command = static_cast<Command>(b);
    const auto tag = wire::encode_tag(command);
    REQUIRE(tag.size() == mw::kTagFrameBytes);
    CHECK(bytes_of(tag) == std::string("MW1") + static_cast<char>(b));
    CHECK(wire::decode_tag(tag) == command);
    CHECK(mw::command_name(command) != "UNKNOWN");
  }
}

TEST_CASE("decode_tag rejects malformed tags") {
  SUBCASE("wrong length") {
    for (std::string_view bad : {std::string_view(""), std::string_view("MW1"), std::string_view("MW1\x01\x01"),
                                 std::string_view("M")})
      CHECK(decode_error_code([&] { (void)wire::decode_tag(frame_of(bad)); }) == ErrorCode::BadProtocol);
  }
  SUBCASE("wrong magic") {
    for (std::string_view bad : {std::string_view("MW2\x01"), std::string_view("mw1\x01"),
                                 std::string_view("XW1\x03"), std::string_view("\0\0\0\x01", 4)})
      CHECK(decode_error_code([&] { (void)wire::decode_tag(frame_of(bad)); }) == ErrorCode::BadProtocol);
  }
  SUBCASE("unknown command byte") {
    for (unsigned b : {0x00u, 0x15u, 0x7fu, 0x80u, 0xffu}) {
      CAPTURE(b);
      const std::string tag = std::string("MW1") + static_cast<char>(b);
      CHECK(decode_error_code([&] { (void)wire::decode_tag(frame_of(tag)); }) == ErrorCode::UnknownCommand);
      CHECK_FALSE(mw::is_known_command(static_cast<std::uint8_t>(b)));
    }
  }
}

TEST_CASE("frame_count per command") {
  CHECK(wire::frame_count(Command::Hello) == 2);
  CHECK(wire::frame_count(Command::Welcome) == 2);
  CHECK(wire::frame_count(Command::Ready) == 2);
  CHECK(wire::frame_count(Command::Job) == 3);
  CHECK(wire::frame_count(Command::Done) == 3);
  CHECK(wire::frame_count(Command::Fail) == 2);
  CHECK(wire::frame_count(Command::Submit) == 3);
  CHECK(wire::frame_count(Command::Accepted) == 2);
  CHECK(wire::frame_count(Command::Result) == 3);
  CHECK(wire::frame_count(Command::Call) == 3);
  CHECK(wire::frame_count(Command::Reply) == 3);
  CHECK(wire::frame_count(Command::Status) == 2);
  CHECK(wire::frame_count(Command::Stats) == 2);
  CHECK(wire::frame_count(Command::Heartbeat) == 1);
  CHECK(wire::frame_count(Command::Disconnect) == 1);
  CHECK(wire::frame_count(Command::Error) == 2);
}

// ---- BATCH -----------------------------------------------------------------------

namespace {

// The frames a Batch hands out, in order, as (bytes, more) pairs.
std::vector<std::pair<std::string, bool>> drained(wire::Batch& batch) {
  std::vector<std::pair<std::string, bool>> frames;
  batch.drain([&](zmq::message_t& frame, bool more) { frames.emplace_back(bytes_of(frame), more); });
  return frames;
}

std::string index_of(const std::vector<std::pair<unsigned, std::string>>& entries) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(2 * entries.size()));
  for (const auto& [command, header] : entries) {
    packer.pack(command);
    packer.pack_bin(static_cast<std::uint32_t>(header.size()));
    packer.pack_bin_body(header.data(), static_cast<std::uint32_t>(header.size()));
  }
  return std::string(buffer.data(), buffer.size());
}

}  // namespace

TEST_CASE("WAIT round trips, and refuses flow id 0") {
  const auto frame = wire::encode(wire::WaitRequest{41, 1839694082699264});
  const auto w = wire::decode_wait(frame);
  CHECK(w.request_id == 41);
  CHECK(w.flow_id == 1839694082699264);
  CHECK(wire::frame_count(Command::Wait) == 2);
  CHECK(mw::command_name(Command::Wait) == "WAIT");
  CHECK(wire::peek_request_id(frame) == 41);
  CHECK(decode_error_code([] { (void)wire::decode_wait(wire::encode(wire::WaitRequest{41, 0})); }) ==
        ErrorCode::BadRequest);
}

TEST_CASE("parse_flow_id reads a flow id as mw submit prints it, and names anything else") {
  CHECK(mw::parse_flow_id("1") == 1);
  CHECK(mw::parse_flow_id("1839694082699264") == 1839694082699264);
  CHECK(mw::parse_flow_id("18446744073709551615") == UINT64_MAX);
  for (std::string_view bad : {"", "0", "-1", "+1", " 1", "1 ", "12x", "0x10", "18446744073709551616"}) {
    CAPTURE(bad);
    try {
      (void)mw::parse_flow_id(bad);
      FAIL("no error");
    } catch (const mw::Error& e) {
      CHECK(e.code() == ErrorCode::BadRequest);
      CHECK(std::string(e.what()) == "'" + std::string(bad) + "' is not a flow id: a flow id is a positive integer, as mw submit prints it");
    }
  }
}

TEST_CASE("CANCEL round trips and is a known command") {
  const auto m = wire::decode_cancel(wire::encode(wire::CancelJob{1839694082699265}));
  CHECK(m.job_id == 1839694082699265);
  CHECK(wire::frame_count(Command::Cancel) == 2);
  CHECK(mw::command_name(Command::Cancel) == "CANCEL");
  CHECK(mw::is_known_command(0x13));
}

TEST_CASE("PROGRESS round trips, carries its value as a payload, and may be batched") {
  const auto m = wire::decode_progress(wire::encode(wire::JobProgress{1839694082699265}));
  CHECK(m.job_id == 1839694082699265);
  CHECK(wire::frame_count(Command::Progress) == 3);
  CHECK(mw::command_name(Command::Progress) == "PROGRESS");
  CHECK(mw::is_known_command(0x14));
  CHECK_FALSE(mw::is_known_command(0x15));
  CHECK(decode_error_code([] { (void)wire::decode_progress(frame_of("\x90")); }) == ErrorCode::BadRequest);
  CHECK(decode_error_code([] { (void)wire::decode_progress(frame_of("\x91\xa1x")); }) == ErrorCode::BadRequest);

  wire::Batch batch;
  zmq::message_t header = wire::encode(wire::JobProgress{7});
  zmq::message_t value = frame_of(std::string_view("\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00", 9));  // 0.5
  batch.add(Command::Progress, header, &value);
  zmq::message_t done_header = wire::encode(wire::Done{7, std::nullopt});
  zmq::message_t result = frame_of("\xc0");
  batch.add(Command::Done, done_header, &result);
  const auto frames = drained(batch);
  REQUIRE(frames.size() == 4);  // tag, index, two payloads
  std::vector<wire::BatchItem> items;
  const zmq::message_t index = frame_of(frames[1].first);
  wire::decode_batch(index, 2, items);
  REQUIRE(items.size() == 2);
  CHECK(items[0].command == Command::Progress);
  CHECK(items[1].command == Command::Done);
}

TEST_CASE("frame_count of BATCH is 0: its index gives the count") {
  CHECK(wire::frame_count(Command::Batch) == 0);
  CHECK(mw::command_name(Command::Batch) == "BATCH");
}

TEST_CASE("a Batch of several messages is one BATCH whose index decodes to them, in order") {
  wire::Batch batch;
  auto accepted = wire::encode(wire::Accepted{5, 6});
  auto result = wire::encode(wire::Result{6, mw::kOutcomeDone, "", "resize", 1});
  zmq::message_t result_payload = frame_of("\xa2ok");
  auto job = wire::encode(wire::JobHeader{9, "resize", 1, 6, ""});
  zmq::message_t job_payload = frame_of("\x07");
  const std::string accepted_bytes = bytes_of(accepted), result_bytes = bytes_of(result), job_bytes = bytes_of(job);
  batch.add(Command::Accepted, accepted, nullptr);
  batch.add(Command::Result, result, &result_payload);
  batch.add(Command::Job, job, &job_payload);
  CHECK(batch.size() == 3);
  CHECK(batch.command(1) == Command::Result);

  const auto frames = drained(batch);
  CHECK(batch.empty());
  REQUIRE(frames.size() == 4);  // tag, index, two payloads (ACCEPTED has none)
  CHECK(frames[0].first == std::string("MW1\x11"));
  CHECK(frames[0].second);
  CHECK(frames[1].second);
  CHECK(frames[2] == std::pair<std::string, bool>("\xa2ok", true));
  CHECK(frames[3] == std::pair<std::string, bool>("\x07", false));

  std::vector<wire::BatchItem> items;
  const auto index = frame_of(frames[1].first);
  wire::decode_batch_index(index, items);
  REQUIRE(items.size() == 3);
  CHECK(wire::batch_payload_count(items) == 2);
  CHECK(items[0].command == Command::Accepted);
  CHECK(items[0].header == accepted_bytes);
  CHECK(items[1].command == Command::Result);
  CHECK(items[1].header == result_bytes);
  CHECK(items[2].command == Command::Job);
  CHECK(items[2].header == job_bytes);
  // The headers decode as the frames they were.
  const auto header = zmq::message_t(const_cast<char*>(items[2].header.data()), items[2].header.size(), nullptr);
  CHECK(wire::decode_job(header).job_id == 9);
}

TEST_CASE("encode_view gives encode's bytes, and a Batch takes headers as bytes as it takes frames") {
  // A type name long enough that the JOB and RESULT headers are over the
  // 33 bytes ZeroMQ keeps in a frame itself: what encode_view is for.
  const std::string type = "images.thumbnail.resize-large";
  const wire::JobHeader job{1839694082699265, type, 2, 1839694082699000, "photos/17"};
  const wire::Result result{1839694082699000, mw::kOutcomeDone, "", type, 1};
  const std::string job_bytes(wire::encode_view(job));
  const std::string result_bytes(wire::encode_view(result));
  CHECK(job_bytes == bytes_of(wire::encode(job)));
  CHECK(result_bytes == bytes_of(wire::encode(result)));
  CHECK(job_bytes.size() > 33);
  const auto job_frame = frame_of(job_bytes);
  const auto job_back = wire::decode_job(job_frame);  // views into job_frame
  CHECK(job_back.type == type);
  CHECK(job_back.entity == "photos/17");
  CHECK(wire::decode_result(frame_of(result_bytes)).last_type == type);

  // Mixed in one batch, in order: a frame, bytes, a frame.
  wire::Batch by_bytes;
  auto accepted = wire::encode(wire::Accepted{5, 1839694082699000});
  const std::string accepted_bytes = bytes_of(accepted);
  zmq::message_t job_payload = frame_of("\x07");
  zmq::message_t result_payload = frame_of("\xa2ok");
  auto result_frame = wire::encode(result);
  by_bytes.add(Command::Accepted, accepted, nullptr);
  CHECK(accepted.size() == 0);  // moved from, as documented
  by_bytes.add(Command::Job, wire::encode_view(job), &job_payload);
  by_bytes.add(Command::Result, result_frame, &result_payload);
  CHECK(by_bytes.header(0) == accepted_bytes);
  CHECK(by_bytes.header(1) == job_bytes);
  CHECK(by_bytes.header(2) == result_bytes);
  CHECK(by_bytes.bytes() == accepted_bytes.size() + job_bytes.size() + result_bytes.size() + 1 + 3);
  const auto frames = drained(by_bytes);
  REQUIRE(frames.size() == 4);  // tag, index, two payloads
  std::vector<wire::BatchItem> items;
  const auto index = frame_of(frames[1].first);
  wire::decode_batch(index, 2, items);
  REQUIRE(items.size() == 3);
  CHECK(items[0].header == accepted_bytes);
  CHECK(items[1].header == job_bytes);
  CHECK(items[2].header == result_bytes);

  // A batch of one sends the bytes as the header frame.
  wire::Batch one;
  zmq::message_t payload = frame_of("\xc3");
  one.add(Command::Job, wire::encode_view(job), &payload);
  const auto single = drained(one);
  REQUIRE(single.size() == 3);
  CHECK(single[1] == std::pair<std::string, bool>(job_bytes, true));
  CHECK(single[2] == std::pair<std::string, bool>("\xc3", false));
}

TEST_CASE("a Batch of one message is sent as that message, without BATCH") {
  wire::Batch batch;
  auto done = wire::encode(wire::Done{9, std::nullopt});
  const std::string done_bytes = bytes_of(done);
  zmq::message_t payload = frame_of("\xc3");
  batch.add(Command::Done, done, &payload);
  const auto frames = drained(batch);
  REQUIRE(frames.size() == 3);
  CHECK(frames[0] == std::pair<std::string, bool>(std::string("MW1\x05"), true));
  CHECK(frames[1] == std::pair<std::string, bool>(done_bytes, true));
  CHECK(frames[2] == std::pair<std::string, bool>("\xc3", false));

  auto fail = wire::encode(wire::Fail{9, "boom", true});
  batch.add(Command::Fail, fail, nullptr);
  const auto fail_frames = drained(batch);
  REQUIRE(fail_frames.size() == 2);
  CHECK_FALSE(fail_frames[1].second);
}

TEST_CASE("a payload-carrying message queued without a payload gets nil, as a direct send does") {
  wire::Batch batch;
  auto done = wire::encode(wire::Done{1, std::nullopt});
  auto accepted = wire::encode(wire::Accepted{1, 2});
  batch.add(Command::Done, done, nullptr);
  batch.add(Command::Accepted, accepted, nullptr);
  const auto frames = drained(batch);
  REQUIRE(frames.size() == 3);
  CHECK(frames[2] == std::pair<std::string, bool>("\xc0", false));
}

TEST_CASE("decode_batch_index takes every msgpack form of the array, command and bin") {
  const std::string accepted = bytes_of(wire::encode(wire::Accepted{5, 6}));
  std::vector<wire::BatchItem> items;
  // array16 count, uint8 command, bin16 length.
  std::string index = std::string("\xdc\x00\x02\xcc\x08\xc5\x00", 7) + static_cast<char>(accepted.size()) + accepted;
  const auto frame = frame_of(index);  // the items point into it
  wire::decode_batch_index(frame, items);
  REQUIRE(items.size() == 1);
  CHECK(items[0].command == Command::Accepted);
  CHECK(items[0].header == accepted);
}

TEST_CASE("decode_batch_index rejects malformed indexes with one clear error") {
  const std::string accepted = bytes_of(wire::encode(wire::Accepted{5, 6}));
  std::vector<wire::BatchItem> items;
  auto code_of = [&](const std::string& index) {
    return decode_error_code([&] { wire::decode_batch_index(frame_of(index), items); });
  };
  CHECK(code_of("") == ErrorCode::BadRequest);
  CHECK(code_of("\x90") == ErrorCode::BadRequest);                  // no entries
  CHECK(code_of("\x81\xa1k\x01") == ErrorCode::BadRequest);         // a map
  CHECK(code_of("\x91\x08") == ErrorCode::BadRequest);              // odd count
  CHECK(code_of(index_of({{0x0e, ""}})) == ErrorCode::BadRequest);  // HEARTBEAT has no header
  CHECK(code_of(index_of({{0x0f, ""}})) == ErrorCode::BadRequest);  // DISCONNECT
  CHECK(code_of(index_of({{0x11, accepted}})) == ErrorCode::BadRequest);  // BATCH in a BATCH
  CHECK(code_of(index_of({{0x42, accepted}})) == ErrorCode::BadRequest);  // unknown command
  CHECK(code_of(std::string("\x92\x08\xa2", 3) + "ab") == ErrorCode::BadRequest);  // header as str
  CHECK(code_of(std::string("\x92\xd0\x08", 3) + "\xc4\x01\x90") == ErrorCode::BadRequest);  // int8 command
  // Truncated anywhere.
  const std::string good = index_of({{0x08, accepted}, {0x08, accepted}});
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    CHECK(code_of(good.substr(0, n)) == ErrorCode::BadRequest);
  }
  CHECK(code_of(good + "\xc0") == ErrorCode::BadRequest);  // trailing bytes
  // A count claiming 4G entries costs nothing.
  CHECK(code_of(std::string("\xdd\xff\xff\xff\xfe", 5)) == ErrorCode::BadRequest);
  // Too many entries, and a header over the limit.
  std::vector<std::pair<unsigned, std::string>> many(mw::kMaxBatchEntries + 1, {0x08, accepted});
  CHECK(code_of(index_of(many)) == ErrorCode::BadRequest);
  CHECK(code_of(index_of({{0x08, std::string(mw::kMaxHeaderBytes + 1, 'x')}})) == ErrorCode::TooLarge);
  // The largest batch is fine.
  many.pop_back();
  CHECK_NOTHROW(wire::decode_batch_index(frame_of(index_of(many)), items));
  CHECK(items.size() == mw::kMaxBatchEntries);
}

TEST_CASE("a Batch told to inline payloads carries the small ones in its index, the large ones in frames") {
  wire::Batch batch;
  batch.inline_payloads_up_to(mw::kMaxInlinePayloadBytes);
  auto submit = wire::encode(wire::Submit{1, "resize"});
  zmq::message_t small = frame_of("\xa5hello");
  auto done = wire::encode(wire::Done{9, std::nullopt});
  const std::string large_bytes = "\xc5\x04\x01" + std::string(mw::kMaxInlinePayloadBytes + 1 - 3, 'x');
  zmq::message_t large = frame_of(large_bytes);
  auto fail = wire::encode(wire::Fail{10, "boom", true});
  auto result = wire::encode(wire::Result{6, mw::kOutcomeDone, "", "resize", 1});
  const std::string submit_bytes = bytes_of(submit), fail_bytes = bytes_of(fail);
  batch.add(Command::Submit, submit, &small);
  batch.add(Command::Done, done, &large);
  batch.add(Command::Fail, fail, nullptr);
  batch.add(Command::Result, result, nullptr);  // no payload given: nil, inline too

  const auto frames = drained(batch);
  REQUIRE(frames.size() == 3);  // tag, index, the one payload too large to go inline
  CHECK(frames[1].second);
  CHECK(frames[2] == std::pair<std::string, bool>(large_bytes, false));

  std::vector<wire::BatchItem> items;
  const auto index = frame_of(frames[1].first);
  wire::decode_batch(index, 1, items);
  REQUIRE(items.size() == 4);
  CHECK(wire::batch_payload_count(items) == 1);
  CHECK(items[0].command == Command::Submit);
  CHECK(items[0].header == submit_bytes);
  CHECK(items[0].inline_payload);
  CHECK(items[0].payload == "\xa5hello");
  CHECK(items[1].command == Command::Done);
  CHECK_FALSE(items[1].inline_payload);
  CHECK(items[2].command == Command::Fail);
  CHECK(items[2].header == fail_bytes);
  CHECK_FALSE(items[2].inline_payload);
  CHECK(items[3].command == Command::Result);
  CHECK(items[3].inline_payload);
  CHECK(items[3].payload == "\xc0");
  // Counted against the frames that came: the index needs one.
  CHECK_THROWS_AS(wire::decode_batch(index, 2, items), wire::DecodeError);

  // A batch of one is still the message itself, its payload a frame.
  auto job = wire::encode(wire::JobHeader{9, "resize", 1, 6, ""});
  zmq::message_t payload = frame_of("\x07");
  batch.add(Command::Job, job, &payload);
  const auto single = drained(batch);
  REQUIRE(single.size() == 3);
  CHECK(single[2] == std::pair<std::string, bool>("\x07", false));
}

TEST_CASE("an index with inline payloads reads in every msgpack form, and rejects what is malformed") {
  const std::string submit = bytes_of(wire::encode(wire::Submit{1, "resize"}));
  const std::string accepted = bytes_of(wire::encode(wire::Accepted{5, 6}));
  const auto head = [](std::size_t n) { return std::string("\xc4") + static_cast<char>(n); };
  const std::string entry = "\xcc\x87" + head(submit.size()) + submit + head(1) + "\x07";  // SUBMIT | 0x80
  std::vector<wire::BatchItem> items;
  // array16, and the payload as bin16.
  const auto frame = frame_of(std::string("\xdc\x00\x03\xcc\x87", 5) + head(submit.size()) + submit +
                              std::string("\xc5\x00\x02", 3) + "\x92\x01");
  wire::decode_batch(frame, 0, items);
  REQUIRE(items.size() == 1);
  CHECK(items[0].inline_payload);
  CHECK(items[0].payload == "\x92\x01");

  auto code_of = [&](const std::string& index) {
    return decode_error_code([&] { wire::decode_batch_index(frame_of(index), items); });
  };
  CHECK_NOTHROW(wire::decode_batch_index(frame_of("\x93" + entry), items));
  // The flag on a command that has no payload.
  CHECK(code_of("\x93\xcc\x88" + head(accepted.size()) + accepted + head(1) + "\x07") == ErrorCode::BadRequest);
  // The payload as a str, not a bin; missing (the count ends first); cut short.
  CHECK(code_of("\x93\xcc\x87" + head(submit.size()) + submit + "\xa1\x07") == ErrorCode::BadRequest);
  CHECK(code_of("\x92" + entry.substr(0, entry.size() - 3)) == ErrorCode::BadRequest);
  for (std::size_t n = 0; n < entry.size(); ++n) {
    CAPTURE(n);
    CHECK(code_of("\x93" + entry.substr(0, n)) == ErrorCode::BadRequest);
  }
  // One item more than the entries use.
  CHECK_THROWS_WITH(wire::decode_batch_index(frame_of("\x93\x08" + head(accepted.size()) + accepted + "\xc0"), items),
                    doctest::Contains("an item is left over after entry 0"));
  // An inline entry next to plain ones: 3 + 2 items.
  CHECK_NOTHROW(wire::decode_batch_index(frame_of("\x95" + entry + "\x08" + head(accepted.size()) + accepted), items));
  CHECK(items.size() == 2);
  // 1025 entries are too many, however they are counted.
  std::string many = "\xdd" + std::string("\x00\x00\x0c\x03", 4);  // 3075 items
  for (std::uint32_t i = 0; i <= mw::kMaxBatchEntries; ++i) many += entry;
  CHECK(code_of(many) == ErrorCode::BadRequest);
}

TEST_CASE("the BATCH of PROTOCOL.md §15.2 decodes as it says: two DONEs, the first with its payload inline") {
  const auto index = frame_of(std::string("\x95\xcc\x85\xc4\x04\x93\x07\xc0\x01\xc4\x04\x81\xa1\x6e\x2a"
                                          "\x05\xc4\x04\x93\x08\xc0\x01",
                                          22));
  std::vector<wire::BatchItem> items;
  wire::decode_batch(index, 1, items);  // one payload frame follows: "ok"
  REQUIRE(items.size() == 2);
  CHECK(items[0].command == Command::Done);
  CHECK(items[0].inline_payload);
  CHECK(items[0].payload == "\x81\xa1n*");
  const zmq::message_t first(const_cast<char*>(items[0].header.data()), items[0].header.size(), nullptr);
  CHECK(wire::decode_done(first).job_id == 7);
  CHECK(wire::decode_done(first).attempt == 1u);
  CHECK(items[1].command == Command::Done);
  CHECK_FALSE(items[1].inline_payload);
  const zmq::message_t second(const_cast<char*>(items[1].header.data()), items[1].header.size(), nullptr);
  CHECK(wire::decode_done(second).job_id == 8);
}

TEST_CASE("HELLO and WELCOME say whether a side takes inline payloads; absent means no") {
  wire::Hello hello{"worker", "w", 1, 64};
  CHECK_FALSE(wire::decode_hello(wire::encode(hello)).inline_payloads);
  hello.inline_payloads = true;
  CHECK(wire::decode_hello(wire::encode(hello)).inline_payloads);
  wire::Welcome welcome{"tcp://x:1", 1000, "1", 1 << 20, 1024, true};
  CHECK_FALSE(wire::decode_welcome(wire::encode(welcome)).inline_payloads);
  welcome.inline_payloads = true;
  const auto decoded = wire::decode_welcome(wire::encode(welcome));
  CHECK(decoded.inline_payloads);
  CHECK(decoded.progress);
  // An older broker's six-field WELCOME.
  msgpack::sbuffer old;
  msgpack::packer<msgpack::sbuffer>(old).pack(
      std::make_tuple(std::string("tcp://x:1"), 1000, std::string("1"), 1 << 20, 1024, true));
  CHECK_FALSE(wire::decode_welcome(zmq::message_t(old.data(), old.size())).inline_payloads);
}

TEST_CASE("HELLO and WELCOME carry the batch size a side takes; absent or nil is none") {
  const auto hello = wire::encode(wire::Hello{"worker", "w", 1, 64});
  CHECK(wire::decode_hello(hello).batch == 64);
  CHECK(wire::decode_hello(wire::encode(wire::Hello{"client", "c", 1})).batch == 0);
  // An older peer's three-field HELLO.
  msgpack::sbuffer old;
  msgpack::packer<msgpack::sbuffer>(old).pack(std::make_tuple(std::string("worker"), std::string("w"), 1));
  CHECK(wire::decode_hello(zmq::message_t(old.data(), old.size())).batch == 0);
  // More than the protocol allows means as many as it allows.
  CHECK(wire::decode_hello(wire::encode(wire::Hello{"worker", "w", 1, 1u << 30})).batch == mw::kMaxBatchEntries);
  const auto welcome = wire::encode(wire::Welcome{"tcp://x:1", 1000, "1", 1 << 20, 1024});
  CHECK(wire::decode_welcome(welcome).batch == 1024);
  CHECK(wire::decode_welcome(wire::encode(wire::Welcome{"tcp://x:1", 1000, "1", 1 << 20})).batch == 0);
}
