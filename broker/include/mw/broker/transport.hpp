// mw/broker/transport.hpp — how the broker core reaches its peers.
//
// The core decides what to send; a Transport delivers it. The real one is a
// ROUTER and a PUB socket (mw/broker/server.hpp); tests use a recording fake,
// so the whole broker logic runs without sockets.
#pragma once

#include <string_view>

#include <zmq.hpp>

#include "mw/protocol.hpp"

namespace mw::broker {

enum class SendResult {
  Sent,
  Unreachable,  // the peer is gone (ZMQ_ROUTER_MANDATORY said EHOSTUNREACH)
  WouldBlock,   // the peer's pipe is full; nothing was sent
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Sends one message to `peer`: the tag for `command`, then `header` unless
  // it is empty and the command has none, then `payload` if not null. Never
  // blocks. Takes the frames' contents (they are moved from).
  virtual SendResult send(std::string_view peer, Command command, zmq::message_t* header,
                          zmq::message_t* payload) = 0;

  // As send(), for a message that may wait up to `hold_ms` for company: a
  // transport that batches may hold it back that long, unless something
  // else for the peer comes first (then it goes along, in order). The
  // broker uses it for ACCEPTED to a submitter that waits for the RESULT
  // anyway. By default: send().
  virtual SendResult send_lazy(std::string_view peer, Command command, zmq::message_t* header, zmq::message_t* payload,
                               std::uint32_t /*hold_ms*/) {
    return send(peer, command, header, payload);
  }

  // As send_lazy(), with the header as bytes (wire::encode_view), read
  // before this returns: a transport that batches copies them into the
  // batch, so no frame is made for them. The broker sends its JOBs and
  // the RESULT to a flow's submitter this way (headers with a type name,
  // often over the 33 bytes a frame holds without allocating). By default:
  // a frame of the bytes, then send_lazy().
  virtual SendResult send_bytes(std::string_view peer, Command command, std::string_view header,
                                zmq::message_t* payload, std::uint32_t hold_ms) {
    zmq::message_t frame(header.data(), header.size());
    return send_lazy(peer, command, &frame, payload, hold_ms);
  }

  // The peer takes BATCH messages of up to `entries` messages (its HELLO
  // said so): the transport may queue what is sent to it and deliver it in
  // batches, in order, reporting failures through
  // BrokerCore::on_undelivered. 0 or 1: send it each message as it comes.
  // `inline_payloads`: it also takes payloads inside a BATCH's index
  // (kInlinePayloadFlag), which saves a frame each.
  virtual void set_batch_limit(std::string_view /*peer*/, std::uint32_t /*entries*/, bool /*inline_payloads*/) {}

  // The core has forgotten the peer: drop anything still queued for it.
  virtual void forget(std::string_view /*peer*/) {}

  // True when some subscriber's prefix matches `topic`, so an event is
  // worth building.
  virtual bool has_subscribers(std::string_view topic) const = 0;

  // Publishes [topic][meta][data] on PUB. Never blocks; drops for slow
  // subscribers (PUB semantics).
  virtual void publish(std::string_view topic, zmq::message_t& meta, zmq::message_t& data) = 0;
};

}  // namespace mw::broker
