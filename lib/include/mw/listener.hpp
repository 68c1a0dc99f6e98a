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
// $mw.progress (data: a running job's progress, Job::report_progress),
// $mw.job.dead (data: the dead job's payload, meta.error: why),
// $mw.worker.ready and $mw.worker.gone (meta.type: the worker's types;
// data: {worker, types, next, host, pid, credit}, and requeued for gone).
//
// Entity events (`<endpoint>.created|updated|patched|removed`) are stored
// with a sequence number. A listener given `since` first receives every
// stored event after that sequence, then the live stream, with none lost and
// none twice (the snapshot-plus-updates idea of the ZeroMQ guide's Clone
// pattern: it subscribes, has the broker publish a marker on a topic of its
// own, and once the marker arrives — so its subscriptions are live — reads
// the store; live events are then deduplicated by sequence). Without
// `since`, a listener gets what is published from when it connected on,
// never what came before.
//
// Broker restarts: the listener follows the broker's $mw.heartbeat topic. It
// logs when heartbeats stop and when they come back, and waits meanwhile
// (ZeroMQ reconnects by itself). When they come back from a restarted
// broker, a listener that follows stored events (it received one, was given
// `since`, or has a pattern that can match a stored event's topic and has
// heard a heartbeat) reads back from the store what it missed since its
// checkpoint (PROTOCOL.md §12.2), and starts its deduplication over if the
// new broker numbers events from 1 again (a :memory: store). The read-back
// waits for the broker's answer (up to `timeout`; `stop` ends it); one that
// fails is tried again at a later heartbeat, after 1, 2, 4 … heartbeat
// intervals (at most 32), and nothing is lost meanwhile. Events a slow listener lost
// to its high-water mark are not read back. Heartbeats are handed out only
// to a listener whose topics include exactly "$mw.heartbeat".
//
// The seed's Listener, by subclassing or by callbacks:
//
//   class SampleListener : public mw::Listener {
//     using Listener::Listener;
//     void created(const mw::Event& e) override { std::cout << "created: " << e.data.to_json_text() << "\n"; }
//   };
//   SampleListener listener({.topics = {"sampleendpoint.*"}});
//   listener.on("sampleendpoint.removed", [](const mw::Event& e) { … });
//   listener.run(stop);
//
// Not thread-safe: one Listener per thread. Move-only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mw/options.hpp"
#include "mw/payload.hpp"
#include "mw/stop_signal.hpp"

namespace mw {

struct ListenerOptions {
  std::string broker = default_broker_address();
  // Where to subscribe; empty = ask the broker (HELLO/WELCOME) for its PUB address.
  std::string pub_address;
  std::vector<std::string> topics;  // patterns; empty = everything
  std::chrono::milliseconds timeout{5000};  // for asking the broker
  // Replay stored events with a greater sequence first (0 = every stored
  // event); nullopt = live events only.
  std::optional<std::uint64_t> since;
  // When set, asking the broker stops the moment this fires, and the
  // constructor throws mw::Interrupted. Not owned: it must outlive the
  // constructor call.
  const StopSignal* stop = nullptr;
};

struct Event {
  std::string topic;
  std::uint64_t seq = 0;      // 0 for events that are not stored
  std::uint64_t flow_id = 0;  // system job events
  std::string type;
  std::string error;
  Payload data;
  std::uint64_t run = 0;      // the broker run that published it (changes when the broker restarts)
};

// True when `topic` matches `pattern` (`*` = any run of characters).
bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;

class Listener {
 public:
  using Callback = std::function<void(const Event&)>;

  // Subscribes at once (and with `since`, replays). Throws mw::Error when
  // the broker does not answer in time (code Unavailable: it may not be up
  // yet, and constructing again waits once more; `mw listen` does so).
  explicit Listener(ListenerOptions options);
  virtual ~Listener();
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;

  // The next matching event, or nullopt when none arrives within `timeout`.
  // Malformed events are skipped.
  [[nodiscard]] std::optional<Event> next(std::chrono::milliseconds timeout);

  // Calls `callback` for events whose topic matches `pattern` (run() only).
  Listener& on(std::string pattern, Callback callback);

  // Delivers events until `stop` fires: to the matching on() callbacks, and
  // to created/updated/patched/removed by the topic's last word. An
  // exception from a callback is logged and the loop goes on.
  void run(const StopSignal& stop);

  // The sequence of the newest stored event delivered so far (0 if none):
  // keep it to resume from with `since` after a restart.
  std::uint64_t last_seq() const noexcept;

  // Stored events that retention had dropped before a `since` replay could
  // read them (0 when nothing was missed).
  std::uint64_t missed() const noexcept;

  // What an entity listener overrides.
  virtual void created(const Event&) {}
  virtual void updated(const Event&) {}
  virtual void patched(const Event&) {}
  virtual void removed(const Event&) {}

  const std::string& pub_address() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<std::pair<std::string, Callback>> callbacks_;
};

}  // namespace mw
