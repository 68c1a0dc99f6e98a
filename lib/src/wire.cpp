// Encoding and decoding of MW/1 headers. Headers are msgpack arrays read by
// position; see docs/PROTOCOL.md for each layout.
#include "mw/wire.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include <msgpack.hpp>

#include "mw/payload.hpp"

namespace mw::wire {
namespace {

// Strings in headers point into the frame instead of being copied.
bool reference_everything(msgpack::type::object_type, std::size_t, void*) { return true; }

// A header is decoded into this thread's zone, which is cleared (keeping its
// first chunk) before every decode, so decoding does not allocate in steady state.
msgpack::zone& decode_zone() {
  thread_local msgpack::zone zone;
  return zone;
}

// Every count in msgpack takes at least one byte per element, so no
// container can honestly claim more elements than the input has bytes. Using
// the input size as the limit stops "array of 4G elements" headers from
// making msgpack-c allocate gigabytes up front.
msgpack::unpack_limit limits_for(std::size_t bytes, std::size_t max_depth) {
  const std::size_t n = bytes == 0 ? 1 : bytes;
  return msgpack::unpack_limit(n, n, n, n, n, max_depth);
}

msgpack::object unpack_bounded(const char* data, std::size_t size, std::size_t max_depth) {
  auto& zone = decode_zone();
  zone.clear();
  std::size_t offset = 0;
  try {
    msgpack::object obj = msgpack::unpack(zone, data, size, offset, reference_everything,
                                          nullptr, limits_for(size, max_depth));
    if (offset != size) throw DecodeError(ErrorCode::BadRequest, "trailing bytes after msgpack value");
    return obj;
  } catch (const DecodeError&) {
    throw;
  } catch (const msgpack::insufficient_bytes&) {
    throw DecodeError(ErrorCode::BadRequest, "truncated msgpack");
  } catch (const std::exception& e) {
    // unpack_error, size/depth limit errors, bad_alloc: all mean hostile or broken input.
    throw DecodeError(ErrorCode::BadRequest, std::string("bad msgpack: ") + e.what());
  }
}

// Reads big-endian unsigned integers and bounded byte runs; false past the end.
class Cursor {
 public:
  Cursor(const char* data, std::size_t size)
      : p_(reinterpret_cast<const unsigned char*>(data)), end_(p_ + size) {}
  bool at_end() const noexcept { return p_ == end_; }
  bool byte(unsigned& b) {
    if (p_ == end_) return false;
    b = *p_++;
    return true;
  }
  bool big_endian(int bytes, std::uint64_t& v) {
    if (end_ - p_ < bytes) return false;
    v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | *p_++;
    return true;
  }
  // A msgpack array header (fixarray, array16 or array32): its count.
  bool array_header(std::uint64_t& count) {
    unsigned head = 0;
    if (!byte(head)) return false;
    if (head >= 0x90 && head <= 0x9f) {
      count = head & 0x0f;
      return true;
    }
    return (head == 0xdc || head == 0xdd) && big_endian(head == 0xdc ? 2 : 4, count);
  }
  bool run(std::uint64_t length, std::string_view& out) {
    if (static_cast<std::uint64_t>(end_ - p_) < length) return false;
    out = std::string_view(reinterpret_cast<const char*>(p_), length);
    p_ += length;
    return true;
  }

 private:
  const unsigned char* p_;
  const unsigned char* end_;
};

// The hot headers (JOB, DONE, SUBMIT, ACCEPTED, RESULT) are short arrays of
// scalars. Reading those directly costs a fraction of msgpack-c's generic
// unpack (no zone, no visitor); anything else — containers, floats, bin,
// ext, more than kFlatMax fields, or any irregularity at all — returns false
// and takes the generic path, which also produces the error messages.
constexpr std::uint32_t kFlatMax = 16;

bool read_flat_array(const char* data, std::size_t size, msgpack::object* out, std::uint32_t& count) {
  Cursor in(data, size);
  std::uint64_t n = 0;
  // array32 is a generic-path case, as it always was here.
  if (size == 0 || static_cast<unsigned char>(data[0]) == 0xdd || !in.array_header(n)) return false;
  if (n > kFlatMax) return false;
  for (std::uint32_t i = 0; i < n; ++i) {
    unsigned b = 0;
    if (!in.byte(b)) return false;
    msgpack::object& o = out[i];
    std::uint64_t v = 0;
    std::uint64_t len = 0;
    if (b <= 0x7f) {
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = b;
    } else if (b >= 0xe0) {
      o.type = msgpack::type::NEGATIVE_INTEGER;
      o.via.i64 = static_cast<std::int8_t>(b);
    } else if (b == 0xc0) {
      o.type = msgpack::type::NIL;
    } else if (b == 0xc2 || b == 0xc3) {
      o.type = msgpack::type::BOOLEAN;
      o.via.boolean = b == 0xc3;
    } else if (b >= 0xcc && b <= 0xcf) {
      if (!in.big_endian(1 << (b - 0xcc), v)) return false;
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = v;
    } else if (b >= 0xa0 && b <= 0xbf) {
      len = b & 0x1f;
    } else if (b >= 0xd9 && b <= 0xdb) {
      if (!in.big_endian(1 << (b - 0xd9), len)) return false;
    } else {
      return false;  // signed ints, floats, bin, ext, containers: generic path
    }
    if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)) {
      std::string_view str;
      if (!in.run(len, str)) return false;
      o.type = msgpack::type::STR;
      o.via.str.ptr = str.data();
      o.via.str.size = static_cast<std::uint32_t>(str.size());
    }
  }
  if (!in.at_end()) return false;
  count = static_cast<std::uint32_t>(n);
  return true;
}

// Positional access to a header array with type checks that name the field.
class Fields {
 public:
  Fields(const zmq::message_t& frame, std::size_t required, const char* what) : what_(what) {
    if (frame.size() > kMaxHeaderBytes) throw DecodeError(ErrorCode::TooLarge, std::string(what) + ": header too large");
    std::uint32_t count = 0;
    if (read_flat_array(frame.data<char>(), frame.size(), flat_.data(), count)) {
      array_.size = count;
      array_.ptr = flat_.data();
    } else {
      msgpack::object obj = unpack_bounded(frame.data<char>(), frame.size(), 8);
      if (obj.type != msgpack::type::ARRAY)
        throw DecodeError(ErrorCode::BadRequest, std::string(what) + ": header is not an array");
      array_ = obj.via.array;
    }
    if (array_.size < required)
      throw DecodeError(ErrorCode::BadRequest, std::string(what) + ": header has " + std::to_string(array_.size) +
                                                   " fields, needs " + std::to_string(required));
  }

  bool has(std::size_t i) const { return i < array_.size && array_.ptr[i].type != msgpack::type::NIL; }

  std::uint64_t u64(std::size_t i, const char* field) const {
    const auto& o = at(i);
    if (o.type != msgpack::type::POSITIVE_INTEGER) fail(field, "a non-negative integer");
    return o.via.u64;
  }

  std::uint32_t u32(std::size_t i, const char* field) const {
    std::uint64_t v = u64(i, field);
    if (v > std::numeric_limits<std::uint32_t>::max()) fail(field, "a 32-bit integer");
    return static_cast<std::uint32_t>(v);
  }

  std::int64_t i64(std::size_t i, const char* field) const {
    const auto& o = at(i);
    if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
    if (o.type != msgpack::type::POSITIVE_INTEGER || o.via.u64 > static_cast<std::uint64_t>(INT64_MAX))
      fail(field, "an integer");
    return static_cast<std::int64_t>(o.via.u64);
  }

  bool boolean(std::size_t i, const char* field) const {
    const auto& o = at(i);
    if (o.type != msgpack::type::BOOLEAN) fail(field, "a boolean");
    return o.via.boolean;
  }

  std::string_view str(std::size_t i, const char* field) const {
    const auto& o = at(i);
    if (o.type != msgpack::type::STR) fail(field, "a string");
    return {o.via.str.ptr, o.via.str.size};
  }

  // A string, or empty for nil / a missing trailing field.
  std::string_view str_or_empty(std::size_t i, const char* field) const {
    return has(i) ? str(i, field) : std::string_view{};
  }

  const msgpack::object& at(std::size_t i) const {
    if (i >= array_.size) throw DecodeError(ErrorCode::BadRequest, std::string(what_) + ": missing field");
    return array_.ptr[i];
  }

  [[noreturn]] void fail(const char* field, const char* expected) const {
    throw DecodeError(ErrorCode::BadRequest, std::string(what_) + ": " + field + " must be " + expected);
  }

 private:
  const char* what_;
  std::array<msgpack::object, kFlatMax> flat_;
  msgpack::object_array array_{};
};

// HELLO's and WELCOME's batch field: absent or nil is 0 (no BATCH); more
// than kMaxBatchEntries means as many as the protocol allows.
std::uint32_t batch_limit(const Fields& f, std::size_t i) {
  return f.has(i) ? std::min(f.u32(i, "batch"), kMaxBatchEntries) : 0;
}

// A job type as type_name_problem() allows it; `what` names the message
// and field in the error ("SUBMIT: type 'a,b' holds a comma: ...").
std::string_view type_name(std::string_view type, const char* what) {
  if (auto problem = type_name_problem(type); !problem.empty())
    throw DecodeError(ErrorCode::BadRequest, std::string(what) + ": " + problem);
  return type;
}

// A next type: empty (the flow ends there) or a type name.
std::string_view next_type_name(std::string_view next, const char* what) {
  return next.empty() ? next : type_name(next, what);
}

zmq::message_t frame_of(std::string_view bytes) { return zmq::message_t(bytes.data(), bytes.size()); }

// This thread's encode buffer, cleared (capacity kept) for every message.
class Writer {
 public:
  Writer() : buffer_(buffer()), packer_(buffer_) { buffer_.clear(); }
  msgpack::packer<msgpack::sbuffer>& pack() { return packer_; }
  Writer& array(std::uint32_t n) { packer_.pack_array(n); return *this; }
  Writer& u64(std::uint64_t v) { packer_.pack_uint64(v); return *this; }
  Writer& str(std::string_view s) {
    packer_.pack_str(static_cast<std::uint32_t>(s.size()));
    packer_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
    return *this;
  }
  Writer& boolean(bool b) { b ? packer_.pack_true() : packer_.pack_false(); return *this; }
  Writer& nil() { packer_.pack_nil(); return *this; }
  // Always float 64 (0xcb): msgpack-c's pack_double writes a whole number
  // as an integer, and PROTOCOL.md promises readers a float64 here.
  Writer& f64(double d) {
    const auto bytes = float64_bytes(d);
    buffer_.write(bytes.data(), bytes.size());
    return *this;
  }
  // The bytes, in this thread's buffer: valid until the next Writer.
  std::string_view view() const { return std::string_view(buffer_.data(), buffer_.size()); }
  zmq::message_t frame() const { return frame_of(view()); }

 private:
  static msgpack::sbuffer& buffer() {
    thread_local msgpack::sbuffer b(256);
    return b;
  }
  msgpack::sbuffer& buffer_;
  msgpack::packer<msgpack::sbuffer> packer_;
};

// Stats are a map so that other languages can read them by name.
const msgpack::object* find_key(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key)
      return &kv.val;
  }
  return nullptr;
}

std::uint64_t map_u64(const msgpack::object& map, std::string_view key) {
  const auto* v = find_key(map, key);
  return v && v->type == msgpack::type::POSITIVE_INTEGER ? v->via.u64 : 0;
}

double map_f64(const msgpack::object& map, std::string_view key) {
  const auto* v = find_key(map, key);
  if (!v) return 0;
  if (v->type == msgpack::type::FLOAT64 || v->type == msgpack::type::FLOAT32) return v->via.f64;
  if (v->type == msgpack::type::POSITIVE_INTEGER) return static_cast<double>(v->via.u64);
  return 0;
}

std::string map_str(const msgpack::object& map, std::string_view key) {
  const auto* v = find_key(map, key);
  return v && v->type == msgpack::type::STR ? std::string(v->via.str.ptr, v->via.str.size) : std::string();
}

std::vector<std::string> map_strs(const msgpack::object& map, std::string_view key) {
  std::vector<std::string> out;
  const auto* v = find_key(map, key);
  if (!v || v->type != msgpack::type::ARRAY) return out;
  for (std::uint32_t i = 0; i < v->via.array.size; ++i) {
    const auto& s = v->via.array.ptr[i];
    if (s.type == msgpack::type::STR) out.emplace_back(s.via.str.ptr, s.via.str.size);
  }
  return out;
}

void pack_kv(Writer& w, std::string_view key, std::uint64_t v) { w.str(key).u64(v); }
void pack_kv(Writer& w, std::string_view key, double v) { w.str(key).f64(v); }
void pack_kv(Writer& w, std::string_view key, std::string_view v) { w.str(key).str(v); }

}  // namespace

// ---- tag ------------------------------------------------------------------

zmq::message_t encode_tag(Command command) {
  const char tag[kTagFrameBytes] = {kProtocolTag[0], kProtocolTag[1], kProtocolTag[2],
                                    static_cast<char>(command)};
  return zmq::message_t(tag, sizeof tag);
}

Command decode_tag(const zmq::message_t& frame) {
  const auto* p = frame.data<char>();
  if (frame.size() != kTagFrameBytes || std::memcmp(p, kProtocolTag.data(), kProtocolTag.size()) != 0)
    throw DecodeError(ErrorCode::BadProtocol, "first frame must be the 4-byte tag MW1<command>");
  const auto byte = static_cast<std::uint8_t>(p[3]);
  if (!is_known_command(byte))
    throw DecodeError(ErrorCode::UnknownCommand, "unknown command 0x" + [&] {
      const char* hex = "0123456789abcdef";
      return std::string{hex[byte >> 4], hex[byte & 15]};
    }());
  return static_cast<Command>(byte);
}

std::array<char, 9> float64_bytes(double d) noexcept { return mw::detail::msgpack_float(d); }

std::size_t frame_count(Command command) noexcept {
  switch (command) {
    case Command::Batch:
      return 0;
    case Command::Heartbeat:
    case Command::Disconnect:
      return 1;
    case Command::Job:
    case Command::Done:
    case Command::Submit:
    case Command::Result:
    case Command::Call:
    case Command::Reply:
    case Command::Progress:
      return 3;
    default:
      return 2;
  }
}

// ---- BATCH ----------------------------------------------------------------

namespace {

[[noreturn]] void bad_batch(const std::string& why) {
  throw DecodeError(ErrorCode::BadRequest, "BATCH: " + why);
}

}  // namespace

void decode_batch_index(const zmq::message_t& index, std::vector<BatchItem>& out) {
  out.clear();
  Cursor in(index.data<char>(), index.size());
  std::uint64_t items = 0;
  if (index.size() == 0) bad_batch("index frame is empty");
  if (!in.array_header(items)) {
    const auto head = static_cast<unsigned char>(index.data<char>()[0]);
    bad_batch(head == 0xdc || head == 0xdd ? "truncated index" : "index must be an array of command, header pairs");
  }
  // Two items per entry, three for one with its payload inline.
  if (items < 2 || items > 3 * std::uint64_t{kMaxBatchEntries})
    bad_batch("index must hold 1.." + std::to_string(kMaxBatchEntries) + " command, header pairs");
  out.reserve(std::min<std::uint64_t>(items / 2, kMaxBatchEntries));
  // A bin's length, after its head byte `b`; false if `b` is not a bin head.
  const auto bin_length = [&in](unsigned b, std::uint64_t& length) {
    return b >= 0xc4 && b <= 0xc6 && in.big_endian(1 << (b - 0xc4), length);
  };
  std::uint64_t left = items;
  for (std::size_t i = 0; left > 0; ++i) {
    if (i == kMaxBatchEntries)
      bad_batch("index must hold 1.." + std::to_string(kMaxBatchEntries) + " command, header pairs");
    if (left < 2) bad_batch("an item is left over after entry " + std::to_string(i - 1));
    unsigned b = 0;
    std::uint64_t byte = 0;
    if (!in.byte(b)) bad_batch("truncated index");
    if (b <= 0x7f) {
      byte = b;
    } else if (b != 0xcc || !in.big_endian(1, byte)) {
      bad_batch("entry " + std::to_string(i) + ": command must be a small integer");
    }
    BatchItem item;
    item.inline_payload = (byte & kInlinePayloadFlag) != 0;
    byte &= ~std::uint64_t{kInlinePayloadFlag};
    if (!is_known_command(static_cast<std::uint8_t>(byte)) || frame_count(static_cast<Command>(byte)) < 2)
      bad_batch("entry " + std::to_string(i) + ": command " + std::to_string(byte) +
                " cannot be batched (a known command with a header, not BATCH)");
    item.command = static_cast<Command>(byte);
    if (item.inline_payload && frame_count(item.command) != 3)
      bad_batch("entry " + std::to_string(i) + ": " + std::string(command_name(item.command)) +
                " has no payload to carry inline (flag 0x80)");
    std::uint64_t length = 0;
    if (!in.byte(b)) bad_batch("truncated index");
    if (!bin_length(b, length)) bad_batch("entry " + std::to_string(i) + ": header must be a bin");
    if (length > kMaxHeaderBytes)
      throw DecodeError(ErrorCode::TooLarge, "BATCH: entry " + std::to_string(i) + ": header too large");
    if (!in.run(length, item.header)) bad_batch("truncated index");
    left -= 2;
    if (item.inline_payload) {
      if (left == 0) bad_batch("entry " + std::to_string(i) + ": the inline payload is missing");
      if (!in.byte(b)) bad_batch("truncated index");
      if (!bin_length(b, length)) bad_batch("entry " + std::to_string(i) + ": an inline payload must be a bin");
      if (!in.run(length, item.payload)) bad_batch("truncated index");
      --left;
    }
    out.push_back(item);
  }
  if (!in.at_end()) bad_batch("trailing bytes after the index");
}

void decode_batch(const zmq::message_t& index, std::size_t payload_frames, std::vector<BatchItem>& out) {
  decode_batch_index(index, out);
  const std::size_t needed = batch_payload_count(out);
  if (needed != payload_frames)
    bad_batch(std::to_string(payload_frames) + " payload frame(s) for an index that needs " + std::to_string(needed));
}

std::size_t batch_size_claimed(const zmq::message_t& index) noexcept {
  Cursor in(index.data<char>(), index.size());
  std::uint64_t items = 0;
  if (!in.array_header(items)) return 1;
  return std::clamp<std::uint64_t>(items / 2, 1, kMaxBatchEntries);
}

std::size_t batch_payload_count(const std::vector<BatchItem>& items) noexcept {
  std::size_t n = 0;
  for (const auto& item : items) n += frame_count(item.command) == 3 && !item.inline_payload;
  return n;
}

void Batch::add(Command command, zmq::message_t& header, zmq::message_t* payload) {
  add(command, std::string_view(header.data<char>(), header.size()), payload);
  header.rebuild();  // moved from, as the caller was told
}

void Batch::add(Command command, std::string_view header, zmq::message_t* payload) {
  commands_.push_back(command);
  header_starts_.push_back(header_bytes_.size());
  header_sizes_.push_back(header.size());
  header_bytes_.append(header);
  bytes_ += header.size();
  if (frame_count(command) == 3) add_payload(payload);
}

void Batch::add_payload(zmq::message_t* payload) {
  if (payload) {
    const std::size_t payload_bytes = payload->size();
    bytes_ += payload_bytes;
    payloads_.emplace_back(std::move(*payload));
    payload_sizes_.push_back(payload_bytes);
  } else {
    payloads_.emplace_back("\xc0", 1);
    payload_sizes_.push_back(1);
    bytes_ += 1;
  }
}

void Batch::clear() noexcept {
  commands_.clear();
  // A batch that carried a big header (a STATS, up to kMaxHeaderBytes)
  // does not keep its bytes for the peer's lifetime.
  if (header_bytes_.capacity() > kKeptHeaderBytes)
    std::string().swap(header_bytes_);
  else
    header_bytes_.clear();
  header_starts_.clear();
  header_sizes_.clear();
  payloads_.clear();
  payload_sizes_.clear();
  bytes_ = 0;
}

namespace {

// The bytes msgpack's head takes for a bin of `n` bytes, and for an array of
// `n` items (what msgpack-c's packer writes: the smallest form that fits).
std::size_t bin_head_size(std::size_t n) noexcept { return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }
std::size_t array_head_size(std::size_t n) noexcept { return n <= 15 ? 1 : n <= 0xffff ? 3 : 5; }

// A msgpack-c stream over memory already sized for what is written.
struct RawOut {
  char* at;
  void write(const char* bytes, std::size_t n) noexcept {
    std::memcpy(at, bytes, n);
    at += n;
  }
};

}  // namespace

// Written straight into the frame, whose size is worked out first.
zmq::message_t Batch::index() const {
  std::size_t items = 0;
  std::size_t size = 0;
  std::size_t p = 0;
  for (std::size_t i = 0; i < commands_.size(); ++i) {
    const bool has_payload = frame_count(commands_[i]) == 3;
    const bool inline_payload = has_payload && goes_inline(payload_sizes_[p]);
    items += inline_payload ? 3 : 2;
    // Commands are below 0x80: a positive fixint, or with the flag a uint8.
    size += (inline_payload ? 2 : 1) + bin_head_size(header_sizes_[i]) + header_sizes_[i];
    if (inline_payload) size += bin_head_size(payload_sizes_[p]) + payload_sizes_[p];
    p += has_payload;
  }
  size += array_head_size(items);
  zmq::message_t frame(size);
  RawOut out{frame.data<char>()};
  msgpack::packer<RawOut> packer(out);
  packer.pack_array(static_cast<std::uint32_t>(items));
  const auto bin = [&packer](const char* data, std::size_t bytes) {
    packer.pack_bin(static_cast<std::uint32_t>(bytes));
    packer.pack_bin_body(data, static_cast<std::uint32_t>(bytes));
  };
  p = 0;
  for (std::size_t i = 0; i < commands_.size(); ++i) {
    const bool has_payload = frame_count(commands_[i]) == 3;
    const bool inline_payload = has_payload && goes_inline(payload_sizes_[p]);
    packer.pack_uint8(static_cast<std::uint8_t>(commands_[i]) | (inline_payload ? kInlinePayloadFlag : 0));
    bin(header_bytes_.data() + header_starts_[i], header_sizes_[i]);
    if (inline_payload) bin(payloads_[p].data<char>(), payload_sizes_[p]);
    p += has_payload;
  }
  return frame;
}

// ---- encode ---------------------------------------------------------------

zmq::message_t encode(const Hello& m) {
  Writer w;
  w.array(5).str(m.role).str(m.name).u64(m.version);
  if (m.batch) w.u64(m.batch); else w.nil();
  w.boolean(m.inline_payloads);
  return w.frame();
}

zmq::message_t encode(const Welcome& m) {
  Writer w;
  w.array(7).str(m.pub_address).u64(m.heartbeat_ms).str(m.broker_version).u64(m.max_message_bytes);
  if (m.batch) w.u64(m.batch); else w.nil();
  w.boolean(m.progress).boolean(m.inline_payloads);
  return w.frame();
}

zmq::message_t encode(const Ready& m) {
  Writer w;
  w.array(6);
  w.array(static_cast<std::uint32_t>(m.types.size()));
  for (auto t : m.types) w.str(t);
  w.str(m.next).u64(m.credit).str(m.host).u64(m.pid).boolean(m.cancel);
  return w.frame();
}

std::string_view encode_view(const JobHeader& m) {
  Writer w;
  w.array(5).u64(m.job_id).str(m.type).u64(m.attempt).u64(m.flow_id);
  if (m.entity.empty()) w.nil(); else w.str(m.entity);
  return w.view();
}

zmq::message_t encode(const JobHeader& m) { return frame_of(encode_view(m)); }

zmq::message_t encode(const Done& m) {
  Writer w;
  w.array(m.attempt ? 3 : 2).u64(m.job_id);
  if (m.next) w.str(*m.next); else w.nil();
  if (m.attempt) w.u64(m.attempt);
  return w.frame();
}

zmq::message_t encode(const Fail& m) {
  Writer w;
  w.array(m.attempt ? 4 : 3).u64(m.job_id).str(m.error).boolean(m.retryable);
  if (m.attempt) w.u64(m.attempt);
  return w.frame();
}

zmq::message_t encode(const Submit& m) {
  Writer w;
  w.array(9).u64(m.request_id).str(m.type).boolean(m.wait).u64(m.max_attempts);
  if (m.entity.empty()) w.nil(); else w.str(m.entity);
  w.u64(m.delay_ms);
  w.pack().pack(m.priority);
  if (m.key.empty()) w.nil(); else w.str(m.key);
  w.u64(m.lease_ms);
  return w.frame();
}

zmq::message_t encode(const Accepted& m) {
  Writer w;
  w.array(2).u64(m.request_id).u64(m.flow_id);
  return w.frame();
}

std::string_view encode_view(const Result& m) {
  Writer w;
  w.array(5).u64(m.flow_id).str(m.outcome);
  if (m.error.empty()) w.nil(); else w.str(m.error);
  w.str(m.last_type).u64(m.attempts);
  return w.view();
}

zmq::message_t encode(const Result& m) { return frame_of(encode_view(m)); }

zmq::message_t encode(const StatusRequest& m) {
  Writer w;
  w.array(1).u64(m.request_id);
  return w.frame();
}

zmq::message_t encode(const WaitRequest& m) {
  Writer w;
  w.array(2).u64(m.request_id).u64(m.flow_id);
  return w.frame();
}

zmq::message_t encode(const CancelJob& m) {
  Writer w;
  w.array(1).u64(m.job_id);
  return w.frame();
}

zmq::message_t encode(const JobProgress& m) {
  Writer w;
  w.array(m.attempt ? 2 : 1).u64(m.job_id);
  if (m.attempt) w.u64(m.attempt);
  return w.frame();
}

zmq::message_t encode(const Call& m) {
  Writer w;
  w.array(4).u64(m.request_id).str(m.endpoint).str(m.method);
  if (m.id) w.str(*m.id); else w.nil();
  return w.frame();
}

zmq::message_t encode(const Reply& m) {
  Writer w;
  w.array(3).u64(m.request_id).u64(m.code);
  if (m.message.empty()) w.nil(); else w.str(m.message);
  return w.frame();
}

zmq::message_t encode(const ErrorReply& m) {
  Writer w;
  w.array(3).u64(static_cast<std::uint16_t>(m.code)).str(m.message).u64(m.request_id);
  return w.frame();
}

zmq::message_t encode(const Stats& m) {
  Writer w;
  w.array(2).u64(m.request_id);
  w.pack().pack_map(24);
  pack_kv(w, "broker_version", std::string_view(m.broker_version));
  pack_kv(w, "uptime_ms", m.uptime_ms);
  pack_kv(w, "store", std::string_view(m.store));
  pack_kv(w, "submitted", m.submitted);
  pack_kv(w, "done", m.done);
  pack_kv(w, "failed", m.failed);
  pack_kv(w, "dead", m.dead);
  pack_kv(w, "retried", m.retried);
  pack_kv(w, "requeued", m.requeued);
  pack_kv(w, "stale", m.stale);
  pack_kv(w, "lease_expired", m.lease_expired);
  pack_kv(w, "recovered", m.recovered);
  pack_kv(w, "delayed", m.delayed);
  pack_kv(w, "rss_bytes", m.rss_bytes);
  pack_kv(w, "waiting", m.waiting);
  pack_kv(w, "waiting_bytes", m.waiting_bytes);
  pack_kv(w, "max_waiting", m.max_waiting);
  pack_kv(w, "max_waiting_bytes", m.max_waiting_bytes);
  pack_kv(w, "refused", m.refused);
  pack_kv(w, "cancelled", m.cancelled);
  pack_kv(w, "submitted_per_second", m.submitted_per_second);
  pack_kv(w, "done_per_second", m.done_per_second);
  w.str("types").array(static_cast<std::uint32_t>(m.types.size()));
  for (const auto& t : m.types) {
    w.pack().pack_map(15);
    pack_kv(w, "type", std::string_view(t.type));
    pack_kv(w, "workers", std::uint64_t{t.workers});
    pack_kv(w, "queued", t.queued);
    pack_kv(w, "oldest_queued_ms", t.oldest_queued_ms);
    pack_kv(w, "in_flight", t.in_flight);
    pack_kv(w, "done", t.done);
    pack_kv(w, "failed", t.failed);
    pack_kv(w, "dead", t.dead);
    pack_kv(w, "done_per_second", t.done_per_second);
    pack_kv(w, "delayed", t.delayed);
    pack_kv(w, "rate_max", std::uint64_t{t.rate_max});
    pack_kv(w, "rate_period_ms", t.rate_period_ms);
    pack_kv(w, "rate_held", t.rate_held);
    pack_kv(w, "max_waiting", t.max_waiting);
    pack_kv(w, "refused", t.refused);
  }
  w.str("workers").array(static_cast<std::uint32_t>(m.workers.size()));
  for (const auto& wi : m.workers) {
    w.pack().pack_map(9);
    pack_kv(w, "id", std::string_view(wi.id));
    w.str("types").array(static_cast<std::uint32_t>(wi.types.size()));
    for (const auto& t : wi.types) w.str(t);
    pack_kv(w, "next", std::string_view(wi.next));
    pack_kv(w, "host", std::string_view(wi.host));
    pack_kv(w, "pid", std::uint64_t{wi.pid});
    pack_kv(w, "credit", std::uint64_t{wi.credit});
    pack_kv(w, "in_flight", std::uint64_t{wi.in_flight});
    pack_kv(w, "done", wi.done);
    pack_kv(w, "expired", std::uint64_t{wi.expired});
  }
  return w.frame();
}

zmq::message_t encode(const EventMeta& m) {
  Writer w;
  w.pack().pack_map(5);
  pack_kv(w, "seq", m.seq);
  pack_kv(w, "flow", m.flow_id);
  pack_kv(w, "type", m.type);
  pack_kv(w, "error", m.error);
  pack_kv(w, "run", m.run);
  return w.frame();
}

// ---- decode ---------------------------------------------------------------

Hello decode_hello(const zmq::message_t& frame) {
  Fields f(frame, 3, "HELLO");
  return {f.str(0, "role"), f.str(1, "name"), f.u32(2, "version"), batch_limit(f, 3),
          f.has(4) && f.boolean(4, "inline payloads")};
}

Welcome decode_welcome(const zmq::message_t& frame) {
  Fields f(frame, 4, "WELCOME");
  return {f.str(0, "pub address"), f.u32(1, "heartbeat ms"), f.str(2, "broker version"),
          f.u64(3, "max message bytes"), batch_limit(f, 4), f.has(5) && f.boolean(5, "progress"),
          f.has(6) && f.boolean(6, "inline payloads")};
}

Ready decode_ready(const zmq::message_t& frame) {
  Fields f(frame, 5, "READY");
  Ready m;
  const auto& types = f.at(0);
  if (types.type != msgpack::type::ARRAY || types.via.array.size == 0 ||
      types.via.array.size > kMaxTypesPerWorker)
    f.fail("types", "an array of 1..64 type names");
  m.types.reserve(types.via.array.size);
  for (std::uint32_t i = 0; i < types.via.array.size; ++i) {
    const auto& t = types.via.array.ptr[i];
    if (t.type != msgpack::type::STR) f.fail("types", "an array of strings");
    m.types.push_back(type_name({t.via.str.ptr, t.via.str.size}, "READY"));
  }
  m.next = next_type_name(f.str_or_empty(1, "next"), "READY next");
  m.credit = f.u32(2, "credit");
  if (m.credit > kMaxCredit) f.fail("credit", "0..10000");
  m.host = f.str_or_empty(3, "host");
  m.pid = f.u32(4, "pid");
  m.cancel = f.has(5) && f.boolean(5, "cancel");
  return m;
}

JobHeader decode_job(const zmq::message_t& frame) {
  Fields f(frame, 4, "JOB");
  JobHeader m;
  m.job_id = f.u64(0, "job id");
  m.type = f.str(1, "type");
  m.attempt = f.u32(2, "attempt");
  m.flow_id = f.u64(3, "flow id");
  m.entity = f.str_or_empty(4, "entity");
  return m;
}

Done decode_done(const zmq::message_t& frame) {
  Fields f(frame, 1, "DONE");
  Done m;
  m.job_id = f.u64(0, "job id");
  if (f.has(1)) {
    m.next = next_type_name(f.str(1, "next"), "DONE next");
  }
  m.attempt = f.has(2) ? f.u32(2, "attempt") : 0;
  return m;
}

Fail decode_fail(const zmq::message_t& frame) {
  Fields f(frame, 2, "FAIL");
  Fail m;
  m.job_id = f.u64(0, "job id");
  m.error = f.str(1, "error");
  m.retryable = f.has(2) ? f.boolean(2, "retryable") : true;
  m.attempt = f.has(3) ? f.u32(3, "attempt") : 0;
  return m;
}

Submit decode_submit(const zmq::message_t& frame) {
  Fields f(frame, 2, "SUBMIT");
  Submit m;
  m.request_id = f.u64(0, "request id");
  m.type = type_name(f.str(1, "type"), "SUBMIT");
  m.wait = f.has(2) ? f.boolean(2, "wait") : false;
  m.max_attempts = f.has(3) ? f.u32(3, "max attempts") : 0;
  m.entity = f.str_or_empty(4, "entity");
  if (m.entity.size() > 512) f.fail("entity", "at most 512 bytes");
  m.delay_ms = f.has(5) ? f.u64(5, "delay") : 0;
  if (m.delay_ms > kMaxSubmitDelayMs) f.fail("delay", "at most 10 years in ms (315360000000)");
  if (f.has(6)) {
    const std::int64_t priority = f.i64(6, "priority");
    if (priority < -kMaxPriority || priority > kMaxPriority) f.fail("priority", "between -1000 and 1000");
    m.priority = static_cast<std::int32_t>(priority);
  }
  m.key = f.str_or_empty(7, "key");
  if (m.key.size() > kMaxKeyBytes) f.fail("key", "at most 256 bytes");
  if (!m.key.empty() && m.key.front() == '$') f.fail("key", "not starting with '$' (reserved for the broker)");
  m.lease_ms = f.has(8) ? f.u64(8, "lease") : 0;
  if (m.lease_ms > kMaxSubmitDelayMs) f.fail("lease", "at most 10 years in ms (315360000000)");
  return m;
}

Accepted decode_accepted(const zmq::message_t& frame) {
  Fields f(frame, 2, "ACCEPTED");
  return {f.u64(0, "request id"), f.u64(1, "flow id")};
}

Result decode_result(const zmq::message_t& frame) {
  Fields f(frame, 4, "RESULT");
  Result m;
  m.flow_id = f.u64(0, "flow id");
  m.outcome = f.str(1, "outcome");
  m.error = f.str_or_empty(2, "error");
  m.last_type = f.str(3, "last type");
  m.attempts = f.has(4) ? f.u32(4, "attempts") : 0;
  return m;
}

StatusRequest decode_status(const zmq::message_t& frame) {
  Fields f(frame, 1, "STATUS");
  return {f.u64(0, "request id")};
}

WaitRequest decode_wait(const zmq::message_t& frame) {
  Fields f(frame, 2, "WAIT");
  WaitRequest m{f.u64(0, "request id"), f.u64(1, "flow id")};
  if (m.flow_id == 0) f.fail("flow id", "a flow id (1 or more)");
  return m;
}

CancelJob decode_cancel(const zmq::message_t& frame) {
  Fields f(frame, 1, "CANCEL");
  return {f.u64(0, "job id")};
}

JobProgress decode_progress(const zmq::message_t& frame) {
  Fields f(frame, 1, "PROGRESS");
  return {f.u64(0, "job id"), f.has(1) ? f.u32(1, "attempt") : 0};
}

Call decode_call(const zmq::message_t& frame) {
  Fields f(frame, 3, "CALL");
  Call m;
  m.request_id = f.u64(0, "request id");
  m.endpoint = f.str(1, "endpoint");
  m.method = f.str(2, "method");
  if (f.has(3)) {
    const auto& id = f.at(3);
    if (id.type != msgpack::type::STR) f.fail("id", "a string or nil");
    m.id = std::string_view(id.via.str.ptr, id.via.str.size);
  }
  return m;
}

Reply decode_reply(const zmq::message_t& frame) {
  Fields f(frame, 2, "REPLY");
  Reply m;
  m.request_id = f.u64(0, "request id");
  const auto code = f.u32(1, "code");
  if (code > 0xffff) f.fail("code", "0..65535");
  m.code = static_cast<std::uint16_t>(code);
  m.message = f.str_or_empty(2, "message");
  return m;
}

ErrorReply decode_error(const zmq::message_t& frame) {
  Fields f(frame, 2, "ERROR");
  ErrorReply m;
  m.code = static_cast<ErrorCode>(f.u32(0, "code"));
  m.message = f.str(1, "message");
  m.request_id = f.has(2) ? f.u64(2, "request id") : 0;
  return m;
}

Stats decode_stats(const zmq::message_t& frame) {
  Fields f(frame, 2, "STATS");
  Stats s;
  s.request_id = f.u64(0, "request id");
  const auto& map = f.at(1);
  if (map.type != msgpack::type::MAP) f.fail("stats", "a map");
  s.broker_version = map_str(map, "broker_version");
  s.uptime_ms = map_u64(map, "uptime_ms");
  s.store = map_str(map, "store");
  s.submitted = map_u64(map, "submitted");
  s.done = map_u64(map, "done");
  s.failed = map_u64(map, "failed");
  s.dead = map_u64(map, "dead");
  s.retried = map_u64(map, "retried");
  s.requeued = map_u64(map, "requeued");
  s.stale = map_u64(map, "stale");
  s.lease_expired = map_u64(map, "lease_expired");
  s.recovered = map_u64(map, "recovered");
  s.delayed = map_u64(map, "delayed");
  s.rss_bytes = map_u64(map, "rss_bytes");
  s.waiting = map_u64(map, "waiting");
  s.waiting_bytes = map_u64(map, "waiting_bytes");
  s.max_waiting = map_u64(map, "max_waiting");
  s.max_waiting_bytes = map_u64(map, "max_waiting_bytes");
  s.refused = map_u64(map, "refused");
  s.cancelled = map_u64(map, "cancelled");
  s.submitted_per_second = map_f64(map, "submitted_per_second");
  s.done_per_second = map_f64(map, "done_per_second");
  if (const auto* types = find_key(map, "types"); types && types->type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < types->via.array.size; ++i) {
      const auto& t = types->via.array.ptr[i];
      s.types.push_back({map_str(t, "type"), static_cast<std::uint32_t>(map_u64(t, "workers")),
                         map_u64(t, "queued"), map_u64(t, "oldest_queued_ms"), map_u64(t, "in_flight"),
                         map_u64(t, "done"), map_u64(t, "failed"), map_u64(t, "dead"),
                         map_f64(t, "done_per_second"), map_u64(t, "delayed"),
                         static_cast<std::uint32_t>(std::min<std::uint64_t>(map_u64(t, "rate_max"), UINT32_MAX)),
                         map_u64(t, "rate_period_ms"), map_u64(t, "rate_held"), map_u64(t, "max_waiting"),
                         map_u64(t, "refused")});
    }
  }
  if (const auto* workers = find_key(map, "workers"); workers && workers->type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < workers->via.array.size; ++i) {
      const auto& w = workers->via.array.ptr[i];
      s.workers.push_back({map_str(w, "id"), map_strs(w, "types"), map_str(w, "next"), map_str(w, "host"),
                           static_cast<std::uint32_t>(map_u64(w, "pid")),
                           static_cast<std::uint32_t>(map_u64(w, "credit")),
                           static_cast<std::uint32_t>(map_u64(w, "in_flight")), map_u64(w, "done"),
                           static_cast<std::uint32_t>(map_u64(w, "expired"))});
    }
  }
  return s;
}

EventMeta decode_event_meta(const zmq::message_t& frame) {
  if (frame.size() > kMaxHeaderBytes) throw DecodeError(ErrorCode::TooLarge, "event meta too large");
  const msgpack::object map = unpack_bounded(frame.data<char>(), frame.size(), 8);
  if (map.type != msgpack::type::MAP) throw DecodeError(ErrorCode::BadRequest, "event meta is not a map");
  EventMeta m;
  m.seq = map_u64(map, "seq");
  m.flow_id = map_u64(map, "flow");
  if (const auto* v = find_key(map, "type"); v && v->type == msgpack::type::STR) m.type = {v->via.str.ptr, v->via.str.size};
  if (const auto* v = find_key(map, "error"); v && v->type == msgpack::type::STR) m.error = {v->via.str.ptr, v->via.str.size};
  m.run = map_u64(map, "run");
  return m;
}

std::uint64_t peek_request_id(const zmq::message_t& frame) noexcept {
  // Only the array header and the first element are read, so that a
  // header broken further on (truncated, too deep, trailing bytes) still
  // gets its ERROR addressed to the request it belongs to.
  if (frame.size() > kMaxHeaderBytes) return 0;
  Cursor in(frame.data<char>(), frame.size());
  std::uint64_t count = 0;
  unsigned head = 0;
  if (!in.array_header(count) || count == 0 || !in.byte(head)) return 0;
  if (head <= 0x7f) return head;  // positive fixint
  std::uint64_t value = 0;
  if (head >= 0xcc && head <= 0xcf && in.big_endian(1 << (head - 0xcc), value)) return value;  // uint 8..64
  return 0;
}

void check_msgpack(std::span<const char> bytes, std::size_t max_depth) {
  (void)unpack_bounded(bytes.data(), bytes.size(), max_depth);
}

}  // namespace mw::wire
