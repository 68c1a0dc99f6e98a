// mw/client.hpp — submit jobs and ask the broker how things stand.
//
//   mw::Client client;                                   // $MW_BROKER or tcp://127.0.0.1:5555
//   auto flow = client.submit("sampleworker", mw::Payload::of(0.5));
//   auto outcome = client.submit_and_wait("sampleworker", mw::Payload::of(0.5), std::chrono::seconds(10));
//   if (outcome && outcome->done) std::cout << outcome->result.to_json_text();
//
// For producers that keep many jobs in flight (mw bench), send_submit()
// and next_event() pipeline requests without waiting for each answer.
// Pipelined requests may be held back to travel together in one BATCH
// (docs/PROTOCOL.md §2.1): they leave when 64 are queued, when a call finds
// no answer ready (next_event() or a blocking call, before it waits or
// returns empty-handed), when next_event() returns and the oldest has
// waited 1 ms, or on flush().
//
// Not thread-safe: one Client per thread. Move-only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mw/options.hpp"
#include "mw/payload.hpp"
#include "mw/stop_signal.hpp"
#include "mw/wire.hpp"

namespace mw {

struct ClientOptions {
  std::string broker = default_broker_address();
  // How long submit() and status() wait for the broker's answer before
  // throwing mw::Error (the broker is down or unreachable).
  std::chrono::milliseconds timeout{5000};
  // When set, a blocking call (submit, submit_and_wait, status, call …)
  // stops waiting the moment this fires and throws mw::Interrupted; for
  // submit_and_wait of an accepted flow its message names the flow, which
  // goes on. Not owned: it must outlive the client.
  const StopSignal* stop = nullptr;
  // When set, a wait for a flow's end (submit_and_wait, wait) that has gone
  // on for `still_waiting_after` (counted from the job's due time when it
  // was submitted with a delay) calls this once with the flow's id, then
  // waits on, its deadline and silence limit unchanged. It runs on the
  // waiting thread and must not use this Client (another one may ask the
  // broker); mw::Interrupted thrown from it ends the wait as Ctrl-C does.
  // Keep it short: the wait can end no earlier than it returns, and sends
  // no heartbeat meanwhile.
  // `mw submit --wait` uses it to say that a flow waits at a type no
  // worker serves.
  std::function<void(std::uint64_t flow_id)> on_still_waiting{};
  std::chrono::milliseconds still_waiting_after{3000};
  // While answers come steadily, look for the next one without sleeping
  // for up to this many microseconds before sleeping (mw/spin_poll.hpp);
  // 0: never spin; more than kMaxSpinUs is refused (mw::UsageError).
  std::uint32_t spin_us = kDefaultSpinUs;
};

struct SubmitOptions {
  std::uint32_t max_attempts = 0;  // per stage; 0 = the broker's default (5)
  // The entity the job works on: "endpoint/id", or "id" / "auto" to take the
  // endpoint (and with "auto" the id) from the payload's nested object, as
  // in {"order": {"id": "o1"}}. The broker stamps its last_worked_on when a
  // worker takes the job and merges the flow's result into it at the end.
  std::string entity;
  // Run no earlier than this long after the broker accepts the job (a
  // restart of the broker does not reset the clock: the due time is stored).
  std::chrono::milliseconds delay{0};
  // Higher runs first among the jobs of its type waiting at the same time;
  // -1000..1000. Later stages of the flow keep it.
  std::int32_t priority = 0;
  // Idempotent submit: while a flow submitted with this key is unfinished,
  // submitting again with the key returns that flow's id and does nothing.
  // At most 256 bytes; empty for none.
  std::string key;
  // How long one worker may hold one stage before the broker takes it back
  // and gives it to another; 0 = the type's or the broker's default.
  std::chrono::milliseconds lease{0};
};

// How a flow ended.
struct Outcome {
  std::uint64_t flow_id = 0;
  bool done = false;        // false: dead (error says why) or cancelled
  bool cancelled = false;   // cancelled on request (mw cancel) before it ended
  Payload result;           // the final result; for a dead flow, the input of the stage that died
  std::string error;
  std::string last_type;    // the stage that finished or died
  std::uint32_t attempts = 0;
};

// One answer from the broker, for pipelined use.
struct ClientEvent {
  enum class Kind { Accepted, Result, Error, Reply };
  Kind kind = Kind::Accepted;
  std::uint64_t request_id = 0;  // Accepted, Error
  std::uint64_t flow_id = 0;     // Accepted, Result
  Outcome outcome;               // Result
  ErrorCode code = ErrorCode::BadRequest;  // Error; Reply when !ok
  std::string message;           // Error; Reply when !ok
  bool ok = false;               // Reply
  Payload reply;                 // Reply: the result when ok
};

class Client {
 public:
  // Connects in the background; never blocks. Throws mw::Error for an
  // address ZeroMQ rejects.
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // Submits a job and returns its flow id once the broker has accepted it.
  // Throws mw::Error on an ERROR reply or when no answer comes in time.
  // An Unavailable error means the broker never acknowledged the SUBMIT: it
  // may still have committed the job before it died. Give the job a key
  // (SubmitOptions::key) to make submitting it again safe.
  std::uint64_t submit(std::string_view type, const Payload& payload, SubmitOptions options = {});

  // Submits and waits for the flow's end. Returns nullopt when `timeout`
  // passes first (the flow goes on). Throws mw::Error on an ERROR reply, or
  // (Unavailable) when the broker stays silent for 10 s (or its liveness
  // period, if longer) while it waits for the RESULT. A broker that
  // restarts (or forgets this client) meanwhile is asked again for the
  // flow's RESULT (WAIT): with a durable store the wait goes on; a broker
  // that no longer knows the flow (":memory:") makes it throw NotFound.
  [[nodiscard]] std::optional<Outcome> submit_and_wait(std::string_view type, const Payload& payload,
                                                       std::chrono::milliseconds timeout, SubmitOptions options = {});

  // Waits for the end of flow `flow_id`, whoever submitted it, and returns
  // its outcome: at once when it has ended and the broker still keeps its
  // outcome (mw-broker --keep-results). Returns nullopt when `timeout`
  // passes first (the flow goes on). Throws mw::Error NotFound when the
  // broker knows no such flow (never submitted, or ended too long ago),
  // NotImplemented when the broker is too old to be asked (no WAIT), and
  // as submit_and_wait does otherwise.
  [[nodiscard]] std::optional<Outcome> wait(std::uint64_t flow_id, std::chrono::milliseconds timeout);

  // The broker's counters, queues and workers. Throws mw::Error on timeout.
  wire::Stats status();

  // The address where the broker publishes events, connectable from here.
  // Throws mw::Error on timeout.
  std::string pub_address();

  // Calls an entity endpoint: method is create, get, find, update, patch or
  // remove; `id` is for get/update/patch/remove of one entity; `data` for
  // create/update/patch; `query` for find and for update/patch/remove of
  // every match. Returns the result (ordered as the broker sent it).
  // Throws mw::Error with the broker's code (NotFound, BadRequest,
  // Conflict …) and message, or Unavailable on timeout.
  nlohmann::ordered_json call(std::string_view endpoint, std::string_view method,
                              std::optional<std::string> id = std::nullopt,
                              const nlohmann::ordered_json& data = nullptr,
                              const nlohmann::ordered_json& query = nullptr);

  // Pipelined call, as send_submit(): answers arrive as Kind::Reply events.
  std::uint64_t send_call(std::string_view endpoint, std::string_view method, std::optional<std::string> id,
                          const nlohmann::ordered_json& data, const nlohmann::ordered_json& query);

  // Pipelined submit: queues the request and returns its request id at
  // once. Answers arrive through next_event(): ACCEPTED (or ERROR) always,
  // RESULT too when `wait`.
  std::uint64_t send_submit(std::string_view type, std::string_view msgpack_payload, bool wait,
                            SubmitOptions options = {});

  // The next answer, or nullopt when none arrives within `timeout` (also
  // when the broker is silent or gone: it never throws for that; the
  // caller decides how long to wait). Sends what the pipelined calls above
  // queued once no answer is ready, or once the oldest has waited 1 ms.
  [[nodiscard]] std::optional<ClientEvent> next_event(std::chrono::milliseconds timeout);

  // Sends what the pipelined calls queued, now, without waiting for answers.
  void flush();

  const std::string& broker() const noexcept;

  // The flow id of the last SUBMIT of submit() or submit_and_wait() that the
  // broker accepted; 0 before any. Names the flow a timed-out wait left running.
  std::uint64_t last_flow_id() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mw
