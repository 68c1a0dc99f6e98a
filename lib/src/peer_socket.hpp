// peer_socket.hpp (internal) — a DEALER connected to the broker that speaks
// MW/1 frames. Shared by Worker, Client and Listener.
//
// Batching: once the broker's WELCOME says it takes BATCH (take_welcome),
// send() queues messages with a header and flush() sends them as one BATCH;
// the queue is also flushed when it is full, and before any message that
// cannot be batched, so the broker sees everything in the order it was sent.
// A BATCH from the broker is handed out by try_recv() one message at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "mw/protocol.hpp"
#include "mw/wire.hpp"

namespace mw::detail {

struct Inbound {
  Command command{};
  // Empty for HEARTBEAT / DISCONNECT. For a message that came in a BATCH,
  // the header, and a payload that came inside the index, point into the
  // socket's copy of the batch: valid until the next BATCH arrives, so
  // decode or copy them before calling try_recv() again.
  zmq::message_t header;
  zmq::message_t payload;  // empty unless the command carries one
};

class PeerSocket {
 public:
  // What this library takes in one BATCH from the broker (told in HELLO).
  static constexpr std::uint32_t kBatchAccepted = kMaxBatchEntries;

  // Connects at once (ZeroMQ connects in the background and reconnects by
  // itself). Throws mw::Error for an address ZeroMQ rejects.
  PeerSocket(zmq::context_t& context, std::string address);

  // Closes the socket, dropping anything unsent, and connects a fresh one:
  // the broker sees a new peer, and batching waits for its WELCOME again.
  void reset();

  // Sends without blocking, or queues for the next BATCH (see above); returns
  // false if the message could not be queued (high-water mark reached).
  // `header`/`payload` are moved from.
  bool send(Command command, zmq::message_t* header = nullptr, zmq::message_t* payload = nullptr);

  // Sends what send() queued. Call before waiting for an answer.
  bool flush();
  bool has_queued() const noexcept { return !outbox_.empty(); }
  // flush() if the oldest queued message has waited at least `age`.
  bool flush_older_than(std::chrono::steady_clock::duration age);

  // What the broker's WELCOME says about sending to it: messages per BATCH
  // it takes (0: none; this side sends at most kDefaultBatchEntries), and
  // the largest message it takes, within half of which a BATCH then stays,
  // so that batching never makes a message the broker refuses out of
  // messages it would take. forget_welcome(): until the next WELCOME (the
  // broker may not be the one we knew), no BATCH and no limit known.
  void take_welcome(const wire::Welcome& welcome) noexcept;
  void forget_welcome() noexcept;
  // The broker's limit from WELCOME; 0: not told yet.
  std::uint64_t max_message_bytes() const noexcept { return max_message_bytes_; }

  // The bytes the broker counts against its limit for a message with
  // these frames (tag, header, payload).
  static std::size_t message_bytes(const zmq::message_t* header, const zmq::message_t* payload) noexcept;

  // Receives one message if one is waiting. Malformed messages from the
  // broker are logged and skipped (returns nullopt as for "nothing yet"
  // but `malformed` counts them).
  [[nodiscard]] std::optional<Inbound> try_recv();

  zmq::socket_t& socket() noexcept { return socket_; }
  const std::string& address() const noexcept { return address_; }
  std::uint64_t malformed() const noexcept { return malformed_; }

 private:
  void open();
  bool send_now(Command command, zmq::message_t* header, zmq::message_t* payload);
  std::optional<Inbound> next_from_batch();
  zmq::context_t& context_;
  std::string address_;
  zmq::socket_t socket_;
  std::uint64_t malformed_ = 0;

  std::uint32_t batch_limit_ = 0;  // 0: the broker takes no BATCH (yet)
  std::uint64_t max_message_bytes_ = 0;  // 0: not told yet
  std::size_t max_batch_bytes_;          // bytes queued before a BATCH is sent regardless of its count
  wire::Batch outbox_;
  std::chrono::steady_clock::time_point oldest_queued_{};  // when outbox_ last went from empty to not

  // The BATCH being handed out: its frames and the next entry.
  zmq::message_t in_index_;
  std::vector<wire::BatchItem> in_items_;
  std::vector<zmq::message_t> in_payloads_;
  std::size_t in_next_ = 0;
  std::size_t in_next_payload_ = 0;
};

}  // namespace mw::detail
