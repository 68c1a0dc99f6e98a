#include "peer_socket.hpp"

#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/wire.hpp"

namespace mw::detail {
namespace {
constexpr int kMaxInboundFrames = 3;
}

PeerSocket::PeerSocket(zmq::context_t& context, std::string address)
    : context_(context), address_(std::move(address)) {
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
  open();
}

bool PeerSocket::send(Command command, zmq::message_t* header, zmq::message_t* payload) {
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

std::optional<Inbound> PeerSocket::try_recv() {
  zmq::message_t frames[kMaxInboundFrames];
  if (!socket_.recv(frames[0], zmq::recv_flags::dontwait)) return std::nullopt;
  int count = 1;
  bool too_many = false;
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
