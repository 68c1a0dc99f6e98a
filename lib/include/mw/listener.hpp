// mw/listener.hpp — receive the broker's events.
//
// Events are published on the broker's PUB socket as [topic][meta][data].
// A Listener subscribes to topic patterns: a pattern is matched against the
// whole topic, `*` matching any run of characters ("*.created",
// "orders.*", "$mw.flow.done"); an empty pattern list means every topic.
//
//   mw::Listener listener({.topics = {"$mw.flow.*"}});
//   while (auto event = listener.next(std::chrono::seconds(1)))
//     std::cout << event->topic << " " << event->data.to_json_text() << "\n";
//
// System topics (prefix "$mw."): $mw.flow.done (data: the flow's result),
// $mw.job.dead (data: the dead job's payload, meta.error: why),
// $mw.worker.ready and $mw.worker.gone (meta.type: the worker's types).
//
// PUB semantics: a listener gets what is published while it is connected;
// events published before it subscribed are not replayed.
//
// Not thread-safe: one Listener per thread. Move-only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mw/options.hpp"
#include "mw/payload.hpp"

namespace mw {

struct ListenerOptions {
  std::string broker = default_broker_address();
  // Where to subscribe; empty = ask the broker (HELLO/WELCOME) for its PUB address.
  std::string pub_address;
  std::vector<std::string> topics;  // patterns; empty = everything
  std::chrono::milliseconds timeout{5000};  // for asking the broker
};

struct Event {
  std::string topic;
  std::uint64_t seq = 0;      // 0 for events that are not stored
  std::uint64_t flow_id = 0;  // system job events
  std::string type;
  std::string error;
  Payload data;
};

// True when `topic` matches `pattern` (`*` = any run of characters).
bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;

class Listener {
 public:
  // Subscribes at once. Throws mw::Error when the broker cannot be asked
  // for its PUB address in time.
  explicit Listener(ListenerOptions options);
  ~Listener();
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;

  // The next matching event, or nullopt when none arrives within `timeout`.
  // Malformed events are skipped.
  [[nodiscard]] std::optional<Event> next(std::chrono::milliseconds timeout);

  const std::string& pub_address() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mw
