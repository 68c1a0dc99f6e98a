// The broker core driven as a state machine in tests: a RecordingTransport
// keeps what the core sends, a Harness speaks the protocol as peers would
// with a fake clock. Shared by the unit tests of the core. Include after
// doctest.h.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mw/broker/core.hpp"
#include "mw/broker/job_queue.hpp"
#include "mw/broker/worker_registry.hpp"
#include "mw/listener.hpp"
#include "mw/log.hpp"
#include "mw/version.hpp"
#include "mw/wire.hpp"
#include "submit_header.hpp"

namespace core_test {

using mw::Command;
using mw::ErrorCode;
using mw::broker::BrokerConfig;
using mw::broker::BrokerCore;
using mw::broker::Job;
using mw::broker::MemoryJobQueue;
using mw::broker::SendResult;
using mw::broker::Transport;
using mw::broker::WorkerEntry;
using mw::broker::WorkerRegistry;
namespace wire = mw::wire;

std::string bytes_of(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }
zmq::message_t frame_of(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

// A msgpack value that is easy to tell apart: bin16 of `n` bytes 0..255 repeating, tagged.
std::string payload_bytes(std::size_t n, unsigned char salt = 0) {
  std::string out("\xc5", 1);
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n & 0xff));
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<char>((i + salt) & 0xff));
  return out;
}

// One message the core asked to send.
struct Sent {
  std::string peer;
  Command command{};
  std::string header;                  // header bytes; empty when none
  std::optional<std::string> payload;  // payload bytes when a payload frame was given
  SendResult result = SendResult::Sent;
  std::uint32_t hold_ms = 0;  // sent with send_lazy: may wait this long
};

struct Published {
  std::string topic;
  std::string meta;
  std::string data;
};

// Records every send; can be told to answer Unreachable or WouldBlock for a peer.
class RecordingTransport final : public Transport {
 public:
  SendResult send(std::string_view peer, Command command, zmq::message_t* header, zmq::message_t* payload) override {
    Sent s;
    s.peer = std::string(peer);
    s.command = command;
    if (header) s.header = bytes_of(*header);
    if (payload) s.payload = bytes_of(*payload);
    if (auto it = fail_for.find(s.peer); it != fail_for.end()) s.result = it->second;
    if (s.result == SendResult::Sent) {
      // Like a socket: the frames' contents are taken.
      if (header) {
        zmq::message_t taken(std::move(*header));
      }
      if (payload) {
        zmq::message_t taken(std::move(*payload));
      }
    }
    sent.push_back(std::move(s));
    return sent.back().result;
  }

  SendResult send_lazy(std::string_view peer, Command command, zmq::message_t* header, zmq::message_t* payload,
                       std::uint32_t hold_ms) override {
    send(peer, command, header, payload);
    sent.back().hold_ms = hold_ms;
    return sent.back().result;
  }

  void set_batch_limit(std::string_view peer, std::uint32_t entries, bool inline_payloads) override {
    batch_limits[std::string(peer)] = entries;
    inline_payloads_to[std::string(peer)] = inline_payloads;
  }
  void forget(std::string_view peer) override { forgotten.push_back(std::string(peer)); }

  bool has_subscribers(std::string_view) const override { return subscribers; }

  void publish(std::string_view topic, zmq::message_t& meta, zmq::message_t& data) override {
    published.push_back({std::string(topic), bytes_of(meta), bytes_of(data)});
  }

  std::vector<Sent> sent;  // every attempt, delivered or not
  std::vector<Published> published;
  std::map<std::string, SendResult> fail_for;
  std::map<std::string, std::uint32_t> batch_limits;  // as HELLO told them
  std::map<std::string, bool> inline_payloads_to;     // likewise
  std::vector<std::string> forgotten;
  bool subscribers = false;
};

struct JobMsg {
  std::uint64_t id = 0;
  std::uint64_t flow = 0;
  std::string type;
  std::uint32_t attempt = 0;
  std::string entity;
  std::string payload;
};

struct ResultMsg {
  std::uint64_t flow = 0;
  std::string outcome;
  std::string error;
  std::string last_type;
  std::uint32_t attempts = 0;
  std::string payload;
};

struct ErrorMsg {
  ErrorCode code{};
  std::string message;
  std::uint64_t request_id = 0;
};

BrokerConfig test_config() {
  BrokerConfig c;
  c.heartbeat_ms = 1000;
  c.liveness = 3;
  c.retry_base_ms = 1000;
  c.retry_max_ms = 60'000;
  c.default_max_attempts = 5;
  c.pub_address = "tcp://pub.example:5556";
  c.max_message_bytes = 1 << 20;
  return c;
}

// A core with a recording transport, a fake clock and helpers that speak
// the protocol as peers would.
class Harness {
 public:
  explicit Harness(BrokerConfig config = test_config()) : config_(config), core(std::move(config), queue, transport, 1) {
    mw::set_log_level(mw::LogLevel::off);
  }

  // frames[0] is the routing id.
  void raw(const std::vector<std::string>& frames) {
    std::vector<zmq::message_t> msgs;
    for (const auto& f : frames) msgs.push_back(frame_of(f));
    core.handle(std::span<zmq::message_t>(msgs.data(), msgs.size()), now);
  }

  void command(const std::string& peer, Command c, std::optional<std::string> header = std::nullopt,
               std::optional<std::string> payload = std::nullopt) {
    std::vector<std::string> frames{peer, bytes_of(wire::encode_tag(c))};
    if (header) frames.push_back(*header);
    if (payload) frames.push_back(*payload);
    raw(frames);
  }

  void hello(const std::string& peer, std::uint32_t version = mw::kProtocolVersion) {
    command(peer, Command::Hello, bytes_of(wire::encode(wire::Hello{mw::kRoleClient, "test", version})));
  }

  void ready(const std::string& peer, std::vector<std::string> types, std::string next = "", std::uint32_t credit = 1,
             bool takes_cancel = false) {
    wire::Ready r;
    r.cancel = takes_cancel;
    for (const auto& t : types) r.types.push_back(t);
    r.next = next;
    r.credit = credit;
    r.host = "testhost";
    r.pid = 1234;
    command(peer, Command::Ready, bytes_of(wire::encode(r)));
  }

  // Submits and returns the flow id from the ACCEPTED that must answer it.
  std::uint64_t submit(const std::string& peer, const std::string& type, const std::string& payload, bool wait = true,
                       std::uint32_t max_attempts = 0) {
    const std::uint64_t request_id = ++request_id_;
    const std::size_t mark = transport.sent.size();
    command(peer, Command::Submit, bytes_of(wire::encode(submit_header(request_id, type, wait, max_attempts))),
            payload);
    for (std::size_t i = mark; i < transport.sent.size(); ++i) {
      const auto& s = transport.sent[i];
      if (s.peer == peer && s.command == Command::Accepted) {
        const auto frame = frame_of(s.header);
        const auto a = wire::decode_accepted(frame);
        REQUIRE(a.request_id == request_id);
        return a.flow_id;
      }
    }
    FAIL("SUBMIT was not answered with ACCEPTED");
    return 0;
  }

  // `attempt`: the JOB's attempt the answer quotes (0: none, as an older peer).
  void done(const std::string& peer, std::uint64_t job_id, std::optional<std::string> next, const std::string& result,
            std::uint32_t attempt = 0) {
    wire::Done d{job_id, std::nullopt, attempt};
    if (next) d.next = std::string_view(*next);
    command(peer, Command::Done, bytes_of(wire::encode(d)), result);
  }

  void fail(const std::string& peer, std::uint64_t job_id, const std::string& error, bool retryable = true,
            std::uint32_t attempt = 0) {
    command(peer, Command::Fail, bytes_of(wire::encode(wire::Fail{job_id, error, retryable, attempt})));
  }

  // Sends `batch` as one message from `peer`, as a PeerSocket would.
  void send_batch(const std::string& peer, mw::wire::Batch& batch) {
    std::vector<std::string> frames{peer};
    batch.drain([&](zmq::message_t& frame, bool) { frames.push_back(bytes_of(frame)); });
    raw(frames);
  }

  void heartbeat(const std::string& peer) { command(peer, Command::Heartbeat); }
  void disconnect(const std::string& peer) { command(peer, Command::Disconnect); }
  void tick() { core.tick(now); }

  // Messages delivered (send returned Sent) to `peer`.
  std::vector<Sent> to(const std::string& peer, std::size_t since = 0) const {
    std::vector<Sent> out;
    for (std::size_t i = since; i < transport.sent.size(); ++i) {
      const auto& s = transport.sent[i];
      if (s.peer == peer && s.result == SendResult::Sent) out.push_back(s);
    }
    return out;
  }

  std::size_t attempts_to(const std::string& peer) const {
    return static_cast<std::size_t>(std::count_if(transport.sent.begin(), transport.sent.end(),
                                                  [&](const Sent& s) { return s.peer == peer; }));
  }

  std::vector<JobMsg> jobs(const std::string& peer) const {
    std::vector<JobMsg> out;
    for (const auto& s : to(peer)) {
      if (s.command != Command::Job) continue;
      const auto frame = frame_of(s.header);
      const auto j = wire::decode_job(frame);
      REQUIRE(s.payload.has_value());
      out.push_back({j.job_id, j.flow_id, std::string(j.type), j.attempt, std::string(j.entity), *s.payload});
    }
    return out;
  }

  std::vector<ResultMsg> results(const std::string& peer) const {
    std::vector<ResultMsg> out;
    for (const auto& s : to(peer)) {
      if (s.command != Command::Result) continue;
      const auto frame = frame_of(s.header);
      const auto r = wire::decode_result(frame);
      REQUIRE(s.payload.has_value());
      out.push_back({r.flow_id, std::string(r.outcome), std::string(r.error), std::string(r.last_type), r.attempts,
                     *s.payload});
    }
    return out;
  }

  static ErrorMsg error_of(const Sent& s) {
    REQUIRE(s.command == Command::Error);
    const auto frame = frame_of(s.header);
    const auto e = wire::decode_error(frame);
    return {e.code, std::string(e.message), e.request_id};
  }

  std::size_t worker_count() const { return core.workers().size(); }

  const WorkerEntry* worker(const std::string& id) const {
    for (const auto* w : core.workers().all())
      if (w->id == id) return w;
    return nullptr;
  }

  wire::TypeStats type_stats(const std::string& type) {
    for (auto& t : core.stats(now).types)
      if (t.type == type) return t;
    return {};
  }

  BrokerConfig config_;
  MemoryJobQueue queue;
  RecordingTransport transport;
  BrokerCore core;
  std::int64_t now = 1'000'000;

 private:
  std::uint64_t request_id_ = 100;
};

// What must not change when a message is rejected.
struct Snapshot {
  std::size_t workers = 0;
  std::size_t in_flight = 0;
  std::size_t delayed = 0;
  std::size_t depth_a = 0;
  std::uint64_t flows_done = 0;
  std::uint64_t submitted = 0;
  std::vector<std::uint32_t> worker_loads;

  static Snapshot of(const Harness& h) {
    Snapshot s{h.worker_count(), h.core.in_flight(), h.core.delayed(), h.queue.depth("a"),
               h.core.counters().flows_done, h.core.counters().submitted, {}};
    for (const auto* w : h.core.workers().all()) s.worker_loads.push_back(static_cast<std::uint32_t>(w->jobs.size()));
    return s;
  }
  bool operator==(const Snapshot&) const = default;
};

}  // namespace core_test
