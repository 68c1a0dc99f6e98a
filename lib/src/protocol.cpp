#include "mw/protocol.hpp"

namespace mw {

std::string_view command_name(Command command) noexcept {
  switch (command) {
    case Command::Hello: return "HELLO";
    case Command::Welcome: return "WELCOME";
    case Command::Ready: return "READY";
    case Command::Job: return "JOB";
    case Command::Done: return "DONE";
    case Command::Fail: return "FAIL";
    case Command::Submit: return "SUBMIT";
    case Command::Accepted: return "ACCEPTED";
    case Command::Result: return "RESULT";
    case Command::Call: return "CALL";
    case Command::Reply: return "REPLY";
    case Command::Status: return "STATUS";
    case Command::Stats: return "STATS";
    case Command::Heartbeat: return "HEARTBEAT";
    case Command::Disconnect: return "DISCONNECT";
    case Command::Error: return "ERROR";
    case Command::Batch: return "BATCH";
    case Command::Wait: return "WAIT";
  }
  return "UNKNOWN";
}

bool is_known_command(std::uint8_t byte) noexcept {
  return byte >= static_cast<std::uint8_t>(Command::Hello) && byte <= static_cast<std::uint8_t>(Command::Wait);
}

}  // namespace mw
