// mw/broker/config.hpp — everything that tunes a broker, with its default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mw/protocol.hpp"

namespace mw::broker {

struct BrokerConfig {
  // Interval of heartbeats in both directions. A peer silent for
  // heartbeat_ms × liveness is dropped and its jobs in flight are requeued.
  std::uint32_t heartbeat_ms = kDefaultHeartbeatMs;
  std::uint32_t liveness = kHeartbeatLiveness;

  // Largest message accepted (sets ZMQ_MAXMSGSIZE too: bigger ones never
  // reach the core, zmq drops the connection).
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;

  // Retries of a FAILed job wait retry_base_ms × 2^(attempt−1), capped at
  // retry_max_ms, with ±25 % jitter so a burst of failures does not retry in
  // lockstep.
  std::uint32_t retry_base_ms = 200;
  std::uint32_t retry_max_ms = 60'000;
  std::uint32_t default_max_attempts = kDefaultMaxAttempts;

  // Told to peers in WELCOME; the address listeners SUBscribe to.
  std::string pub_address = std::string(kDefaultPubAddress);

  // Shown in status: ":memory:" or the store's path.
  std::string store = ":memory:";
};

}  // namespace mw::broker
