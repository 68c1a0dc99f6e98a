// mw/protocol.hpp — the constants of the MW/1 wire protocol.
//
// Everything a peer needs to frame a message lives here; the body layout of
// each command is documented in docs/PROTOCOL.md and encoded in mw/wire.hpp.
//
// A message on the wire (as a DEALER sends it; the broker's ROUTER sees an
// extra routing-id frame in front):
//
//   frame 0  tag      4 bytes: 'M' 'W' '1' <command byte>
//   frame 1  header   one msgpack array (absent for HEARTBEAT and DISCONNECT)
//   frame 2  payload  raw msgpack bytes (JOB, DONE, SUBMIT, RESULT, CALL, REPLY only)
//
// BATCH carries several such messages in one: [tag][index][payload…], where
// the index lists each message's command and header (see mw/wire.hpp).
//
// On the wire: never renumber a Command or an ErrorCode; add new ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mw {

// The first three bytes of every tag frame; the fourth is the Command.
inline constexpr std::string_view kProtocolTag = "MW1";
inline constexpr std::size_t kTagFrameBytes = 4;
inline constexpr std::uint32_t kProtocolVersion = 1;

enum class Command : std::uint8_t {
  Hello = 0x01,       // any → broker: [role, name, version]
  Welcome = 0x02,     // broker → any: [pub address, heartbeat ms, broker version, max message bytes]
  Ready = 0x03,       // worker → broker: [[type…], next type, credit, host, pid, cancel]
  Job = 0x04,         // broker → worker: [job id, type, attempt, flow id, entity] + payload
  Done = 0x05,        // worker → broker: [job id, next type | nil, attempt] + result
  Fail = 0x06,        // worker → broker: [job id, error, retryable, attempt]
  Submit = 0x07,      // client → broker: [request id, type, wait, max attempts, entity] + payload
  Accepted = 0x08,    // broker → client: [request id, flow id]
  Result = 0x09,      // broker → client: [flow id, outcome, error, last type, attempts] + result
  Call = 0x0A,        // client → broker: [request id, endpoint, method, id | nil] + {data, query}
  Reply = 0x0B,       // broker → client: [request id, code (0 = ok), message | nil] + result
  Status = 0x0C,      // any → broker: [request id]
  Stats = 0x0D,       // broker → any: [request id, stats map]
  Heartbeat = 0x0E,   // both ways: no header
  Disconnect = 0x0F,  // both ways: no header
  Error = 0x10,       // broker → any: [code, message, request id]
  Batch = 0x11,       // both ways, once agreed: [index] + payloads: several messages in one
  Wait = 0x12,        // client → broker: [request id, flow id]: send me that flow's RESULT
  Cancel = 0x13,      // broker → worker that announced it: [job id]: its flow was cancelled, stop the job
  Progress = 0x14,    // worker → broker: [job id, attempt] + progress: how far a job it holds has come
};

// Returns the command's name as written in docs and logs ("READY"), or
// "UNKNOWN" for a byte that is not a Command.
std::string_view command_name(Command command) noexcept;

// Returns true when `byte` is one of the Command values above.
bool is_known_command(std::uint8_t byte) noexcept;

// Codes carried by ERROR messages and failed RESULTs. Numbers follow HTTP
// where a meaning exists so entity errors and protocol errors share one table.
enum class ErrorCode : std::uint16_t {
  BadRequest = 400,       // malformed header, wrong field types
  NotRegistered = 401,    // reserved: this broker answers unknown workers with DISCONNECT instead
  NotFound = 404,         // unknown job id, entity or endpoint
  UnknownCommand = 405,   // a tag with a command byte this broker does not know
  Conflict = 409,
  TooLarge = 413,         // a frame or message over the broker's limit
  BadProtocol = 426,      // a tag frame that is not MW1
  Unavailable = 503,      // the broker cannot serve now (client side: no answer in time)
  Internal = 500,
  NotImplemented = 501,   // a known command this broker does not serve (CALL without an entity store)
  Full = 507,             // SUBMIT refused: as many jobs wait as the broker may hold (--max-waiting)
};

// Roles a peer declares in HELLO.
inline constexpr std::string_view kRoleWorker = "worker";
inline constexpr std::string_view kRoleClient = "client";
inline constexpr std::string_view kRoleListener = "listener";

// Outcomes carried in RESULT.
inline constexpr std::string_view kOutcomeDone = "done";
inline constexpr std::string_view kOutcomeDead = "dead";
inline constexpr std::string_view kOutcomeCancelled = "cancelled";  // remove on $flows

// The reserved endpoint of unfinished and recently ended flows: get and
// find look at them, remove cancels one (PROTOCOL §11.5).
inline constexpr std::string_view kFlowsEndpoint = "$flows";

// The seed's field in a worker's result that names the next worker type.
inline constexpr std::string_view kNextWorkerTypeField = "nextWorkerType";

// Topic prefix reserved for the broker's own lifecycle events on PUB.
inline constexpr std::string_view kSystemTopicPrefix = "$mw.";
// Published every heartbeat interval while someone subscribes to it: lets a
// listener tell a silent broker from a quiet one, and a restarted broker
// from the one it knew (docs/PROTOCOL.md §12.2).
inline constexpr std::string_view kHeartbeatTopic = "$mw.heartbeat";

// Limits. A header is small by design; payloads are bounded by the broker's
// --max-message-bytes (which also sets ZMQ_MAXMSGSIZE).
inline constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr std::size_t kMaxTypeNameBytes = 128;
inline constexpr std::size_t kMaxTypesPerWorker = 64;
inline constexpr std::size_t kDefaultMaxMessageBytes = 16 * 1024 * 1024;
// The smallest --max-message-bytes a broker accepts: a message this size
// always fits, whatever the broker.
inline constexpr std::size_t kMinMaxMessageBytes = 1024;
inline constexpr std::uint32_t kMaxCredit = 10000;
// Messages one BATCH may carry (the most a peer may announce in HELLO or
// the broker in WELCOME), and how many the mw library and broker put in one.
inline constexpr std::uint32_t kMaxBatchEntries = 1024;
inline constexpr std::uint32_t kDefaultBatchEntries = 64;
// A BATCH entry whose command byte has this bit set carries its payload in
// the index, as a bin right after its header (§2.1), instead of in a frame
// of its own. Sent only to a side that said it takes them (HELLO field 4,
// WELCOME field 6).
inline constexpr std::uint8_t kInlinePayloadFlag = 0x80;
// The largest payload the mw library and broker put in an index: a frame
// costs both ends more than copying this many bytes; a larger payload keeps
// its frame (ZeroMQ sends it without a copy).
inline constexpr std::size_t kMaxInlinePayloadBytes = 1024;
// SUBMIT options (§7.1): delay and lease at most ten years, priority in
// [-1000, 1000], idempotency key at most 256 bytes.
inline constexpr std::uint64_t kMaxSubmitDelayMs = 315'360'000'000ULL;
inline constexpr std::int64_t kMaxPriority = 1000;
inline constexpr std::size_t kMaxKeyBytes = 256;
// A PROGRESS value (§5.18): a few numbers or words, kept while the job runs.
inline constexpr std::size_t kMaxProgressBytes = 4096;

// Defaults shared by the broker and its peers.
inline constexpr std::uint32_t kDefaultHeartbeatMs = 1000;
inline constexpr std::uint32_t kHeartbeatLiveness = 3;  // missed intervals before a peer is dead
inline constexpr std::uint32_t kDefaultMaxAttempts = 5;
inline constexpr std::string_view kDefaultBrokerAddress = "tcp://127.0.0.1:5555";
inline constexpr std::string_view kDefaultPubAddress = "tcp://127.0.0.1:5556";
inline constexpr std::string_view kBrokerEnvVar = "MW_BROKER";

// Reads a flow id written as ACCEPTED gives it and mw submit prints it: a
// positive decimal integer, nothing around it. Throws mw::Error (400)
// quoting the text otherwise.
std::uint64_t parse_flow_id(std::string_view text);

// What is wrong with `endpoint` as an entity endpoint's name, or "" when
// nothing is: 1 to 64 letters, digits, `_` and `-` (PROTOCOL.md §11.1; the
// reserved endpoints, whose names start with `$`, are not for users to make).
std::string endpoint_name_problem(std::string_view endpoint);

// What is wrong with `type` as a job type, or "" when nothing is. A type is
// 1 to kMaxTypeNameBytes bytes of UTF-8 without spaces, commas or control
// characters (Unicode's too: no-break spaces, line separators, C1
// controls, bidirectional overrides, zero-width characters): it is one
// word in `mw status`, and a worker's --type takes a comma-separated list. The answer is one line that quotes the type
// (escaped where it cannot be shown), e.g. "type 'a,b' holds a comma: a
// type is one word of text, without spaces, commas or control characters".
std::string type_name_problem(std::string_view type);

// The types of comma-separated lists, as a worker's --type takes them
// (one list per time the flag was given): {"resize,thumb", "crop"} gives
// {"resize", "thumb", "crop"}. Throws mw::UsageError naming `flag` when no
// list is given, a list or an item is empty ("", "a,,b", "q,"), an item is
// no type (type_name_problem), or a type comes twice.
std::vector<std::string> split_types(const std::vector<std::string>& lists, std::string_view flag);

// The other way: {"resize", "thumb"} gives "resize,thumb".
std::string joined_types(const std::vector<std::string>& types);

}  // namespace mw
