#include "peer_socket.hpp"

#include <algorithm>

#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/options.hpp"
#include "mw/wire.hpp"

namespace mw::detail {
namespace {
constexpr int kMaxInboundFrames = 3;
// Bytes queued before a BATCH is sent regardless of its count (less when
// the broker's message limit is under twice this).
constexpr std::size_t kMaxBatchBytes = 256 * 1024;
}

PeerSocket::PeerSocket(zmq::context_t& context, std::string address)
    : context_(context), address_(std::move(address)), max_batch_bytes_(kMaxBatchBytes) {
  check_broker_address(address_);
  open();
}

void PeerSocket::open() {
  socket_ = zmq::socket_t(context_, zmq::socket_type::dealer);
  socket_.set(zmq::sockopt::linger, 0);
  // Bounded by the jobs a peer holds (credit) and its request window; never
  // drop a DONE because a burst hit the default of 1000.
  socket_.set(zmq::sockopt::sndhwm, 0);
  socket_.set(zmq::sockopt::rcvhwm, 0);
  socket_.set(zmq::sockopt::reconnect_ivl, 100);
  socket_.set(zmq::sockopt::reconnect_ivl_max, 2000);
  try {
    socket_.connect(address_);
  } catch (const zmq::error_t& e) {
    throw Error("cannot connect to broker '" + address_ + "': " + e.what() +
                    " (expected an address like tcp://127.0.0.1:5555)",
                ErrorCode::BadRequest);
  }
}

void PeerSocket::reset() {
  socket_.close();
  outbox_.clear();
  forget_welcome();
  in_items_.clear();
  in_payloads_.clear();
  open();
}

void PeerSocket::take_welcome(const wire::Welcome& welcome) noexcept {
  batch_limit_ = std::min(welcome.batch, kDefaultBatchEntries);
  if (batch_limit_ < 2) batch_limit_ = 0;  // a BATCH of one is the message itself
  max_message_bytes_ = welcome.max_message_bytes ? welcome.max_message_bytes : kDefaultMaxMessageBytes;
  max_batch_bytes_ = std::min<std::uint64_t>(kMaxBatchBytes, max_message_bytes_ / 2);
  outbox_.inline_payloads_up_to(welcome.inline_payloads ? kMaxInlinePayloadBytes : 0);
}

void PeerSocket::forget_welcome() noexcept {
  batch_limit_ = 0;
  max_message_bytes_ = 0;
  max_batch_bytes_ = kMaxBatchBytes;
  outbox_.inline_payloads_up_to(0);
}

std::size_t PeerSocket::message_bytes(const zmq::message_t* header, const zmq::message_t* payload) noexcept {
  return kTagFrameBytes + (header ? header->size() : 0) + (payload ? payload->size() : 0);
}

bool PeerSocket::send(Command command, zmq::message_t* header, zmq::message_t* payload) {
  // Headers too large for a BATCH index go alone, as do commands without one.
  if (batch_limit_ == 0 || wire::frame_count(command) < 2 || (header && header->size() > kMaxHeaderBytes)) {
    if (!flush()) return false;
    return send_now(command, header, payload);
  }
  // Batches stay within half the broker's message limit, unless their one
  // message is bigger.
  const std::size_t size = (header ? header->size() : 0) + (payload ? payload->size() : 0);
  if (!outbox_.empty() && outbox_.bytes() + size > max_batch_bytes_ && !flush()) return false;
  if (outbox_.empty()) oldest_queued_ = std::chrono::steady_clock::now();
  zmq::message_t empty;
  outbox_.add(command, header ? *header : empty, payload);
  if (outbox_.size() >= batch_limit_ || outbox_.bytes() >= max_batch_bytes_) return flush();
  return true;
}

bool PeerSocket::flush_older_than(std::chrono::steady_clock::duration age) {
  if (outbox_.empty() || std::chrono::steady_clock::now() - oldest_queued_ < age) return true;
  return flush();
}

bool PeerSocket::flush() {
  if (outbox_.empty()) return true;
  bool ok = true;
  bool first = true;
  outbox_.drain([&](zmq::message_t& frame, bool more) {
    const auto flags = more ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::dontwait;
    // Once the first frame is taken, ZeroMQ takes the whole message.
    if (first && !socket_.send(frame, flags)) ok = false;
    if (!first && ok) socket_.send(frame, flags);
    first = false;
  });
  return ok;
}

bool PeerSocket::send_now(Command command, zmq::message_t* header, zmq::message_t* payload) {
  const std::size_t frames = wire::frame_count(command);
  const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  const auto last = zmq::send_flags::dontwait;
  zmq::message_t tag = wire::encode_tag(command);
  if (!socket_.send(tag, frames > 1 ? more : last)) return false;
  if (frames > 1) {
    zmq::message_t empty;
    socket_.send(header ? *header : empty, frames > 2 ? more : last);
  }
  if (frames > 2) {
    zmq::message_t nil("\xc0", 1);
    socket_.send(payload ? *payload : nil, last);
  }
  return true;
}

std::optional<Inbound> PeerSocket::next_from_batch() {
  if (in_next_ >= in_items_.size()) return std::nullopt;
  const wire::BatchItem& item = in_items_[in_next_++];
  Inbound in;
  in.command = item.command;
  // A constant message: points into in_index_, no copy and no allocation.
  in.header = zmq::message_t(const_cast<char*>(item.header.data()), item.header.size(), nullptr);
  if (item.inline_payload)  // likewise
    in.payload = zmq::message_t(const_cast<char*>(item.payload.data()), item.payload.size(), nullptr);
  else if (wire::frame_count(item.command) == 3)
    in.payload = std::move(in_payloads_[in_next_payload_++]);
  return in;
}

std::optional<Inbound> PeerSocket::try_recv() {
  if (auto in = next_from_batch()) return in;
  zmq::message_t frames[kMaxInboundFrames];
  if (!socket_.recv(frames[0], zmq::recv_flags::dontwait)) return std::nullopt;
  int count = 1;
  bool too_many = false;
  bool batch = false;
  try {
    batch = wire::decode_tag(frames[0]) == Command::Batch;
  } catch (const wire::DecodeError&) {
    // reported below, once the rest of the message is read
  }
  if (batch) {
    in_items_.clear();
    in_payloads_.clear();
    in_next_ = in_next_payload_ = 0;
    bool has_index = frames[0].more();
    if (has_index) (void)socket_.recv(in_index_);
    bool more = has_index && in_index_.more();
    while (more) {
      zmq::message_t& payload = in_payloads_.emplace_back();
      (void)socket_.recv(payload);
      more = payload.more();
      if (in_payloads_.size() > kMaxBatchEntries) {
        while (more) {
          zmq::message_t scratch;
          (void)socket_.recv(scratch);
          more = scratch.more();
        }
      }
    }
    try {
      if (!has_index) throw wire::DecodeError(ErrorCode::BadRequest, "BATCH without its index frame");
      wire::decode_batch(in_index_, in_payloads_.size(), in_items_);
    } catch (const wire::DecodeError& e) {
      in_items_.clear();
      in_payloads_.clear();
      ++malformed_;
      log(LogLevel::warn, "mw", std::string("skipping malformed message from broker: ") + e.what());
      return std::nullopt;
    }
    return next_from_batch();
  }
  while (frames[count - 1].more()) {
    if (count == kMaxInboundFrames) {
      zmq::message_t scratch;
      do {
        (void)socket_.recv(scratch);
      } while (scratch.more());
      too_many = true;
      break;
    }
    (void)socket_.recv(frames[count]);
    ++count;
  }
  try {
    if (too_many) throw wire::DecodeError(ErrorCode::BadRequest, "too many frames");
    Inbound in;
    in.command = wire::decode_tag(frames[0]);
    if (static_cast<std::size_t>(count) != wire::frame_count(in.command))
      throw wire::DecodeError(ErrorCode::BadRequest, std::string(command_name(in.command)) + " with wrong frame count");
    if (count > 1) in.header = std::move(frames[1]);
    if (count > 2) in.payload = std::move(frames[2]);
    return in;
  } catch (const wire::DecodeError& e) {
    ++malformed_;
    log(LogLevel::warn, "mw", std::string("skipping malformed message from broker: ") + e.what());
    return std::nullopt;
  }
}

}  // namespace mw::detail
