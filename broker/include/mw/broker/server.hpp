// mw/broker/server.hpp — the broker's sockets around a BrokerCore.
//
// One thread: a zmq::poll loop over the ROUTER (every peer), the XPUB
// (events; XPUB so the broker knows which topics anyone listens to and
// builds no event nobody wants) and a StopSignal, with the poll timeout
// taken from the core's next deadline.
//
//   mw::broker::BrokerServer server({.bind = "tcp://127.0.0.1:*", .pub = "tcp://127.0.0.1:*"});
//   std::string address = server.bound_address();   // the port picked
//   server.run(stop);                               // until stop fires
//
// Move-only (owns sockets); not thread-safe: run() on one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mw/broker/config.hpp"
#include "mw/broker/entity_service.hpp"
#include "mw/broker/hooks.hpp"
#include "mw/broker/store.hpp"
#include "mw/spin_poll.hpp"
#include "mw/stop_signal.hpp"

namespace mw::broker {

struct ServerOptions {
  std::string bind = std::string(kDefaultBrokerAddress);
  std::string pub = std::string(kDefaultPubAddress);
  BrokerConfig config;  // config.pub_address is filled in from the bound PUB address
  // The store of entities and events: config.store names it (a file path,
  // or ":memory:").
  SqliteOptions sqlite;
  EntityConfig entities;
  Hooks hooks;  // a custom broker's hooks on entity endpoints
  // While messages come steadily, the loop looks for the next one without
  // sleeping for up to this many microseconds before it sleeps in poll
  // (mw/spin_poll.hpp): more throughput and less latency under load, for
  // some CPU time. Longer than a worker's by default: long enough to catch
  // a peer's answer to what the loop just sent. 0: never spin; more than
  // kMaxSpinUs is refused (mw::UsageError).
  std::uint32_t spin_us = kDefaultBrokerSpinUs;
};

class BrokerServer {
 public:
  // Binds both sockets. Throws mw::Error with the address and the reason
  // when a bind fails (port in use, bad address).
  explicit BrokerServer(ServerOptions options);
  ~BrokerServer();
  BrokerServer(BrokerServer&&) noexcept;
  BrokerServer& operator=(BrokerServer&&) noexcept;

  // The addresses actually bound (a `*` port resolved).
  const std::string& bound_address() const noexcept;
  const std::string& pub_address() const noexcept;

  // Serves until `stop` fires, then tells peers DISCONNECT and returns.
  void run(const StopSignal& stop);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mw::broker
