#include "mw/protocol.hpp"

#include <algorithm>
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
    case Command::Progress: return "PROGRESS";
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
  return byte >= static_cast<std::uint8_t>(Command::Hello) && byte <= static_cast<std::uint8_t>(Command::Progress);
}

namespace {

// The length of the UTF-8 sequence at the start of `text`, or 0 when it is
// not one (a stray continuation byte, an overlong form, a surrogate, past
// U+10FFFF, or cut short).
std::size_t utf8_sequence_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  std::size_t length;
  unsigned char low = 0x80, high = 0xBF;  // the allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i)
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  return length;
}

// The code point of the valid UTF-8 sequence of `length` bytes at the
// start of `text`.
char32_t code_point(std::string_view text, std::size_t length) {
  const auto byte = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(text[i])); };
  if (length == 1) return byte(0);
  char32_t cp = byte(0) & (0xFF >> (length + 1));
  for (std::size_t i = 1; i < length; ++i) cp = (cp << 6) | (byte(i) & 0x3F);
  return cp;
}

enum class CharKind { Ordinary, Space, Comma, Control, Invisible };

// What a type name may not hold. Spaces and controls beyond ASCII count
// too: a no-break space or a NEL looks like (or is) a break in a line, and
// a bidirectional override or a zero-width character makes two different
// names look the same.
CharKind kind_of(char32_t cp) {
  if (cp == U' ' || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
      cp == 0x202F || cp == 0x205F || cp == 0x3000)
    return CharKind::Space;
  if (cp == U',') return CharKind::Comma;
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return CharKind::Control;
  if ((cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x206F) ||
      cp == 0xFEFF || cp == 0x00AD || cp == 0x061C || cp == 0x180E || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
      cp == 0x115F || cp == 0x1160 || cp == 0x3164 || cp == 0xFFA0 || cp == 0x2800 || (cp >= 0xE0000 && cp <= 0xE007F))
    return CharKind::Invisible;
  return CharKind::Ordinary;
}

// `type` as a message may quote it: bytes that are not UTF-8 and ASCII
// controls as \xNN, other characters a type may not hold as \u{XXXX}, and
// at most 60 bytes of it.
std::string shown_type(std::string_view type) {
  constexpr std::size_t kShown = 60;
  constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < type.size() && i < kShown;) {
    const unsigned char c = static_cast<unsigned char>(type[i]);
    const std::size_t length = utf8_sequence_length(type.substr(i));
    if (length == 0 || c < 0x20 || c == 0x7F) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      ++i;
      continue;
    }
    const char32_t cp = code_point(type.substr(i), length);
    const CharKind kind = kind_of(cp);
    if (length > 1 && kind != CharKind::Ordinary) {
      out += "\\u{";
      for (int shift = cp > 0xFFFF ? 20 : 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xF];
      out += '}';
    } else {
      out.append(type.substr(i, length));
    }
    i += length;
  }
  if (type.size() > kShown) out += "...";
  return out;
}

// Adds the types of one comma-separated list to `types`.
void split_into(std::vector<std::string>& types, std::string_view list, std::string_view flag) {
  for (std::size_t start = 0;;) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const std::string_view type = list.substr(start, comma - start);
    if (type.empty()) {
      const char* where = list.empty()            ? "no type given"
                          : comma == list.size()  ? "an empty type at the end"
                          : start == 0            ? "an empty type at the start"
                                                  : "an empty type between two commas";
      throw UsageError(std::string(flag) + " '" + std::string(list) + "': " + where +
                       " (give types separated by single commas: resize,thumb)");
    }
    if (auto problem = type_name_problem(type); !problem.empty()) throw UsageError(std::string(flag) + ": " + problem);
    if (std::find(types.begin(), types.end(), type) != types.end())
      throw UsageError(std::string(flag) + ": type '" + std::string(type) + "' is given twice");
    types.emplace_back(type);
    if (comma == list.size()) return;
    start = comma + 1;
  }
}

}  // namespace

std::string endpoint_name_problem(std::string_view endpoint) {
  constexpr std::size_t kMaxEndpointBytes = 64;
  if (endpoint.empty() || endpoint.size() > kMaxEndpointBytes) return "endpoint name must be 1..64 characters";
  for (char c : endpoint) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return "endpoint name '" + std::string(endpoint) + "' may hold only letters, digits, _ and -";
  }
  return "";
}

std::string type_name_problem(std::string_view type) {
  constexpr std::string_view kRule = ": a type is one word of text, without spaces, commas or control characters";
  if (type.empty()) return "a type may not be empty";
  if (type.size() > kMaxTypeNameBytes)
    return "type '" + shown_type(type) + "' is " + std::to_string(type.size()) + " bytes long: a type is at most " +
           std::to_string(kMaxTypeNameBytes);
  // Plain ASCII, the usual case, needs no decoding (the broker checks the
  // type of every SUBMIT and JOB it takes).
  if (std::all_of(type.begin(), type.end(), [](char c) { return c > ' ' && c < '\x7f' && c != ','; })) return {};
  for (std::size_t i = 0; i < type.size();) {
    const std::size_t length = utf8_sequence_length(type.substr(i));
    if (length == 0) return "type '" + shown_type(type) + "' is not valid UTF-8" + std::string(kRule);
    const char* fault = nullptr;
    switch (kind_of(code_point(type.substr(i), length))) {
      case CharKind::Ordinary: break;
      case CharKind::Space: fault = "' holds a space"; break;
      case CharKind::Comma: fault = "' holds a comma"; break;
      case CharKind::Control: fault = "' holds a control character"; break;
      case CharKind::Invisible: fault = "' holds an invisible formatting character"; break;
    }
    if (fault) return "type '" + shown_type(type) + fault + std::string(kRule);
    i += length;
  }
  return {};
}

std::vector<std::string> split_types(const std::vector<std::string>& lists, std::string_view flag) {
  std::vector<std::string> types;
  if (lists.empty()) throw UsageError(std::string(flag) + ": no type given");
  for (const std::string_view list : lists) split_into(types, list, flag);
  return types;
}

std::string joined_types(const std::vector<std::string>& types) {
  std::string out;
  for (const auto& type : types) {
    if (!out.empty()) out += ',';
    out += type;
  }
  return out;
}

}  // namespace mw
