#include "mw/protocol.hpp"

#include <charconv>
#include <string>

#include "mw/error.hpp"

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
    case Command::Cancel: return "CANCEL";
  }
  return "UNKNOWN";
}

std::uint64_t parse_flow_id(std::string_view text) {
  std::uint64_t flow = 0;
  const auto* end = text.data() + text.size();
  const auto [at, ec] = std::from_chars(text.data(), end, flow);
  if (ec != std::errc() || at != end || flow == 0)
    throw Error("'" + std::string(text) + "' is not a flow id: a flow id is a positive integer, as mw submit prints it",
                ErrorCode::BadRequest);
  return flow;
}

bool is_known_command(std::uint8_t byte) noexcept {
  return byte >= static_cast<std::uint8_t>(Command::Hello) && byte <= static_cast<std::uint8_t>(Command::Cancel);
}

}  // namespace mw
