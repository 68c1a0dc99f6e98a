#include "mw/broker/server.hpp"

#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <set>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "mw/broker/core.hpp"
#include "mw/broker/job_queue.hpp"
#include "mw/broker/worker_registry.hpp"
#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/options.hpp"
#include "mw/spin_poll.hpp"

namespace mw::broker {
namespace {

// Messages with more frames than any command has (routing id, BATCH tag,
// index and a payload per entry) are answered ERROR; their extra frames are
// read and dropped without being kept.
constexpr std::size_t kMaxFrames = 3 + kMaxBatchEntries;
// Messages (a BATCH counts its entries) handled per wake-up before timers
// get a turn and queued batches go out, so a flood on the ROUTER cannot
// starve heartbeats.
constexpr std::size_t kTurnMessages = 512;
// Bytes queued for one peer before its batch goes out whatever its count:
// far below any --max-message-bytes, so a batch never outgrows the limit
// unless its one message does.
constexpr std::size_t kMaxBatchBytes = 256 * 1024;
constexpr int kSendHighWaterMark = 100'000;
constexpr int kListenBacklog = 4096;
constexpr int kShutdownLingerMs = 200;

std::int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// Ids stay below 2^53 (exact in JSON numbers everywhere) and do not repeat
// across restarts unless a broker issued over 1024 ids per millisecond of its life.
std::uint64_t first_job_id() {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  return static_cast<std::uint64_t>(ms) << 10;
}

std::string bind_or_throw(zmq::socket_t& socket, const std::string& address, const char* what) {
  check_bind_address(address, what);
  try {
    socket.bind(address);
  } catch (const zmq::error_t& e) {
    throw Error(std::string("cannot bind ") + what + " to " + address + ": " + e.what() +
                    (e.num() == EADDRINUSE
                         ? " (another broker running, or --bind and --pub on one port? pick another port)"
                         : ""),
                // A port taken or an address this host lacks is the machine's
                // state; anything else is an address that cannot be (a usage error).
                e.num() == EADDRINUSE || e.num() == EADDRNOTAVAIL || e.num() == EACCES ? ErrorCode::Unavailable
                                                                                       : ErrorCode::BadRequest);
  }
  return socket.get(zmq::sockopt::last_endpoint);
}

}  // namespace

class BrokerServer::Impl final : public Transport {
 public:
  explicit Impl(ServerOptions options)
      : router_(context_, zmq::socket_type::router),
        pub_(context_, zmq::socket_type::xpub),
        spin_poll_(std::chrono::microseconds(options.spin_us)) {
    check_spin_us(options.spin_us, "spin_us");
    auto& config = options.config;
    router_.set(zmq::sockopt::router_mandatory, 1);
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::sndhwm, kSendHighWaterMark);
    router_.set(zmq::sockopt::backlog, kListenBacklog);
    router_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(config.max_message_bytes));
    pub_.set(zmq::sockopt::linger, 0);
    pub_.set(zmq::sockopt::sndhwm, kSendHighWaterMark);
    bound_ = bind_or_throw(router_, options.bind, "the broker socket (--bind)");
    pub_bound_ = bind_or_throw(pub_, options.pub, "the event socket (--pub)");
    config.pub_address = pub_bound_;
    max_message_bytes_ = config.max_message_bytes;
    store_ = open_sqlite_store(config.store, options.sqlite);
    entities_ = std::make_unique<EntityService>(*store_, std::move(options.hooks), std::move(options.entities));
    core_ = std::make_unique<BrokerCore>(config, queue_, *this, first_job_id());
    core_->attach_entities(*store_, *entities_);
    core_->recover(steady_ms());
  }

  const std::string& bound() const noexcept { return bound_; }
  const std::string& pub_bound() const noexcept { return pub_bound_; }

  void run(const StopSignal& stop) {
    // The event socket is watched by its descriptor, not as a ZeroMQ
    // socket: zmq_poll asks every socket item for its state before and after
    // it blocks (two system calls each time), and the event socket only ever
    // brings a subscription now and then. Its descriptor says "look at me"
    // (edge-triggered): drain_subscriptions() reads until nothing is left,
    // and runs after every turn that published too, since a send may have
    // taken in the signal of a subscription that then waits unseen.
    std::array<zmq::pollitem_t, 3> items{{
        {router_.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, pub_.get(zmq::sockopt::fd), ZMQ_POLLIN, 0},
        {nullptr, stop.fd(), ZMQ_POLLIN, 0},
    }};
    std::vector<zmq::message_t> frames(kMaxFrames);
    for (;;) {
      const std::int64_t now = steady_ms();
      const auto due = std::min(core_->next_deadline_ms(), next_release_ms_);
      const auto wait = std::clamp<std::int64_t>(due - now, 0, 1000);
      spin_poll_.poll(items.data(), items.size(), std::chrono::milliseconds(wait));
      if (items[2].revents & ZMQ_POLLIN) break;
      if (items[0].revents & ZMQ_POLLIN) drain_router(frames);
      if (items[1].revents & ZMQ_POLLIN) drain_subscriptions();
      core_->tick(steady_ms());
      // JOBs leave before the commit (they need not wait for it, §6.1), and
      // JOBs that could not go are requeued inside this turn's transaction.
      flush_batches();
      let_io_thread_send();
      core_->end_turn();
      flush_batches();  // the replies that waited for the commit
      let_io_thread_send();
      if (std::exchange(published_, false)) drain_subscriptions();
    }
    log(LogLevel::info, "broker", "stopping: telling peers goodbye");
    core_->say_goodbye();
    flush_batches();
    router_.set(zmq::sockopt::linger, kShutdownLingerMs);
  }

  // A message handed to ZeroMQ is sent by its I/O thread, which the hand-off
  // wakes. The kernel often queues that thread on this thread's CPU without
  // running it, so the message would wait until this loop blocks in poll at
  // the end of the turn. Yielding once after a turn's sends runs it at once:
  // the JOBs and REPLYs of the turn leave before the commit and the next
  // poll instead of after them (a --serial flow 330 -> 287 us at p50, 10
  // pairs; docs/PERFORMANCE.md). When the I/O thread runs on another CPU,
  // or nothing else waits for this one, the yield returns at once.
  void let_io_thread_send() {
    if (std::exchange(handed_to_io_thread_, false)) sched_yield();
  }

  // ---- Transport ----

  SendResult send(std::string_view peer, Command command, zmq::message_t* header, zmq::message_t* payload) override {
    return send_lazy(peer, command, header, payload, 0);
  }

  SendResult send_lazy(std::string_view peer, Command command, zmq::message_t* header, zmq::message_t* payload,
                       std::uint32_t hold_ms) override {
    const std::size_t frames = wire::frame_count(command);
    if (Outbox* box = outbox_of(peer)) {
      if (frames >= 2) return queue(*box, command, header, payload, hold_ms);
      flush(*box);  // what was queued goes first
    }
    return send_now(peer, command, header, payload);
  }

  SendResult send_bytes(std::string_view peer, Command command, std::string_view header, zmq::message_t* payload,
                        std::uint32_t hold_ms) override {
    if (Outbox* box = outbox_of(peer); box && header.size() <= kMaxHeaderBytes && wire::frame_count(command) >= 2) {
      prepare_queue(*box, header.size() + (payload ? payload->size() : 0), hold_ms);
      box->batch.add(command, header, payload);
      return queued(*box);
    }
    zmq::message_t frame(header.data(), header.size());
    return send_lazy(peer, command, &frame, payload, hold_ms);
  }

  SendResult send_now(std::string_view peer, Command command, zmq::message_t* header, zmq::message_t* payload) {
    const std::size_t frames = wire::frame_count(command);
    if (const SendResult r = send_routing_id(peer); r != SendResult::Sent) return r;
    try {
      const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
      const auto last = zmq::send_flags::dontwait;
      // Once the routing-id frame is accepted, the rest of the message is too.
      zmq::message_t tag = wire::encode_tag(command);
      router_.send(tag, frames > 1 ? more : last);
      if (frames > 1) {
        zmq::message_t empty_header;
        router_.send(header ? *header : empty_header, frames > 2 ? more : last);
      }
      if (frames > 2) {
        zmq::message_t nil("\xc0", 1);
        router_.send(payload ? *payload : nil, last);
      }
      handed_to_io_thread_ = true;
      return SendResult::Sent;
    } catch (const zmq::error_t& e) {
      return refusal(e);
    }
  }

  // The first frame of every message to a peer. ZeroMQ refuses it when the
  // peer is gone (ROUTER_MANDATORY) or its pipe is full; once it is taken,
  // the rest of the message is too.
  SendResult send_routing_id(std::string_view peer) {
    try {
      zmq::message_t id(peer.data(), peer.size());
      return router_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait) ? SendResult::Sent
                                                                                   : SendResult::WouldBlock;
    } catch (const zmq::error_t& e) {
      return refusal(e);
    }
  }

  static SendResult refusal(const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return SendResult::Unreachable;
    if (e.num() == EAGAIN) return SendResult::WouldBlock;
    throw e;
  }

  void set_batch_limit(std::string_view peer, std::uint32_t entries, bool inline_payloads) override {
    const std::uint32_t limit = std::min(entries, kDefaultBatchEntries);
    if (limit < 2) {  // a batch of one is the message itself
      forget(peer);
      return;
    }
    auto [it, inserted] = outboxes_.try_emplace(std::string(peer));
    it->second.id = std::string(peer);
    it->second.limit = limit;
    it->second.batch.inline_payloads_up_to(inline_payloads ? kMaxInlinePayloadBytes : 0);
  }

  void forget(std::string_view peer) override {
    const auto it = outboxes_.find(peer);
    if (it == outboxes_.end()) return;
    recent_outbox_ = nullptr;
    // What was queued before the core forgot the peer was meant for it, as
    // a direct send would have been. (flush() never calls into the core.)
    flush(it->second);
    if (it->second.dirty) dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), &it->second), dirty_.end());
    outboxes_.erase(it);
  }

  bool has_subscribers(std::string_view topic) const override {
    for (const auto& prefix : subscriptions_)
      if (topic.substr(0, prefix.size()) == prefix) return true;
    return false;
  }

  void publish(std::string_view topic, zmq::message_t& meta, zmq::message_t& data) override {
    zmq::message_t topic_frame(topic.data(), topic.size());
    // XPUB never blocks on slow subscribers: it drops for them.
    pub_.send(topic_frame, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_.send(meta, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_.send(data, zmq::send_flags::dontwait);
    published_ = true;
    handed_to_io_thread_ = true;
  }

 private:
  // What is queued for a peer that takes BATCH (its HELLO said so).
  struct Outbox {
    std::string id;
    std::uint32_t limit = 0;  // messages per batch
    wire::Batch batch;
    bool dirty = false;       // listed in dirty_
    // Everything queued may wait (send_lazy) until release_ms (steady).
    bool lazy = true;
    std::int64_t release_ms = 0;
  };

  // The peer's outbox (it takes BATCH), or nullptr.
  Outbox* outbox_of(std::string_view peer) {
    if (recent_outbox_ && recent_outbox_->id == peer) return recent_outbox_;
    if (outboxes_.empty()) return nullptr;
    const auto it = outboxes_.find(peer);
    if (it == outboxes_.end()) return nullptr;
    return recent_outbox_ = &it->second;
  }
  // A batch the ROUTER refused; reported to the core once the flushing is over.
  struct Undelivered {
    std::string peer;
    SendResult why;
    std::vector<std::uint64_t> job_ids;
  };

  // Queues a message for the peer's next batch. A header too large for a
  // BATCH index (a big STATS) goes alone, after what was queued before it.
  SendResult queue(Outbox& box, Command command, zmq::message_t* header, zmq::message_t* payload,
                   std::uint32_t hold_ms) {
    if (header && header->size() > kMaxHeaderBytes) {
      flush(box);
      return send_now(box.id, command, header, payload);
    }
    prepare_queue(box, (header ? header->size() : 0) + (payload ? payload->size() : 0), hold_ms);
    zmq::message_t empty;
    box.batch.add(command, header ? *header : empty, payload);
    return queued(box);
  }

  // Before a message of `size` bytes joins the peer's batch: what is
  // queued goes first if the two would not fit in one, and the batch's
  // release time takes the message's hold.
  void prepare_queue(Outbox& box, std::size_t size, std::uint32_t hold_ms) {
    if (!box.batch.empty() && box.batch.bytes() + size > kMaxBatchBytes) flush(box);
    if (hold_ms == 0) {
      box.lazy = false;
    } else if (box.lazy) {
      const std::int64_t release = steady_ms() + hold_ms;
      box.release_ms = box.batch.empty() ? release : std::min(box.release_ms, release);
    }
  }

  // After a message joined the peer's batch: listed for the end of the
  // turn, or sent now when the batch is full.
  SendResult queued(Outbox& box) {
    if (!box.dirty) {
      box.dirty = true;
      dirty_.push_back(&box);
    }
    if (box.batch.size() >= box.limit || box.batch.bytes() >= kMaxBatchBytes) flush(box);
    return SendResult::Sent;
  }

  // Whether a tag frame, as received (not checked yet), names `command`.
  static bool tag_is(const zmq::message_t& tag, Command command) noexcept {
    return tag.size() == kTagFrameBytes && tag.data<char>()[3] == static_cast<char>(command);
  }

  // Sends what is queued for one peer, as one message. Never blocks.
  void flush(Outbox& box) {
    box.lazy = true;  // for what comes next
    if (box.batch.empty()) return;
    const SendResult result = send_routing_id(box.id);
    if (result != SendResult::Sent) {
      Undelivered lost{box.id, result, {}};
      for (std::size_t i = 0; i < box.batch.size(); ++i)
        if (box.batch.command(i) == Command::Job) {
          const std::string_view bytes = box.batch.header(i);
          const zmq::message_t header(const_cast<char*>(bytes.data()), bytes.size(), nullptr);  // a view
          lost.job_ids.push_back(wire::decode_job(header).job_id);
        }
      box.batch.clear();
      undelivered_.push_back(std::move(lost));
      return;
    }
    box.batch.drain([&](zmq::message_t& frame, bool more) {
      router_.send(frame, more ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::dontwait);
    });
    handed_to_io_thread_ = true;
  }

  // Sends every queued batch, then lets the core deal with the ones that
  // could not go (which may queue more: requeued jobs for other workers).
  // Batches of JOBs go first: they are what the next step of every flow
  // waits for, while an ACCEPTED only informs.
  // An outbox holding only lazy messages stays queued until its release
  // time (the loop wakes for it), unless something else joins it.
  void flush_batches() {
    const std::int64_t now = steady_ms();
    for (;;) {
      for (Outbox* box : dirty_)
        if (!box->batch.empty() && box->batch.command(0) == Command::Job) flush(*box);
      next_release_ms_ = std::numeric_limits<std::int64_t>::max();
      held_.clear();
      for (Outbox* box : dirty_) {
        if (box->lazy && !box->batch.empty() && now < box->release_ms) {
          held_.push_back(box);
          next_release_ms_ = std::min(next_release_ms_, box->release_ms);
          continue;
        }
        flush(*box);
        box->dirty = false;
      }
      dirty_.swap(held_);
      if (undelivered_.empty()) return;
      auto lost = std::move(undelivered_);
      undelivered_.clear();
      for (const auto& u : lost) core_->on_undelivered(u.peer, u.why, u.job_ids);
    }
  }

  void drain_router(std::vector<zmq::message_t>& frames) {
    // A turn that read only heartbeats is no reason to spin: thousands of
    // idle peers would keep the loop spinning on theirs.
    bool traffic = false;
    for (std::size_t handled = 0; handled < kTurnMessages;) {
      if (!router_.recv(frames[0], zmq::recv_flags::dontwait)) break;
      std::size_t count = 1;
      std::size_t total = 0;  // of the frames the peer sent: its routing id is not its to count
      bool too_many = false;
      while (frames[count - 1].more()) {
        if (count == kMaxFrames) {
          // Read the rest of this message into a scratch frame and drop it.
          zmq::message_t scratch;
          do {
            (void)router_.recv(scratch);
          } while (scratch.more());
          too_many = true;
          break;
        }
        (void)router_.recv(frames[count]);
        total += frames[count].size();
        ++count;
      }
      const std::int64_t now = steady_ms();
      if (too_many || total > max_message_bytes_) {
        const std::string peer(frames[0].data<char>(), frames[0].size());
        zmq::message_t header = wire::encode(wire::ErrorReply{
            too_many ? ErrorCode::BadRequest : ErrorCode::TooLarge,
            too_many ? "message has more frames than any MW/1 command" : "message larger than --max-message-bytes",
            0});
        send(peer, Command::Error, &header, nullptr);
        ++handled;
        continue;
      }
      // A BATCH counts as the messages it holds.
      handled += count > 2 && tag_is(frames[1], Command::Batch) ? wire::batch_size_claimed(frames[2]) : 1;
      traffic = traffic || count < 2 || !tag_is(frames[1], Command::Heartbeat);
      core_->handle(std::span<zmq::message_t>(frames.data(), count), now);
    }
    if (!traffic) spin_poll_.not_traffic();
  }

  void drain_subscriptions() {
    zmq::message_t msg;
    while (pub_.recv(msg, zmq::recv_flags::dontwait)) {
      if (msg.size() == 0) continue;
      const auto* p = msg.data<char>();
      std::string prefix(p + 1, msg.size() - 1);
      if (p[0] == 1) {
        subscriptions_.insert(std::move(prefix));
      } else if (p[0] == 0) {
        subscriptions_.erase(prefix);
      }
    }
  }

  zmq::context_t context_{1};
  zmq::socket_t router_;
  // Only publish() and drain_subscriptions() touch it: the loop relies on
  // that to see every subscription (see run()).
  zmq::socket_t pub_;
  std::string bound_;
  std::string pub_bound_;
  std::size_t max_message_bytes_ = kDefaultMaxMessageBytes;
  std::set<std::string> subscriptions_;
  bool published_ = false;  // since the last drain_subscriptions()
  bool handed_to_io_thread_ = false;  // a message, since the last let_io_thread_send()
  SpinPoll spin_poll_;  // spins before it sleeps while messages come steadily (--spin-us)
  std::unordered_map<std::string, Outbox, WorkerRegistry::Hash, std::equal_to<>> outboxes_;
  // The last outbox looked up: the JOBs of a turn mostly go to one or two
  // workers, one after the other (a pointer into a node, which does not move).
  Outbox* recent_outbox_ = nullptr;
  std::vector<Outbox*> dirty_;  // outboxes with something queued (pointers into the map: nodes do not move)
  std::vector<Outbox*> held_;   // scratch for flush_batches
  std::int64_t next_release_ms_ = std::numeric_limits<std::int64_t>::max();  // of the earliest lazy outbox
  std::vector<Undelivered> undelivered_;
  MemoryJobQueue queue_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EntityService> entities_;
  std::unique_ptr<BrokerCore> core_;
};

BrokerServer::BrokerServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
BrokerServer::~BrokerServer() = default;
BrokerServer::BrokerServer(BrokerServer&&) noexcept = default;
BrokerServer& BrokerServer::operator=(BrokerServer&&) noexcept = default;

const std::string& BrokerServer::bound_address() const noexcept { return impl_->bound(); }
const std::string& BrokerServer::pub_address() const noexcept { return impl_->pub_bound(); }
void BrokerServer::run(const StopSignal& stop) { impl_->run(stop); }

}  // namespace mw::broker
