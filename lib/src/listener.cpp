#include "mw/listener.hpp"

#include <zmq.hpp>

#include "mw/client.hpp"
#include "mw/log.hpp"
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
  explicit Impl(ListenerOptions options) : options_(std::move(options)), context_(1), sub_(context_, zmq::socket_type::sub) {
    if (options_.pub_address.empty()) {
      Client client({options_.broker, options_.timeout});
      options_.pub_address = client.pub_address();
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
    }
  }

  std::optional<Event> next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      while (auto e = try_receive()) {
        if (matches(e->topic)) return e;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return std::nullopt;
      zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1));
    }
  }

  const std::string& pub_address() const noexcept { return options_.pub_address; }

 private:
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
        e.data = Payload::adopt(std::string(frames[2].data<char>(), frames[2].size()));
        return e;
      } catch (const std::exception& ex) {
        log(LogLevel::warn, "listener", std::string("skipping a malformed event: ") + ex.what());
      }
    }
  }

  ListenerOptions options_;
  zmq::context_t context_;
  zmq::socket_t sub_;
};

Listener::Listener(ListenerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Listener::~Listener() = default;
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
std::optional<Event> Listener::next(std::chrono::milliseconds timeout) { return impl_->next(timeout); }
const std::string& Listener::pub_address() const noexcept { return impl_->pub_address(); }

}  // namespace mw
