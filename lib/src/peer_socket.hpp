// peer_socket.hpp (internal) — a DEALER connected to the broker that speaks
// MW/1 frames. Shared by Worker, Client and Listener.
#pragma once

#include <optional>
#include <string>

#include <zmq.hpp>

#include "mw/protocol.hpp"

namespace mw::detail {

struct Inbound {
  Command command{};
  zmq::message_t header;   // empty for HEARTBEAT / DISCONNECT
  zmq::message_t payload;  // empty unless the command carries one
};

class PeerSocket {
 public:
  // Connects at once (ZeroMQ connects in the background and reconnects by
  // itself). Throws mw::Error for an address ZeroMQ rejects.
  PeerSocket(zmq::context_t& context, std::string address);

  // Closes the socket, dropping anything unsent, and connects a fresh one:
  // the broker sees a new peer.
  void reset();

  // Sends without blocking; returns false if the message could not be
  // queued (high-water mark reached). `header`/`payload` are moved from.
  bool send(Command command, zmq::message_t* header = nullptr, zmq::message_t* payload = nullptr);

  // Receives one message if one is waiting. Malformed messages from the
  // broker are logged and skipped (returns nullopt as for "nothing yet"
  // but `malformed` counts them).
  [[nodiscard]] std::optional<Inbound> try_recv();

  zmq::socket_t& socket() noexcept { return socket_; }
  const std::string& address() const noexcept { return address_; }
  std::uint64_t malformed() const noexcept { return malformed_; }

 private:
  void open();
  zmq::context_t& context_;
  std::string address_;
  zmq::socket_t socket_;
  std::uint64_t malformed_ = 0;
};

}  // namespace mw::detail
