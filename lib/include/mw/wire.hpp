// mw/wire.hpp — encode and decode every MW/1 message, in one place.
//
// Each command has a plain struct for its header and a pair of functions:
// `encode(const T&)` returns the header frame, `decode_T(frame)` parses one.
// Decoded structs hold string_views into the frame they came from: keep the
// frame alive while you use them.
//
// Decoding treats its input as hostile: every decode is bounded (see
// mw/protocol.hpp limits) and throws mw::wire::DecodeError with a short
// reason on anything malformed; it never allocates more than a small multiple
// of the input's size. Fields appended by a newer peer are ignored, so a
// header may grow at the end without a version bump.
//
// Thread safety: all functions are safe to call from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "mw/protocol.hpp"

namespace mw::wire {

// Thrown by every decode on malformed input. what() is one short line, safe
// to send back in an ERROR message.
class DecodeError : public std::runtime_error {
 public:
  DecodeError(ErrorCode code, const std::string& reason)
      : std::runtime_error(reason), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

struct Hello {
  std::string_view role;  // kRoleWorker, kRoleClient or kRoleListener
  std::string_view name;  // free text for logs, e.g. "sampleworker@host"
  std::uint32_t version = kProtocolVersion;
  // Messages per BATCH this peer takes from the broker; 0: send it no BATCH.
  std::uint32_t batch = 0;
  // This peer takes payloads inside a BATCH index (kInlinePayloadFlag).
  bool inline_payloads = false;
};

struct Welcome {
  std::string_view pub_address;  // where the broker publishes events
  std::uint32_t heartbeat_ms = kDefaultHeartbeatMs;
  std::string_view broker_version;
  std::uint64_t max_message_bytes = kDefaultMaxMessageBytes;
  // Messages per BATCH the broker takes from this peer; 0: send it no BATCH.
  std::uint32_t batch = 0;
  // The broker takes PROGRESS (0x14); false (an older broker): send it none.
  bool progress = false;
  // The broker takes payloads inside a BATCH index (kInlinePayloadFlag).
  bool inline_payloads = false;
};

struct Ready {
  std::vector<std::string_view> types;  // 1..kMaxTypesPerWorker job types served
  std::string_view next;                // static next type; empty = none
  std::uint32_t credit = 1;             // jobs the broker may keep in flight here
  std::string_view host;
  std::uint32_t pid = 0;
  // The worker understands CANCEL (field 5, appended; absent = false).
  bool cancel = false;
};

struct JobHeader {
  std::uint64_t job_id = 0;   // unique per dispatchable job (one per pipeline stage)
  std::string_view type;
  std::uint32_t attempt = 1;  // 1 on the first delivery
  std::uint64_t flow_id = 0;  // the id the submitter got; same for every stage
  std::string_view entity;    // "endpoint/id" or empty
};

struct Done {
  std::uint64_t job_id = 0;
  // Absent: continue with the worker's static next type (READY). Empty
  // string: the flow ends here. Otherwise: the next job's type.
  std::optional<std::string_view> next;
  // The JOB's attempt this answers (its field 2); 0: not said. A job taken
  // back (lease) and given to the same worker again has the same id but a
  // new attempt: the broker then tells the late answer of the old run from
  // the new run's.
  std::uint32_t attempt = 0;
};

struct Fail {
  std::uint64_t job_id = 0;
  std::string_view error;
  bool retryable = true;
  std::uint32_t attempt = 0;  // as in Done
};

struct Submit {
  std::uint64_t request_id = 0;  // echoed in ACCEPTED/ERROR, chosen by the client
  std::string_view type;
  bool wait = false;             // send a RESULT when the flow ends
  std::uint32_t max_attempts = 0;  // 0 = broker default
  // The entity the job works on: "endpoint/id"; "id" alone (the endpoint is
  // the payload's top-level key whose value is an object); "auto" (that
  // object's "id" too); empty for none.
  std::string_view entity;
  std::uint64_t delay_ms = 0;    // run no earlier than this many ms after acceptance
  std::int32_t priority = 0;     // higher first within a type; -1000..1000
  // Idempotency key: while a flow submitted with this key is unfinished, a
  // SUBMIT with the same key is ACCEPTED with that flow's id and does nothing.
  std::string_view key;
  std::uint64_t lease_ms = 0;    // how long a worker may hold a stage; 0 = type/broker default
};

struct Accepted {
  std::uint64_t request_id = 0;
  std::uint64_t flow_id = 0;
};

struct Result {
  std::uint64_t flow_id = 0;
  std::string_view outcome;    // kOutcomeDone, kOutcomeDead or kOutcomeCancelled
  std::string_view error;      // empty when done
  std::string_view last_type;  // type of the stage that finished or died
  std::uint32_t attempts = 0;  // attempts of that last stage
};

// CALL's body frame is a msgpack map with optional keys "data" and "query".
struct Call {
  std::uint64_t request_id = 0;
  std::string_view endpoint;  // "users"; "$events" replays stored events
  std::string_view method;    // create get find update patch remove
  std::optional<std::string_view> id;
};

// REPLY's body frame is the result (msgpack), nil on error.
struct Reply {
  std::uint64_t request_id = 0;
  std::uint16_t code = 0;     // 0 = success, else an ErrorCode
  std::string_view message;   // the error, empty on success
};

struct StatusRequest {
  std::uint64_t request_id = 0;
};

// Asks for a flow's RESULT by its id: the flow may have been submitted by
// another connection, or by this one before the broker restarted.
struct WaitRequest {
  std::uint64_t request_id = 0;
  std::uint64_t flow_id = 0;
};

// Tells a worker that the flow of a job it holds was cancelled: stop it.
// Sent only to workers whose READY said `cancel`.
struct CancelJob {
  std::uint64_t job_id = 0;
};

// A worker says how far a job it holds has come; the progress value (any
// msgpack, at most kMaxProgressBytes) is the payload frame.
struct JobProgress {
  std::uint64_t job_id = 0;
  std::uint32_t attempt = 0;  // as in Done
};

struct ErrorReply {
  ErrorCode code = ErrorCode::BadRequest;
  std::string_view message;
  std::uint64_t request_id = 0;  // the request it answers, 0 when none
};

// The second frame of every event on PUB (the first is the topic, the third
// the data as raw msgpack). seq is 0 for events that are not stored.
struct EventMeta {
  std::uint64_t seq = 0;
  std::uint64_t flow_id = 0;    // system job events; 0 otherwise
  std::string_view type;        // job type(s) for system events
  std::string_view error;       // why, for $mw.job.dead and $mw.worker.gone
  std::uint64_t run = 0;        // the broker run that published it ($mw.heartbeat's "broker"); 0: not said
};

// What `mw status` shows. Owned strings: this is built by the broker and
// decoded by clients, never on a hot path.
struct TypeStats {
  std::string type;
  std::uint32_t workers = 0;
  std::uint64_t queued = 0;
  std::uint64_t oldest_queued_ms = 0;  // age of the oldest queued job, 0 if none
  std::uint64_t in_flight = 0;
  std::uint64_t done = 0;
  std::uint64_t failed = 0;  // FAIL messages received
  std::uint64_t dead = 0;    // jobs that gave up
  double done_per_second = 0;  // over the last few seconds
  std::uint64_t delayed = 0;   // jobs waiting for their time (--delay, --at, retry backoff)
  std::uint32_t rate_max = 0;        // --type-rate: at most this many jobs start per period; 0: no limit
  std::uint64_t rate_period_ms = 0;
  // Queued jobs that wait for room in the type's rate window (it is full
  // now) rather than only for a worker; 0 when it has room or no limit.
  std::uint64_t rate_held = 0;
  // --max-waiting-per-type or --type-max-waiting: jobs of this type that may
  // wait (queued + delayed) before its SUBMITs are refused; 0: no limit.
  std::uint64_t max_waiting = 0;
  // SUBMITs of this type refused because the type was at its own limit
  // (max_waiting); refusals by the broker's global limits count only in
  // Stats::refused.
  std::uint64_t refused = 0;
};

struct WorkerInfo {
  std::string id;  // printable routing id
  std::vector<std::string> types;
  std::string next;
  std::string host;
  std::uint32_t pid = 0;
  std::uint32_t credit = 0;
  std::uint32_t in_flight = 0;
  std::uint64_t done = 0;
  // Slots still taken by runs whose lease expired (their jobs went back to
  // the queue): the worker is presumably still busy with them.
  std::uint32_t expired = 0;
};

struct Stats {
  std::uint64_t request_id = 0;
  std::string broker_version;
  std::uint64_t uptime_ms = 0;
  std::string store;
  std::uint64_t submitted = 0;
  std::uint64_t done = 0;      // flows finished
  std::uint64_t failed = 0;    // FAIL messages
  std::uint64_t dead = 0;      // flows that gave up
  std::uint64_t retried = 0;
  std::uint64_t requeued = 0;  // jobs handed back by lost workers
  std::uint64_t stale = 0;           // DONE/FAIL for a job its sender no longer held (ignored)
  std::uint64_t lease_expired = 0;   // jobs taken back from a worker that held them past their lease
  std::uint64_t recovered = 0;       // unfinished jobs read back from the store at start
  std::uint64_t delayed = 0;         // jobs waiting for their time (--delay, --at, retry backoff)
  std::uint64_t rss_bytes = 0;       // the broker's resident memory
  std::uint64_t waiting = 0;           // jobs queued or delayed: what --max-waiting counts
  std::uint64_t waiting_bytes = 0;     // their payload bytes
  std::uint64_t max_waiting = 0;       // the broker's limits (0: none)
  std::uint64_t max_waiting_bytes = 0;
  std::uint64_t refused = 0;           // SUBMITs refused because the broker was full (ERROR 507)
  std::uint64_t cancelled = 0;         // flows cancelled on request (remove on $flows)
  double submitted_per_second = 0;
  double done_per_second = 0;
  std::vector<TypeStats> types;
  std::vector<WorkerInfo> workers;
};

// ---- the tag frame --------------------------------------------------------

zmq::message_t encode_tag(Command command);

// Returns the command of a tag frame. Throws DecodeError (BadProtocol) for a
// frame that is not "MW1"+byte, (UnknownCommand) for an unknown byte.
Command decode_tag(const zmq::message_t& frame);

// How many frames (tag included, routing id excluded) a command carries;
// 0 for BATCH, whose count its index gives.
std::size_t frame_count(Command command) noexcept;

// ---- BATCH: several messages in one ---------------------------------------
//
// [tag BATCH][index][payload…]. The index is a msgpack array holding, for
// each message, its command byte and then its header (a bin holding the
// header frame's bytes). A message whose command carries a payload either
// has it in a frame after the index (frames in entry order), or, when its
// command byte has kInlinePayloadFlag set, as a bin right after its header
// (only to a side that said it takes them). Only commands with a header go
// in a batch (not HEARTBEAT, DISCONNECT or BATCH), 1..kMaxBatchEntries.

struct BatchItem {
  Command command{};
  std::string_view header;   // the header frame's bytes, inside the index frame
  bool inline_payload = false;
  std::string_view payload;  // inline_payload: the payload's bytes, inside the index frame
};

// Parses an index frame into `out` (cleared first). Throws DecodeError on
// anything malformed; the views point into `index`.
void decode_batch_index(const zmq::message_t& index, std::vector<BatchItem>& out);

// decode_batch_index, then checks that `payload_frames` frames followed the
// index, as many as its entries carry outside it. What a receiver of a
// BATCH calls.
void decode_batch(const zmq::message_t& index, std::size_t payload_frames, std::vector<BatchItem>& out);

// The number of messages an index frame says it holds at most (from its
// array header alone), between 1 and kMaxBatchEntries; 1 when it cannot
// tell. For budgeting work before the index is decoded. Never throws.
std::size_t batch_size_claimed(const zmq::message_t& index) noexcept;

// How many payload frames must follow an index holding `items`.
std::size_t batch_payload_count(const std::vector<BatchItem>& items) noexcept;

// Messages queued for one peer, sent as one BATCH (or as the message itself
// when only one is queued). Keeps the order they were added in.
class Batch {
 public:
  // Queues a message; `header` and `payload` (if any) are moved from.
  // REQUIRES: frame_count(command) is 2 or 3.
  void add(Command command, zmq::message_t& header, zmq::message_t* payload);
  // The same with the header as bytes (encode_view), copied into the
  // batch: no frame is made for it.
  void add(Command command, std::string_view header, zmq::message_t* payload);

  // Payloads of at most `bytes` go inside the index (kInlinePayloadFlag)
  // when more than one message is sent; 0 (the default): every payload in
  // a frame of its own, for a side that did not say it takes them.
  void inline_payloads_up_to(std::size_t bytes) noexcept { inline_limit_ = bytes; }

  std::size_t size() const noexcept { return commands_.size(); }
  bool empty() const noexcept { return commands_.empty(); }
  Command command(std::size_t i) const noexcept { return commands_[i]; }
  // The i-th message's header bytes, valid until the next add or clear.
  std::string_view header(std::size_t i) const noexcept {
    return std::string_view(header_bytes_).substr(header_starts_[i], header_sizes_[i]);
  }
  // Header and payload bytes queued, a bound for the message's size.
  std::size_t bytes() const noexcept { return bytes_; }

  // Hands the frames to `send(frame, more)` in order, tag first — BATCH
  // with its index, or the single message as it is — then empties the batch.
  template <class SendFrame>
  void drain(SendFrame&& send);

  void clear() noexcept;

 private:
  bool goes_inline(std::size_t payload_bytes) const noexcept {
    return inline_limit_ > 0 && payload_bytes <= inline_limit_;
  }
  zmq::message_t index() const;
  void add_payload(zmq::message_t* payload);
  std::vector<Command> commands_;
  // Every header's bytes, one after another: copied in (most are a few
  // dozen bytes) rather than kept as frames, which ZeroMQ allocates for
  // anything over 33 bytes. Its capacity is kept from batch to batch, up
  // to kKeptHeaderBytes.
  static constexpr std::size_t kKeptHeaderBytes = 16 * 1024;
  std::string header_bytes_;
  std::vector<std::size_t> header_starts_;
  std::vector<std::size_t> header_sizes_;
  std::vector<zmq::message_t> payloads_;  // one per command that carries one
  // The payloads' sizes, kept so that building the index asks ZeroMQ for
  // each frame's bytes once (every size() is a call into libzmq).
  std::vector<std::size_t> payload_sizes_;
  std::size_t bytes_ = 0;
  std::size_t inline_limit_ = 0;
};

template <class SendFrame>
void Batch::drain(SendFrame&& send) {
  if (commands_.empty()) return;
  struct Clear {
    Batch& b;
    ~Clear() { b.clear(); }
  } clear_on_exit{*this};
  if (commands_.size() == 1) {
    zmq::message_t tag = encode_tag(commands_[0]);
    const bool has_payload = !payloads_.empty();
    zmq::message_t header(header_bytes_.data(), header_bytes_.size());
    send(tag, true);
    send(header, has_payload);
    if (has_payload) send(payloads_[0], false);
    return;
  }
  zmq::message_t tag = encode_tag(Command::Batch);
  zmq::message_t idx = index();
  std::size_t framed = 0;  // payloads left outside the index
  for (const auto bytes : payload_sizes_) framed += !goes_inline(bytes);
  send(tag, true);
  send(idx, framed > 0);
  for (std::size_t p = 0; p < payloads_.size(); ++p)
    if (!goes_inline(payload_sizes_[p])) send(payloads_[p], --framed > 0);
}

// The 9 bytes of `d` as a msgpack float64 (0xcb, then its bits big-endian).
// What to write instead of msgpack-c's pack_double, which writes a whole
// number as an integer (1.0 as 1, -0.0 as 0): a float must come back a float.
std::array<char, 9> float64_bytes(double d) noexcept;

// ---- headers --------------------------------------------------------------

zmq::message_t encode(const Hello& m);
zmq::message_t encode(const Welcome& m);
zmq::message_t encode(const Ready& m);
zmq::message_t encode(const JobHeader& m);
zmq::message_t encode(const Done& m);
zmq::message_t encode(const Fail& m);
zmq::message_t encode(const Submit& m);
zmq::message_t encode(const Accepted& m);
zmq::message_t encode(const Result& m);
zmq::message_t encode(const StatusRequest& m);
zmq::message_t encode(const WaitRequest& m);
zmq::message_t encode(const CancelJob& m);
zmq::message_t encode(const JobProgress& m);
zmq::message_t encode(const Call& m);
zmq::message_t encode(const Reply& m);
zmq::message_t encode(const ErrorReply& m);
zmq::message_t encode(const Stats& m);
zmq::message_t encode(const EventMeta& m);

// The header's bytes without a frame: valid until this thread's next
// encode or encode_view. For the headers a broker sends per job that carry
// a type name (so are often over the 33 bytes ZeroMQ keeps in a frame
// without allocating), which a Batch copies into its index anyway
// (Batch::add with bytes).
std::string_view encode_view(const JobHeader& m);
std::string_view encode_view(const Result& m);

Hello decode_hello(const zmq::message_t& frame);
Welcome decode_welcome(const zmq::message_t& frame);
Ready decode_ready(const zmq::message_t& frame);
JobHeader decode_job(const zmq::message_t& frame);
Done decode_done(const zmq::message_t& frame);
Fail decode_fail(const zmq::message_t& frame);
Submit decode_submit(const zmq::message_t& frame);
Accepted decode_accepted(const zmq::message_t& frame);
Result decode_result(const zmq::message_t& frame);
StatusRequest decode_status(const zmq::message_t& frame);
WaitRequest decode_wait(const zmq::message_t& frame);
CancelJob decode_cancel(const zmq::message_t& frame);
JobProgress decode_progress(const zmq::message_t& frame);
Call decode_call(const zmq::message_t& frame);
Reply decode_reply(const zmq::message_t& frame);
ErrorReply decode_error(const zmq::message_t& frame);
Stats decode_stats(const zmq::message_t& frame);
EventMeta decode_event_meta(const zmq::message_t& frame);

// The first field of a header array when it is an unsigned integer (the
// request id of SUBMIT, STATUS and CALL), else 0. Never throws: used to
// address an ERROR about a header that failed to decode.
std::uint64_t peek_request_id(const zmq::message_t& frame) noexcept;

// Throws DecodeError unless `frame` holds exactly one well-formed msgpack
// value within the given size, nesting and element limits. Used on payloads
// that a peer will later decode, and by tests.
void check_msgpack(std::span<const char> bytes, std::size_t max_depth = 64);

}  // namespace mw::wire
