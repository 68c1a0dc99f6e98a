#include "mw/client.hpp"

#include <array>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mw/log.hpp"
#include "mw/ring_deque.hpp"
#include "mw/spin_poll.hpp"
#include "peer_socket.hpp"

namespace mw {
namespace {

using Clock = std::chrono::steady_clock;

// How long a pipelined request may wait in the queue for company while
// next_event() keeps finding answers ready.
constexpr auto kMaxHold = std::chrono::milliseconds(1);

// How long a wait for a flow's RESULT rides out a silent broker (at least;
// the liveness period if that is longer): long enough for a broker with a
// durable store to be restarted, after which the wait asks again (WAIT).
constexpr auto kFlowWaitSilence = std::chrono::seconds(10);

std::string error_text(const wire::ErrorReply& e) {
  return "broker: " + std::string(e.message) + " (" + std::to_string(static_cast<int>(e.code)) + ")";
}

// The broker refuses these too; checking here gives the caller the error
// before anything is sent.
void check_submit_options(const SubmitOptions& o) {
  if (o.delay.count() < 0 || static_cast<std::uint64_t>(o.delay.count()) > kMaxSubmitDelayMs)
    throw Error("delay must be between 0 and 10 years", ErrorCode::BadRequest);
  if (o.lease.count() < 0 || static_cast<std::uint64_t>(o.lease.count()) > kMaxSubmitDelayMs)
    throw Error("lease must be between 0 and 10 years", ErrorCode::BadRequest);
  if (o.priority < -kMaxPriority || o.priority > kMaxPriority)
    throw Error("priority must be between -1000 and 1000", ErrorCode::BadRequest);
  if (o.key.size() > kMaxKeyBytes) throw Error("key must be at most 256 bytes", ErrorCode::BadRequest);
  if (!o.key.empty() && o.key.front() == '$')
    throw Error("keys starting with '$' are reserved for the broker", ErrorCode::BadRequest);
  if (o.entity.size() > 512) throw Error("entity must be at most 512 bytes", ErrorCode::BadRequest);
}

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions options)
      : options_(checked(std::move(options))), context_(1), peer_(context_, options_.broker) {}

  static ClientOptions checked(ClientOptions options) {
    check_spin_us(options.spin_us, "spin_us");
    return options;
  }

  std::uint64_t send_submit(std::string_view type, std::string_view payload, bool wait, SubmitOptions options) {
    if (auto problem = type_name_problem(type); !problem.empty()) throw Error(problem, ErrorCode::BadRequest);
    check_submit_options(options);
    const std::uint64_t request_id = ++last_request_id_;
    wire::Submit submit;
    submit.request_id = request_id;
    submit.type = type;
    submit.wait = wait;
    submit.max_attempts = options.max_attempts;
    submit.entity = options.entity;
    submit.delay_ms = static_cast<std::uint64_t>(options.delay.count());
    submit.priority = options.priority;
    submit.key = options.key;
    submit.lease_ms = static_cast<std::uint64_t>(options.lease.count());
    zmq::message_t header = wire::encode(submit);
    zmq::message_t body(payload.data(), payload.size());
    check_fits("SUBMIT", detail::PeerSocket::message_bytes(&header, &body));
    peer_.send(Command::Submit, &header, &body);
    return request_id;
  }

  std::optional<ClientEvent> next_event(std::chrono::milliseconds timeout) {
    if (!backlog_.empty()) {
      ClientEvent e = std::move(backlog_.front());
      backlog_.pop_front();
      backlog_.release_if_empty(kKeptBacklogSlots);
      peer_.flush_older_than(kMaxHold);
      return e;
    }
    std::optional<ClientEvent> found;
    receive_within(
        timeout,
        [&](detail::Inbound& in) {
          found = to_event(in);
          return found.has_value();
        },
        /*fail_on_silence=*/false);
    // A producer answering every event with a request may never find the
    // socket empty: its requests still leave within kMaxHold.
    peer_.flush_older_than(kMaxHold);
    return found;
  }

  std::uint64_t submit(std::string_view type, const Payload& payload, SubmitOptions options) {
    const auto request_id = send_submit(type, payload.bytes(), false, options);
    return await_accepted(request_id);
  }

  std::optional<Outcome> submit_and_wait(std::string_view type, const Payload& payload,
                                         std::chrono::milliseconds timeout, SubmitOptions options) {
    say_hello();  // heartbeats tell us if the broker dies while we wait
    const auto request_id = send_submit(type, payload.bytes(), true, options);
    const auto flow_id = await_accepted(request_id);
    return await_result(flow_id, Clock::now() + timeout, 0, options.delay);
  }

  std::optional<Outcome> wait_for(std::uint64_t flow_id, std::chrono::milliseconds timeout) {
    if (flow_id == 0) throw Error("0 is not a flow id: flow ids start at 1", ErrorCode::BadRequest);
    if (auto outcome = take_result_from_backlog(flow_id)) return outcome;  // asking would bring it twice
    say_hello();
    const auto deadline = Clock::now() + timeout;
    return await_result(flow_id, deadline, send_wait(flow_id));
  }

  std::optional<Outcome> take_result_from_backlog(std::uint64_t flow_id) {
    std::optional<Outcome> outcome;
    take_from_backlog([&](ClientEvent& e) {
      if (e.kind != ClientEvent::Kind::Result || e.flow_id != flow_id) return false;
      outcome = std::move(e.outcome);
      return true;
    });
    return outcome;
  }

  // Waits for flow `flow_id`'s RESULT until `deadline`. `wait_request` is
  // the WAIT that asked for it (0 when a SUBMIT with wait did): an ERROR
  // for it, or for the WAIT that re-asks after the broker forgot us, means
  // the broker does not know the flow.
  // `delay`: the flow's first job is not due before then (on_still_waiting
  // counts from its due time).
  std::optional<Outcome> await_result(std::uint64_t flow_id, Clock::time_point deadline, std::uint64_t wait_request,
                                      std::chrono::milliseconds delay = {}) {
    std::optional<Outcome> outcome = take_result_from_backlog(flow_id);
    if (outcome) return outcome;
    awaited_.push_back(flow_id);
    if (options_.on_still_waiting) still_waiting_at_ = Clock::now() + delay + options_.still_waiting_after;
    struct Unwait {  // however the wait ends
      Impl& self;
      std::uint64_t flow_id;
      ~Unwait() {
        self.still_waiting_at_.reset();
        self.awaited_.pop_back();
        std::erase_if(self.rewaits_, [&](const auto& entry) { return entry.second == flow_id; });
      }
    } unwait{*this, flow_id};
    try {
      receive_until(deadline, [&](detail::Inbound& in) {
        auto e = to_event(in);
        if (!e) return false;
        if (e->kind == ClientEvent::Kind::Result && e->flow_id == flow_id) {
          outcome = std::move(e->outcome);
          return true;
        }
        if (e->kind == ClientEvent::Kind::Error && e->request_id != 0) {
          const auto re = rewaits_.find(e->request_id);
          const bool ours = e->request_id == wait_request || (re != rewaits_.end() && re->second == flow_id);
          if (re != rewaits_.end()) rewaits_.erase(re);
          if (ours && e->code == ErrorCode::UnknownCommand)
            throw Error("the broker at " + options_.broker +
                            " is older than this client and cannot be asked for a flow by its id (WAIT); "
                            "upgrade mw-broker",
                        ErrorCode::NotImplemented);
          if (ours && e->request_id != wait_request && e->code == ErrorCode::NotFound)
            throw Error("the broker restarted (or forgot this client) while it waited, and no longer knows flow " +
                            std::to_string(flow_id) + ": a broker on :memory: forgets its unfinished flows",
                        ErrorCode::NotFound);
          if (ours) throw Error(std::string(e->message), e->code);
        }
        backlog_.push_back(std::move(*e));
        return false;
      }, /*fail_on_silence=*/true, kFlowWaitSilence);
    } catch (const Interrupted&) {
      throw Interrupted("interrupted while waiting for flow " + std::to_string(flow_id) +
                        ", which goes on in the broker");
    } catch (const Error& e) {
      // Say which flow, so its outcome can be looked for.
      if (e.code() != ErrorCode::Unavailable) throw;
      throw Error(std::string(e.what()) + ", while waiting for flow " + std::to_string(flow_id) +
                      " (a broker with a durable store runs it after a restart; mw result " + std::to_string(flow_id) +
                      " --wait waits for it again)",
                  ErrorCode::Unavailable);
    }
    return outcome;
  }

  // Sends WAIT for `flow_id`; returns its request id.
  std::uint64_t send_wait(std::uint64_t flow_id) {
    const std::uint64_t request_id = ++last_request_id_;
    zmq::message_t header = wire::encode(wire::WaitRequest{request_id, flow_id});
    peer_.send(Command::Wait, &header);
    return request_id;
  }

  std::uint64_t send_call(std::string_view endpoint, std::string_view method, std::optional<std::string> id,
                          const nlohmann::ordered_json& data, const nlohmann::ordered_json& query) {
    const std::uint64_t request_id = ++last_request_id_;
    std::optional<std::string_view> id_view;
    if (id) id_view = *id;
    zmq::message_t header = wire::encode(wire::Call{request_id, endpoint, method, id_view});
    nlohmann::ordered_json body = nlohmann::ordered_json::object();
    if (!data.is_null()) body["data"] = data;
    if (!query.is_null()) body["query"] = query;
    std::string bytes;
    nlohmann::ordered_json::to_msgpack(body, bytes);
    zmq::message_t frame(bytes.data(), bytes.size());
    check_fits("CALL", detail::PeerSocket::message_bytes(&header, &frame));
    peer_.send(Command::Call, &header, &frame);
    return request_id;
  }

  nlohmann::ordered_json call(std::string_view endpoint, std::string_view method, std::optional<std::string> id,
                              const nlohmann::ordered_json& data, const nlohmann::ordered_json& query) {
    const auto request_id = send_call(endpoint, method, std::move(id), data, query);
    std::optional<ClientEvent> reply;
    receive_until(Clock::now() + options_.timeout, [&](detail::Inbound& in) {
      auto e = to_event(in);
      if (!e) return false;
      if ((e->kind == ClientEvent::Kind::Reply || e->kind == ClientEvent::Kind::Error) &&
          (e->request_id == request_id || (e->kind == ClientEvent::Kind::Error && e->request_id == 0))) {
        reply = std::move(e);
        return true;
      }
      backlog_.push_back(std::move(*e));
      return false;
    });
    if (!reply) throw no_answer("CALL");
    if (reply->kind == ClientEvent::Kind::Error) throw Error("broker: " + reply->message, reply->code);
    if (!reply->ok) throw Error(reply->message, reply->code);
    return reply->reply.to_ordered_json();
  }

  wire::Stats status() {
    const std::uint64_t request_id = ++last_request_id_;
    zmq::message_t header = wire::encode(wire::StatusRequest{request_id});
    peer_.send(Command::Status, &header);
    std::optional<wire::Stats> stats;
    receive_until(Clock::now() + options_.timeout, [&](detail::Inbound& in) {
      if (in.command == Command::Stats) {
        auto s = wire::decode_stats(in.header);
        if (s.request_id == request_id) {
          stats = std::move(s);
          return true;
        }
        return false;
      }
      if (in.command == Command::Error) {
        const auto e = wire::decode_error(in.header);
        if (e.request_id == 0 || e.request_id == request_id) throw Error(error_text(e), e.code);
      }
      if (auto e = to_event(in)) backlog_.push_back(std::move(*e));
      return false;
    });
    if (!stats) throw no_answer("STATUS");
    return std::move(*stats);
  }

  std::string pub_address() {
    if (pub_address_.empty()) await_welcome();
    return connectable_address(pub_address_, options_.broker);
  }

  const std::string& broker() const noexcept { return options_.broker; }
  std::uint64_t last_flow_id() const noexcept { return last_flow_id_; }

  // A pipelining client says HELLO: heartbeats tell it if the broker dies
  // while it waits, and WELCOME lets both sides batch (its requests go
  // together, and so do the broker's ACCEPTEDs, RESULTs and REPLYs to it).
  void pipelining() { say_hello(); }

  void flush() { peer_.flush(); }

 private:
  Error no_answer(const char* what) const {
    return Error("no answer to " + std::string(what) + " from the broker at " + options_.broker + " within " +
                     std::to_string(options_.timeout.count()) + " ms: " + std::string(kNoBrokerHint),
                 ErrorCode::Unavailable);
  }

  // Throws TooLarge, before anything is sent, for a message over the
  // broker's --max-message-bytes: the broker would drop the connection and
  // the request would go unanswered. A message that may be too large for
  // some broker (over kMinMaxMessageBytes) needs the limit from WELCOME:
  // the first one says HELLO and waits for it.
  void check_fits(const char* command, std::size_t bytes) {
    if (bytes <= kMinMaxMessageBytes) return;
    if (peer_.max_message_bytes() == 0) await_welcome();
    if (bytes > peer_.max_message_bytes())
      throw Error(std::string(command) + " of " + std::to_string(bytes) + " bytes is larger than the broker takes (" +
                      std::to_string(peer_.max_message_bytes()) + " bytes, its --max-message-bytes)",
                  ErrorCode::TooLarge);
  }

  // Says HELLO if needed and waits for the WELCOME (what it carries is
  // taken by receive_until); other events wait in the backlog.
  void await_welcome() {
    say_hello();
    bool welcomed = false;
    receive_until(Clock::now() + options_.timeout, [&](detail::Inbound& in) {
      if (in.command == Command::Welcome) return welcomed = true;
      if (auto e = to_event(in)) backlog_.push_back(std::move(*e));
      return false;
    });
    if (!welcomed) throw no_answer("HELLO");
  }

  void say_hello() {
    if (said_hello_) return;
    zmq::message_t hello =
        wire::encode(wire::Hello{kRoleClient, "mw-client", kProtocolVersion, detail::PeerSocket::kBatchAccepted,
                                  /*inline_payloads=*/true});
    peer_.send(Command::Hello, &hello);
    said_hello_ = true;
    last_heard_ = Clock::now();
    last_heartbeat_ = Clock::now();
  }

  std::uint64_t await_accepted(std::uint64_t request_id) {
    std::optional<std::uint64_t> flow_id;
    std::optional<Error> refused;
    try {
      receive_until(Clock::now() + options_.timeout, [&](detail::Inbound& in) {
        if (in.command == Command::Accepted) {
          const auto a = wire::decode_accepted(in.header);
          if (a.request_id == request_id) {
            flow_id = a.flow_id;
            return true;
          }
        } else if (in.command == Command::Error) {
          const auto e = wire::decode_error(in.header);
          if (e.request_id == request_id || e.request_id == 0) {
            refused.emplace(error_text(e), e.code);
            return true;
          }
        }
        if (auto e = to_event(in)) backlog_.push_back(std::move(*e));
        return false;
      });
    } catch (const Interrupted&) {
      throw Interrupted("interrupted before the broker acknowledged the SUBMIT: the job may or may not have been accepted");
    } catch (const Error& e) {
      if (e.code() != ErrorCode::Unavailable) throw;
      throw unacknowledged(e);
    }
    if (refused) throw *refused;
    if (!flow_id) throw unacknowledged(no_answer("SUBMIT"));
    last_flow_id_ = *flow_id;
    return *flow_id;
  }

  // A broker that went silent after a SUBMIT may have committed the job
  // before it died or stalled: the caller must not take it as refused.
  // Even one that never answered may have it: a broker busy for a while
  // still takes the SUBMIT into its socket, and commits it later.
  static Error unacknowledged(const Error& e) {
    return Error(std::string(e.what()) +
                     "; the SUBMIT was not acknowledged, so the job may or may not have been accepted "
                     "(an idempotency key makes submitting it again safe)",
                 ErrorCode::Unavailable);
  }

  bool take_from_backlog(const std::function<bool(ClientEvent&)>& want) {
    for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
      if (want(*it)) {
        backlog_.erase(it);
        backlog_.release_if_empty(kKeptBacklogSlots);
        return true;
      }
    }
    return false;
  }

  // Reads messages until `accept` returns true or `deadline` passes. Keeps
  // the heartbeat going when this client said HELLO, and throws when the
  // broker has been silent for its whole liveness period.
  // What the pipelined calls queued leaves once no answer is ready (so a
  // producer answering each RESULT with a SUBMIT sends them in batches),
  // and always before this waits or gives up.
  //
  // `fail_on_silence`: throw when the broker, though this client said HELLO,
  // has sent nothing for its whole liveness period during this wait (a
  // silence before the wait does not count: an idle client may have been
  // forgotten, and its heartbeat below then earns a DISCONNECT, and a new
  // HELLO). Without it, the wait simply ends at `deadline`.
  void receive_until(Clock::time_point deadline, const std::function<bool(detail::Inbound&)>& accept,
                     bool fail_on_silence = true, std::chrono::milliseconds min_silence = {}) {
    receive(deadline, {}, accept, fail_on_silence, min_silence);
  }

  // The same, for up to `timeout` from the first time the socket has nothing
  // to read: a producer that finds its answer waiting reads no clock.
  void receive_within(std::chrono::milliseconds timeout, const std::function<bool(detail::Inbound&)>& accept,
                      bool fail_on_silence = true) {
    receive(std::nullopt, timeout, accept, fail_on_silence, {});
  }

  // The clock is read once the socket is empty, not per message (a BATCH
  // brings up to 64; each reading costs ~25 ns): a message read is stamped
  // as heard then, or at the next call's, which comes before any wait.
  void receive(std::optional<Clock::time_point> deadline, std::chrono::milliseconds timeout,
               const std::function<bool(detail::Inbound&)>& accept, bool fail_on_silence,
               std::chrono::milliseconds min_silence) {
    std::optional<Clock::time_point> wait_started;
    for (;;) {
      while (auto in = peer_.try_recv()) {
        heard_unstamped_ = true;
        broker_answered_ = true;
        if (in->command == Command::Welcome) {
          const auto w = wire::decode_welcome(in->header);
          pub_address_ = std::string(w.pub_address);
          heartbeat_ms_ = w.heartbeat_ms ? w.heartbeat_ms : kDefaultHeartbeatMs;
          peer_.take_welcome(w);
          // The broker that forgot us knows us now: ask it again for the
          // flows we wait for (once, however many DISCONNECTs came first).
          if (std::exchange(rewait_on_welcome_, false))
            for (const auto flow_id : awaited_) rewaits_.emplace(send_wait(flow_id), flow_id);
        } else if (in->command == Command::Heartbeat) {
          continue;
        } else if (in->command == Command::Disconnect) {
          // The broker forgot us: we were idle past its liveness period, or
          // it restarted or is stopping. Say HELLO again; if it is gone for
          // good, its silence ends the wait below.
          if (said_hello_) {
            said_hello_ = false;
            peer_.forget_welcome();  // until the WELCOME: the broker may not be the one we knew
            say_hello();
            // A restarted broker does not know who waits for what: ask
            // again once it has welcomed us.
            rewait_on_welcome_ = !awaited_.empty();
          }
          continue;
        }
        if (accept(*in)) return;
      }
      peer_.flush();
      const auto now = Clock::now();
      if (std::exchange(heard_unstamped_, false)) last_heard_ = now;
      if (!wait_started) wait_started = now;
      if (!deadline) deadline = now + timeout;
      if (now >= *deadline) return;
      if (still_waiting_at_ && now >= *still_waiting_at_) {
        still_waiting_at_.reset();
        options_.on_still_waiting(awaited_.back());
        continue;  // it took time: look at the socket and the clock again
      }
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - now) + std::chrono::milliseconds(1);
      if (still_waiting_at_)
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(*still_waiting_at_ - now) +
                                  std::chrono::milliseconds(1));
      if (said_hello_) {
        const auto beat = std::chrono::milliseconds(heartbeat_ms_);
        if (now - last_heartbeat_ >= beat) {
          peer_.send(Command::Heartbeat);
          last_heartbeat_ = now;
        }
        const auto silence_limit = std::max<std::chrono::milliseconds>(beat * kHeartbeatLiveness, min_silence);
        if (fail_on_silence && now - std::max(last_heard_, *wait_started) > silence_limit)
          throw Error(broker_answered_ ? "lost the broker at " + options_.broker + ": no heartbeat for " +
                                             std::to_string(silence_limit.count()) + " ms"
                                       : "no answer from a broker at " + options_.broker + " within " +
                                             std::to_string(silence_limit.count()) +
                                             " ms: " + std::string(kNoBrokerHint),
                      ErrorCode::Unavailable);
        wait = std::min(wait, beat);
      }
      std::array<zmq::pollitem_t, 2> items{{
          {peer_.socket().handle(), 0, ZMQ_POLLIN, 0},
          {nullptr, options_.stop ? options_.stop->fd() : -1, ZMQ_POLLIN, 0},
      }};
      spin_poll_.poll(items.data(), options_.stop ? 2 : 1, wait);
      if (options_.stop && options_.stop->fired()) throw Interrupted("interrupted");
    }
  }

  std::optional<ClientEvent> to_event(detail::Inbound& in) {
    ClientEvent e;
    switch (in.command) {
      case Command::Accepted: {
        const auto a = wire::decode_accepted(in.header);
        e.kind = ClientEvent::Kind::Accepted;
        e.request_id = a.request_id;
        e.flow_id = a.flow_id;
        return e;
      }
      case Command::Result: {
        const auto r = wire::decode_result(in.header);
        e.kind = ClientEvent::Kind::Result;
        e.flow_id = r.flow_id;
        e.outcome.flow_id = r.flow_id;
        e.outcome.done = r.outcome == kOutcomeDone;
        e.outcome.cancelled = r.outcome == kOutcomeCancelled;
        e.outcome.error = r.error;
        e.outcome.last_type = r.last_type;
        e.outcome.attempts = r.attempts;
        e.outcome.result = Payload::adopt(std::string(in.payload.data<char>(), in.payload.size()));
        return e;
      }
      case Command::Reply: {
        const auto r = wire::decode_reply(in.header);
        e.kind = ClientEvent::Kind::Reply;
        e.request_id = r.request_id;
        e.ok = r.code == 0;
        e.code = static_cast<ErrorCode>(r.code);
        e.message = r.message;
        e.reply = Payload::adopt(std::string(in.payload.data<char>(), in.payload.size()));
        return e;
      }
      case Command::Error: {
        const auto r = wire::decode_error(in.header);
        e.kind = ClientEvent::Kind::Error;
        e.request_id = r.request_id;
        e.code = r.code;
        e.message = r.message;
        return e;
      }
      default:
        return std::nullopt;
    }
  }

  ClientOptions options_;
  zmq::context_t context_;
  detail::PeerSocket peer_;
  SpinPoll spin_poll_{std::chrono::microseconds(options_.spin_us)};
  std::uint64_t last_request_id_ = 0;
  // Answers read but not yet asked for. Unbounded (a caller waiting for one
  // flow lets the others' pile up), so a drained backlog keeps only
  // kKeptBacklogSlots slots.
  static constexpr std::size_t kKeptBacklogSlots = 64;
  RingDeque<ClientEvent> backlog_;
  bool said_hello_ = false;
  std::string pub_address_;
  std::uint64_t last_flow_id_ = 0;
  std::vector<std::uint64_t> awaited_;  // flows whose RESULT a call waits for now
  std::unordered_map<std::uint64_t, std::uint64_t> rewaits_;  // WAIT request id → flow, sent after a DISCONNECT
  bool rewait_on_welcome_ = false;  // a DISCONNECT came while awaited_ was not empty
  // When on_still_waiting is due for the flow awaited now; unset once called.
  std::optional<Clock::time_point> still_waiting_at_;
  std::uint32_t heartbeat_ms_ = kDefaultHeartbeatMs;
  Clock::time_point last_heard_ = Clock::now();
  bool heard_unstamped_ = false;  // a message read since last_heard_ was set
  bool broker_answered_ = false;  // anything at all came from the broker on this socket
  Clock::time_point last_heartbeat_ = Clock::now();
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

std::uint64_t Client::submit(std::string_view type, const Payload& payload, SubmitOptions options) {
  return impl_->submit(type, payload, options);
}
std::optional<Outcome> Client::submit_and_wait(std::string_view type, const Payload& payload,
                                               std::chrono::milliseconds timeout, SubmitOptions options) {
  return impl_->submit_and_wait(type, payload, timeout, options);
}
wire::Stats Client::status() { return impl_->status(); }
nlohmann::ordered_json Client::call(std::string_view endpoint, std::string_view method, std::optional<std::string> id,
                                    const nlohmann::ordered_json& data, const nlohmann::ordered_json& query) {
  return impl_->call(endpoint, method, std::move(id), data, query);
}
std::uint64_t Client::send_call(std::string_view endpoint, std::string_view method, std::optional<std::string> id,
                                const nlohmann::ordered_json& data, const nlohmann::ordered_json& query) {
  impl_->pipelining();
  return impl_->send_call(endpoint, method, std::move(id), data, query);
}
std::string Client::pub_address() { return impl_->pub_address(); }
std::uint64_t Client::send_submit(std::string_view type, std::string_view msgpack_payload, bool wait,
                                  SubmitOptions options) {
  impl_->pipelining();
  return impl_->send_submit(type, msgpack_payload, wait, options);
}
std::optional<ClientEvent> Client::next_event(std::chrono::milliseconds timeout) { return impl_->next_event(timeout); }
void Client::flush() { impl_->flush(); }
const std::string& Client::broker() const noexcept { return impl_->broker(); }

std::optional<Outcome> Client::wait(std::uint64_t flow_id, std::chrono::milliseconds timeout) {
  return impl_->wait_for(flow_id, timeout);
}

std::uint64_t Client::last_flow_id() const noexcept { return impl_->last_flow_id(); }

}  // namespace mw
