#include "mw/listener.hpp"

#include <algorithm>
#include <deque>
#include <random>
#include <unordered_set>
#include <utility>

#include <zmq.hpp>

#include "mw/client.hpp"
#include "mw/log.hpp"
#include "mw/protocol.hpp"
#include "mw/wire.hpp"

namespace mw {

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
  // Iterative glob with backtracking to the last '*': linear in practice,
  // no recursion on hostile patterns.
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < topic.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == topic[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

class Listener::Impl {
 public:
  explicit Impl(ListenerOptions options)
      : options_(std::move(options)), context_(1), sub_(context_, zmq::socket_type::sub) {
    std::optional<Client> client;
    if (options_.pub_address.empty() || options_.since) {
      client.emplace(ClientOptions{options_.broker, options_.timeout, options_.stop});
      if (options_.pub_address.empty()) options_.pub_address = client->pub_address();
    }
    sub_.set(zmq::sockopt::linger, 0);
    try {
      sub_.connect(options_.pub_address);
    } catch (const zmq::error_t& e) {
      throw Error("cannot subscribe to '" + options_.pub_address + "': " + e.what(), ErrorCode::BadRequest);
    }
    if (options_.topics.empty()) {
      sub_.set(zmq::sockopt::subscribe, "");
    } else {
      // SUB filters by prefix: subscribe to what precedes the first '*',
      // then match the whole pattern here.
      for (const auto& pattern : options_.topics) sub_.set(zmq::sockopt::subscribe, pattern.substr(0, pattern.find('*')));
      sub_.set(zmq::sockopt::subscribe, std::string(kHeartbeatTopic));
    }
    wants_heartbeats_ = std::find(options_.topics.begin(), options_.topics.end(), kHeartbeatTopic) != options_.topics.end();
    // Stored events are the entities' (`<endpoint>.<event>`); the broker's
    // own topics ($mw.*) are never stored.
    hears_stored_topics_ = options_.topics.empty() ||
                           std::any_of(options_.topics.begin(), options_.topics.end(),
                                       [](const std::string& pattern) { return !pattern.starts_with("$mw."); });
    if (options_.since) {
      following_stored_ = true;
      checkpoint_known_ = true;
      // Everything up to the store's end is now in hand (queued).
      checkpoint_seq_ = replay(*client, *options_.since);
    }
  }

  std::uint64_t last_seq() const noexcept { return last_seq_; }
  std::uint64_t missed() const noexcept { return missed_; }

  // Live events that arrived while replaying, then the stored ones are
  // handed out first by next().
  std::optional<Event> take_queued() {
    while (!queued_.empty()) {
      Event e = std::move(queued_.front());
      queued_.pop_front();
      if (accept(e)) return e;
    }
    return std::nullopt;
  }

  std::optional<Event> next(std::chrono::milliseconds timeout) {
    if (auto e = take_queued()) return e;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      while (auto e = try_receive()) {
        if (e->topic == kHeartbeatTopic) {
          on_heartbeat(*e);
          if (!queued_.empty()) {
            if (wants_heartbeats_) queued_.push_back(std::move(*e));  // after what the read-back brought
            return take_queued_or_next(deadline);
          }
          if (!wants_heartbeats_) continue;
        }
        // A stored event from a broker run other than the one we know: the
        // broker restarted, and what it published before we reconnected
        // comes first. It waits (with those behind it) for that run's
        // first heartbeat, which says how to read the gap back.
        if (e->seq != 0 && (!held_.empty() || (e->run != 0 && known_run() != 0 && e->run != known_run()))) {
          if (held_.empty()) held_since_ = std::chrono::steady_clock::now();
          held_.push_back(std::move(*e));
          restart_pending_ = true;  // until a read-back covers the gap, whatever is accepted meanwhile
          continue;
        }
        if (accept(*e)) return e;
      }
      const auto now = std::chrono::steady_clock::now();
      note_silence(now);
      if (!held_.empty() && now - held_since_ > heartbeat_interval_ * kHeartbeatLiveness) {
        release_held();  // no heartbeat came to say more: hand them out as they are
        if (!queued_.empty()) return take_queued_or_next(deadline);
      }
      if (now >= deadline) return std::nullopt;
      zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1));
    }
  }

  const std::string& pub_address() const noexcept { return options_.pub_address; }

 private:
  // After a replay: what it queued first, else keep waiting until `deadline`.
  std::optional<Event> take_queued_or_next(std::chrono::steady_clock::time_point deadline) {
    if (auto e = take_queued()) return e;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return std::nullopt;
    return next(std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }

  // A heartbeat from the broker (§12.2). Between heartbeats of one broker
  // run, the events accepted since the last one are noted (a checkpoint).
  // From another run, the broker restarted: what it published before this
  // SUB reconnected never reached us, so a listener that follows stored
  // events reads them back from the checkpoint on, as a resume does,
  // skipping those it had; a broker without a durable store numbers from 1
  // again, so then from 0 (and the few events of the new run accepted
  // before this heartbeat may come twice). A failed read-back is tried
  // again at a later heartbeat (backing off), at once for another run.
  void on_heartbeat(const Event& e) {
    handle_heartbeat(e);
    // After whatever the read-back queued: the order of the store. While a
    // failed read-back is pending they wait for the next one (or the
    // silence limit, should heartbeats stop).
    if (!restart_pending_) release_held();
  }

  // Events held back for a run's first heartbeat, into the queue (where
  // accept() drops what a read-back delivered already).
  void release_held() {
    for (auto& held : held_) queued_.push_back(std::move(held));
    held_.clear();
  }

  void handle_heartbeat(const Event& e) {
    std::uint64_t instance = 0, last = 0, published = 0, interval = 0;
    bool durable = false, says_published = false;
    try {
      const auto data = e.data.to_json();
      instance = data.at("broker").get<std::uint64_t>();
      last = data.value("last_seq", std::uint64_t{0});
      says_published = data.contains("published_seq");  // an older broker does not
      published = data.value("published_seq", std::uint64_t{0});
      durable = data.value("durable", false);
      interval = data.value("interval_ms", std::uint64_t{0});
    } catch (const std::exception& ex) {
      log(LogLevel::warn, "listener", std::string("skipping a malformed heartbeat: ") + ex.what());
      return;
    }
    last_heartbeat_ = std::chrono::steady_clock::now();
    if (interval) heartbeat_interval_ = std::chrono::milliseconds(interval);
    if (silent_) {
      silent_ = false;
      log(LogLevel::info, "listener", "the broker at " + options_.pub_address + " is back");
      // The same run back after a silence (the network, not a restart):
      // what it published meanwhile did not reach us either.
      if (broker_instance_ != 0 && instance == broker_instance_) restart_pending_ = true;
    }
    const bool first = broker_instance_ == 0;
    // A first heartbeat behind what we saw, or of another run than the
    // events we had: a broker run we never heard from.
    const bool restarted = restart_pending_ || (first ? last < last_seq_ || (run_seen_ != 0 && run_seen_ != instance)
                                                      : instance != broker_instance_);
    if (!restarted) {
      broker_instance_ = instance;
      // Every stored event up to `published` went out on this socket before
      // the heartbeat: those we subscribe to have reached us, or came before
      // we did. So a restart reads back from here, and a listener started
      // without `since` never reads back what preceded it.
      checkpoint_seq_ = std::max({checkpoint_seq_, last_seq_, published});
      checkpoint_known_ = checkpoint_known_ || says_published;
      seen_since_checkpoint_.clear();
      return;
    }
    // Only another run numbers its events anew (a :memory: one from 1).
    const bool same_run = broker_instance_ != 0 && instance == broker_instance_;
    const bool renumbered = !same_run && (!durable || last < checkpoint_seq_);
    restart_pending_ = true;  // until the read-back below succeeds
    if (!following_stored_ && !(checkpoint_known_ && hears_stored_topics_)) {
      broker_instance_ = instance;
      restart_pending_ = false;  // nothing of ours to read back
      if (renumbered) last_seq_ = checkpoint_seq_ = 0;
      return;
    }
    // After a failed read-back, the next waits a while (doubling): each try
    // may block next() for the call timeout, and a broker whose events
    // reach us but whose requests do not must not keep us from our events.
    // Another run is tried at once: it may well answer.
    if (instance != read_back_failed_on_) read_back_failures_ = 0;
    if (read_back_failures_ > 0 && std::chrono::steady_clock::now() < next_read_back_) return;
    const std::uint64_t from = renumbered ? 0 : checkpoint_seq_;
    log(LogLevel::info, "listener",
        std::string(same_run ? "the broker's heartbeats came back after a silence" : "the broker restarted") +
            "; reading back its stored events after " + std::to_string(from));
    const std::uint64_t had = last_seq_;
    if (!renumbered) skip_.insert(seen_since_checkpoint_.begin(), seen_since_checkpoint_.end());
    last_seq_ = from;
    try {
      Client client(ClientOptions{options_.broker, options_.timeout, options_.stop});
      const std::uint64_t read_to = replay(client, from);
      broker_instance_ = instance;
      restart_pending_ = false;
      read_back_failures_ = 0;
      // Held events of a run that is gone (it died before its first
      // heartbeat): a file store's read-back had them; a :memory: one's
      // numbers now mean other events.
      held_.erase(std::remove_if(held_.begin(), held_.end(),
                                 [&](const Event& h) { return h.run != 0 && h.run != instance; }),
                  held_.end());
      checkpoint_seq_ = read_to;  // everything up to there is in hand
      checkpoint_known_ = true;
      seen_since_checkpoint_.clear();
    } catch (const std::exception& ex) {
      // restart_pending_ stays: a later heartbeat tries again from the same
      // checkpoint, skipping what is accepted meanwhile (still noted).
      const auto wait = heartbeat_interval_ * (1u << std::min(read_back_failures_, kMaxReadBackDoublings));
      ++read_back_failures_;
      read_back_failed_on_ = instance;
      next_read_back_ = std::chrono::steady_clock::now() + wait;
      if (!dynamic_cast<const Interrupted*>(&ex))
        log(LogLevel::warn, "listener",
            "cannot read back the events missed over the restart (trying again in " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()) +
                " ms): " + ex.what());
      last_seq_ = had;
      skip_.clear();
      for (auto& live : live_) queued_.push_back(std::move(live));
      live_.clear();
    }
  }

  // Says once that heartbeats stopped (the broker is down, or the network):
  // the listener keeps waiting, and ZeroMQ reconnects when it is back.
  void note_silence(std::chrono::steady_clock::time_point now) {
    if (silent_ || broker_instance_ == 0) return;
    const auto allowed = heartbeat_interval_ * kHeartbeatLiveness;
    if (now - last_heartbeat_ <= allowed) return;
    silent_ = true;
    log(LogLevel::warn, "listener",
        "no heartbeat from the broker at " + options_.pub_address + " for " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(allowed).count()) +
            " ms; waiting for it to come back");
  }

  // Deduplicates stored events by sequence and filters by pattern.
  bool accept(const Event& e) {
    // Heartbeats that arrived during a replay come this way too.
    if (e.topic == kHeartbeatTopic && !wants_heartbeats_) return false;
    if (!matches(e.topic)) return false;
    if (e.seq != 0) {
      if (!skip_.empty() && skip_.erase(e.seq)) return false;  // had before a restart's read-back
      if (e.seq <= last_seq_) return false;
      // The first stored event before any heartbeat: where this listener
      // came in, should the broker restart before a heartbeat says more.
      if (!checkpoint_known_) {
        checkpoint_seq_ = e.seq - 1;
        checkpoint_known_ = true;
      }
      last_seq_ = e.seq;
      if (e.run != 0) run_seen_ = e.run;
      following_stored_ = true;
      // Bounded: a listener starved of heartbeats (an older broker sends
      // none) must not grow forever.
      if (e.seq > checkpoint_seq_ && seen_since_checkpoint_.size() < kMaxSeenSinceCheckpoint)
        seen_since_checkpoint_.push_back(e.seq);
    }
    return true;
  }

  // Returns the seq the store was read to (`since` when it held nothing after).
  std::uint64_t replay(Client& client, std::uint64_t since) {
    // 1. Have the broker publish a marker on a topic of our own: once it
    //    arrives, every subscription above is live at the broker.
    std::random_device random;
    const std::string mark = std::string(kMarkTopic) + std::to_string(random()) + std::to_string(random());
    sub_.set(zmq::sockopt::subscribe, mark);
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    bool marked = false;
    while (!marked) {
      nlohmann::ordered_json data = {{"topic", mark}};
      client.call("$mark", "create", std::nullopt, data);
      const auto retry_at = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
      while (!marked && std::chrono::steady_clock::now() < retry_at) {
        zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(10));
        while (auto e = try_receive()) {
          if (e->topic == mark) {
            marked = true;
            if (e->run != 0) run_seen_ = e->run;  // the run we now follow, heartbeat or not
          } else {
            live_.push_back(std::move(*e));
          }
        }
      }
      if (!marked && std::chrono::steady_clock::now() >= deadline)
        throw Error("the broker did not echo our marker in time; cannot replay without risking a gap",
                    ErrorCode::Unavailable);
    }
    sub_.set(zmq::sockopt::unsubscribe, mark);

    // 2. Read the store from `since` until caught up.
    std::uint64_t cursor = since;
    std::uint64_t store_last = since;
    for (;;) {
      nlohmann::ordered_json query = {{"since", cursor}};
      const auto page = client.call("$events", "find", std::nullopt, nullptr, query);
      const auto first = page.value("first_seq", std::uint64_t{0});
      store_last = page.value("last_seq", std::uint64_t{0});
      if (cursor == since && first > since + 1) missed_ = first - since - 1;
      // None kept at all (first_seq 0): every event after `since` was dropped.
      if (cursor == since && first == 0 && store_last > since) missed_ = store_last - since;
      const auto& events = page.at("events");
      for (const auto& item : events) {
        Event e;
        e.seq = item.at(0).get<std::uint64_t>();
        e.topic = item.at(1).get<std::string>();
        e.data = Payload::from_json(item.at(3));
        cursor = e.seq;
        queued_.push_back(std::move(e));
      }
      if (events.empty() || cursor >= store_last) break;
    }
    // 3. Then what arrived live meanwhile; accept() drops what the store gave.
    for (auto& e : live_) queued_.push_back(std::move(e));
    live_.clear();
    return std::min(cursor, store_last);  // a `since` past the store's end is no place to stand
  }

  bool matches(std::string_view topic) const {
    if (options_.topics.empty()) return true;
    for (const auto& pattern : options_.topics)
      if (topic_matches(pattern, topic)) return true;
    return false;
  }

  // One event if one is waiting; skips malformed ones.
  std::optional<Event> try_receive() {
    for (;;) {
      zmq::message_t frames[3];
      if (!sub_.recv(frames[0], zmq::recv_flags::dontwait)) return std::nullopt;
      int count = 1;
      while (frames[count - 1].more()) {
        if (count == 3) {
          zmq::message_t scratch;
          do (void)sub_.recv(scratch); while (scratch.more());
          count = 4;
          break;
        }
        (void)sub_.recv(frames[count++]);
      }
      if (count != 3) {
        log(LogLevel::warn, "listener", "skipping an event that is not [topic][meta][data]");
        continue;
      }
      try {
        const auto meta = wire::decode_event_meta(frames[1]);
        Event e;
        e.topic.assign(frames[0].data<char>(), frames[0].size());
        e.seq = meta.seq;
        e.flow_id = meta.flow_id;
        e.type = meta.type;
        e.error = meta.error;
        e.run = meta.run;
        e.data = Payload::adopt(std::string(frames[2].data<char>(), frames[2].size()));
        return e;
      } catch (const std::exception& ex) {
        log(LogLevel::warn, "listener", std::string("skipping a malformed event: ") + ex.what());
      }
    }
  }

  // The broker run we know: from its heartbeats, else from its events.
  std::uint64_t known_run() const noexcept { return broker_instance_ != 0 ? broker_instance_ : run_seen_; }

  static constexpr std::string_view kMarkTopic = "$mw.mark.";
  static constexpr std::size_t kMaxSeenSinceCheckpoint = 1'000'000;
  // A failed read-back waits 1, 2, 4 … heartbeat intervals before the next, at most 32.
  static constexpr std::uint32_t kMaxReadBackDoublings = 5;

  ListenerOptions options_;
  zmq::context_t context_;
  zmq::socket_t sub_;
  std::deque<Event> queued_;
  std::vector<Event> live_;
  std::uint64_t last_seq_ = 0;
  std::uint64_t missed_ = 0;
  // Heartbeats ($mw.heartbeat): handed out only to a listener that names
  // that topic; otherwise they only tell us about the broker.
  bool wants_heartbeats_ = false;
  bool following_stored_ = false;  // a stored event has been accepted (or `since` was given)
  bool hears_stored_topics_ = false;  // a pattern may match a stored event's topic
  std::uint64_t broker_instance_ = 0;  // 0: no heartbeat yet
  // Where a read-back after a restart starts: `since`, then the first
  // stored event accepted, then at each heartbeat of this run what it says
  // was published (or last_seq_, if more).
  std::uint64_t checkpoint_seq_ = 0;
  bool checkpoint_known_ = false;
  std::uint64_t run_seen_ = 0;  // the broker run of the last live stored event accepted, or of a marker
  // An event of another run came (held), or a restart's read-back failed:
  // a heartbeat reads back (after a failure, once the backoff allows),
  // whatever was accepted in between.
  bool restart_pending_ = false;
  // Failed read-backs in a row against one broker run, that run, and when
  // the next may be tried.
  std::uint32_t read_back_failures_ = 0;
  std::uint64_t read_back_failed_on_ = 0;
  std::chrono::steady_clock::time_point next_read_back_{};
  std::vector<std::uint64_t> seen_since_checkpoint_;  // stored events accepted since
  std::unordered_set<std::uint64_t> skip_;            // a read-back's events we had already
  std::vector<Event> held_;  // stored events of an unknown broker run, waiting for its heartbeat
  std::chrono::steady_clock::time_point held_since_{};
  std::chrono::steady_clock::time_point last_heartbeat_{};
  std::chrono::milliseconds heartbeat_interval_{kDefaultHeartbeatMs};
  bool silent_ = false;
};

Listener::Listener(ListenerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Listener& Listener::on(std::string pattern, Callback callback) {
  callbacks_.emplace_back(std::move(pattern), std::move(callback));
  return *this;
}

void Listener::run(const StopSignal& stop) {
  while (!stop.fired()) {
    auto event = next(std::chrono::milliseconds(100));
    if (!event) continue;
    try {
      for (const auto& [pattern, callback] : callbacks_)
        if (topic_matches(pattern, event->topic)) callback(*event);
      const auto dot = event->topic.rfind('.');
      const std::string_view word = dot == std::string::npos ? std::string_view() : std::string_view(event->topic).substr(dot + 1);
      if (word == "created") created(*event);
      else if (word == "updated") updated(*event);
      else if (word == "patched") patched(*event);
      else if (word == "removed") removed(*event);
    } catch (const std::exception& e) {
      log(LogLevel::warn, "listener", "callback for " + event->topic + " failed: " + e.what());
    }
  }
}

std::uint64_t Listener::last_seq() const noexcept { return impl_->last_seq(); }
std::uint64_t Listener::missed() const noexcept { return impl_->missed(); }
Listener::~Listener() = default;
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
std::optional<Event> Listener::next(std::chrono::milliseconds timeout) { return impl_->next(timeout); }
const std::string& Listener::pub_address() const noexcept { return impl_->pub_address(); }

}  // namespace mw
