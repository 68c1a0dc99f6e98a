// Hostile input at the broker's port: raw bytes that are not ZMTP, and ZMTP
// messages that are not MW/1. The broker answers ERROR where it can, stays
// up, keeps its memory bounded, and well-behaved peers do not notice.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

#include <doctest/doctest.h>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "cluster.hpp"
#include "mw/client.hpp"
#include "mw/wire.hpp"

using namespace mwtest;

namespace {

constexpr std::size_t kMaxMessageBytes = 65536;

std::string tag(mw::Command command) { return std::string(mw::kProtocolTag) + static_cast<char>(command); }

std::string bytes_of(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

std::string valid_submit_header() {
  mw::wire::Submit submit;
  submit.request_id = 42;
  submit.type = "sampleworker";
  return bytes_of(mw::wire::encode(submit));
}

std::string job_header() {
  mw::wire::JobHeader job;
  job.job_id = 1;
  job.type = "t";
  job.flow_id = 1;
  return bytes_of(mw::wire::encode(job));
}

std::string hello_header(std::uint32_t version) {
  mw::wire::Hello hello;
  hello.role = mw::kRoleClient;
  hello.name = "hostile";
  hello.version = version;
  return bytes_of(mw::wire::encode(hello));
}

std::string ready_header(std::string_view type) {
  mw::wire::Ready ready;
  ready.types = {type};
  ready.host = "h";
  ready.pid = 1;
  return bytes_of(mw::wire::encode(ready));
}

// A BATCH index frame: [command, header (bin)] for each entry.
std::string batch_index(const std::vector<std::pair<mw::Command, std::string>>& entries) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(2 * entries.size()));
  for (const auto& [command, header] : entries) {
    packer.pack_uint8(static_cast<std::uint8_t>(command));
    packer.pack_bin(static_cast<std::uint32_t>(header.size()));
    packer.pack_bin_body(header.data(), static_cast<std::uint32_t>(header.size()));
  }
  return std::string(buffer.data(), buffer.size());
}

// A BATCH index with payloads inside it (PROTOCOL.md §2.1): an entry with a
// payload gets the command's 0x80 bit and the payload as a third item.
std::string inline_batch_index(
    const std::vector<std::tuple<mw::Command, std::string, std::optional<std::string>>>& entries) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  std::uint32_t items = 0;
  for (const auto& entry : entries) items += std::get<2>(entry) ? 3 : 2;
  packer.pack_array(items);
  const auto bin = [&packer](const std::string& bytes) {
    packer.pack_bin(static_cast<std::uint32_t>(bytes.size()));
    packer.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
  };
  for (const auto& [command, header, payload] : entries) {
    packer.pack_uint8(static_cast<std::uint8_t>(command) | (payload ? mw::kInlinePayloadFlag : 0));
    bin(header);
    if (payload) bin(*payload);
  }
  return std::string(buffer.data(), buffer.size());
}

std::string random_bytes(std::size_t n, std::mt19937& rng) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// A DEALER that sends whatever frames it is given.
class RawPeer {
 public:
  RawPeer(zmq::context_t& context, const std::string& address) : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::rcvhwm, 0);
    socket_.set(zmq::sockopt::sndhwm, 0);
    socket_.connect(address);
  }

  void send(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i)
      socket_.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }

  // The next whole message, or nullopt after `timeout`.
  std::optional<std::vector<zmq::message_t>> receive(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    std::vector<zmq::message_t> frames;
    for (;;) {
      zmq::message_t m;
      (void)socket_.recv(m);
      const bool more = m.more();
      frames.push_back(std::move(m));
      if (!more) return frames;
    }
  }

 private:
  zmq::socket_t socket_;
};

struct ErrorSeen {
  mw::ErrorCode code{};
  std::string message;
  std::uint64_t request_id = 0;
};

// Sends `frames` and returns the broker's ERROR reply, decoded. Fails the
// test when the reply is missing or not an ERROR.
std::optional<ErrorSeen> expect_error(RawPeer& peer, const std::vector<std::string>& frames) {
  peer.send(frames);
  auto reply = peer.receive(5s);
  if (!reply) {
    FAIL_CHECK("no reply within 5 s");
    return std::nullopt;
  }
  if (reply->size() != 2 || mw::wire::decode_tag((*reply)[0]) != mw::Command::Error) {
    FAIL_CHECK("reply is not a 2-frame ERROR (frames: " << reply->size() << ")");
    return std::nullopt;
  }
  const auto e = mw::wire::decode_error((*reply)[1]);
  return ErrorSeen{e.code, std::string(e.message), e.request_id};
}

// Writes `bytes` on a plain TCP connection to 127.0.0.1:`port`, then reads
// until the broker hangs up or `linger` passes. Returns true if it hung up.
// (ZeroMQ takes bytes that do not start with 0xff for a ZMTP 1.0 peer, so
// much garbage is a slow handshake rather than a reason to hang up.)
bool write_raw_tcp(int port, std::string_view bytes, std::chrono::milliseconds linger) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval send_timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool hung_up = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    const auto deadline = Clock::now() + linger;
    char buffer[4096];
    while (!hung_up && Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) continue;
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      hung_up = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
  }
  ::close(fd);
  return hung_up;
}

// A ZMTP 3.0 DEALER handshake (NULL mechanism) followed by a frame whose
// 8-byte length claims ~2^62 bytes.
std::string zmtp_with_huge_frame_claim() {
  std::string g(64, '\0');
  g[0] = '\xff';
  g[9] = '\x7f';
  g[10] = 3;  // major
  g[11] = 0;  // minor
  g.replace(12, 4, "NULL");
  std::string ready_body = "\x05READY";
  ready_body += '\x0b';
  ready_body += "Socket-Type";
  ready_body += std::string("\0\0\0\x06", 4);
  ready_body += "DEALER";
  std::string out = g;
  out += '\x04';  // command, short
  out += static_cast<char>(ready_body.size());
  out += ready_body;
  out += '\x02';  // message, long size follows
  out += std::string("\x3f\xff\xff\xff\xff\xff\xff\xff", 8);
  out += "not nearly that many bytes";
  return out;
}

// Every malformed MW/1 message the flood cycles through, with the code the
// broker must answer. All keep the connection (none exceeds a frame limit).
struct BadMessage {
  const char* what;
  std::vector<std::string> frames;
  mw::ErrorCode expected;
};

std::vector<BadMessage> bad_messages() {
  using mw::Command;
  using mw::ErrorCode;
  std::string too_deep(200, '\x91');
  too_deep += '\xc0';
  std::vector<std::string> twenty_frames{tag(Command::Submit)};
  for (int i = 0; i < 19; ++i) twenty_frames.push_back("x");
  const std::string long_type(1000, 't');
  std::vector<std::string> two_thousand_frames{tag(Command::Batch)};
  for (int i = 0; i < 1999; ++i) two_thousand_frames.push_back("\xc0");
  return {
      {"wrong tag", {"XYZ\x07", valid_submit_header(), "\xc0"}, ErrorCode::BadProtocol},
      {"empty tag frame", {""}, ErrorCode::BadProtocol},
      {"unknown command byte", {std::string("MW1\x7f"), "\x90"}, ErrorCode::UnknownCommand},
      {"SUBMIT without payload frame", {tag(Command::Submit), valid_submit_header()}, ErrorCode::BadRequest},
      {"STATUS without header", {tag(Command::Status)}, ErrorCode::BadRequest},
      {"HEARTBEAT with a header", {tag(Command::Heartbeat), "x"}, ErrorCode::BadRequest},
      {"garbage msgpack header", {tag(Command::Submit), "\xc1\xc1garbage", "\xc0"}, ErrorCode::BadRequest},
      {"array32 of 4G elements", {tag(Command::Submit), std::string("\xdd\xff\xff\xff\xff"), "\xc0"},
       ErrorCode::BadRequest},
      {"str32 claiming 4 GB", {tag(Command::Status), std::string("\x91\xdb\xff\xff\xff\xff", 6)}, ErrorCode::BadRequest},
      {"nesting 200 deep", {tag(Command::Status), too_deep}, ErrorCode::BadRequest},
      {"20 frames", twenty_frames, ErrorCode::BadRequest},
      {"header of the wrong shape", {tag(Command::Status), "\x90"}, ErrorCode::BadRequest},
      {"JOB sent to the broker",
       {tag(Command::Job), job_header(), "\xc0"},
       ErrorCode::BadRequest},
      {"HELLO of protocol version 99",
       {tag(Command::Hello), hello_header(99)},
       ErrorCode::BadProtocol},
      {"READY with a 1000-byte type",
       {tag(Command::Ready), ready_header(long_type)},
       ErrorCode::BadRequest},
      {"SUBMIT with an empty payload frame", {tag(Command::Submit), valid_submit_header(), ""}, ErrorCode::BadRequest},
      {"BATCH without its index", {tag(Command::Batch)}, ErrorCode::BadRequest},
      {"BATCH whose index is not msgpack", {tag(Command::Batch), "\xc1"}, ErrorCode::BadRequest},
      {"BATCH missing a payload its index needs",
       {tag(Command::Batch), batch_index({{Command::Submit, valid_submit_header()}})}, ErrorCode::BadRequest},
      {"BATCH inside a BATCH",
       {tag(Command::Batch), batch_index({{Command::Batch, valid_submit_header()}}), "\xc0"}, ErrorCode::BadRequest},
      {"BATCH of 2000 frames", two_thousand_frames, ErrorCode::BadRequest},
      {"BATCH with the inline bit on a command without a payload",
       {tag(Command::Batch), inline_batch_index({{Command::Status, bytes_of(mw::wire::encode(mw::wire::StatusRequest{1})),
                                                  std::string("\xc0")}})},
       ErrorCode::BadRequest},
      {"BATCH whose inline payload is a str, not a bin",
       {tag(Command::Batch), std::string("\x93\xcc\x87") + inline_batch_index({{Command::Submit, valid_submit_header(),
                                                                                 std::nullopt}}).substr(2) + "\xa1x"},
       ErrorCode::BadRequest},
      {"frames under the limit, message over it",
       {tag(Command::Submit), std::string(40000, 'a'), std::string(40000, 'b')}, ErrorCode::TooLarge},
  };
}

// Submits sample flows until stopped, checking each result.
struct WellBehavedClient {
  std::atomic<int> completed{0};
  std::mutex mutex;
  std::vector<std::string> failures;
  std::jthread thread;

  explicit WellBehavedClient(const std::string& address)
      : thread([this, address](std::stop_token stop) {
          mw::Client client({address});
          for (int i = 0; !stop.stop_requested(); ++i) {
            const double x = 0.01 * i;
            try {
              auto outcome = client.submit_and_wait("sampleworker", mw::Payload::of(x), 10s);
              if (!outcome || !outcome->done ||
                  std::abs(outcome->result.to_json().at("value").get<double>() - std::sin(x)) > 1e-12) {
                std::lock_guard lock(mutex);
                failures.push_back("flow " + std::to_string(i) + ": " +
                                   (outcome ? outcome->error + " " + outcome->result.to_json_text() : "no result"));
              } else {
                ++completed;
              }
            } catch (const std::exception& e) {
              std::lock_guard lock(mutex);
              failures.push_back("flow " + std::to_string(i) + ": " + e.what());
            }
          }
        }) {}
};

}  // namespace

TEST_CASE("hostile input: the broker answers ERROR, stays up and bounded, and serves valid peers") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--max-message-bytes", std::to_string(kMaxMessageBytes)});
  cluster.start_worker("sample_worker", binaries().sample_worker);
  cluster.start_worker("next_worker", binaries().next_worker);
  REQUIRE(cluster.wait_for_workers("sampleworker", 1));
  REQUIRE(cluster.wait_for_workers("nextworker", 1));

  WellBehavedClient good(cluster.address());
  std::mt19937 rng(12345);
  zmq::context_t context(1);

  SUBCASE("raw bytes that are not ZMTP, and a ZMTP frame claiming 2^62 bytes") {
    write_raw_tcp(cluster.port(), random_bytes(64 * 1024, rng), 200ms);
    write_raw_tcp(cluster.port(), "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 200ms);
    // Garbage after a plausible ZMTP signature.
    write_raw_tcp(cluster.port(), std::string("\xff\0\0\0\0\0\0\0\x01\x7f", 10) + random_bytes(4096, rng), 200ms);
    // A frame over --max-message-bytes is refused before it is read: the
    // broker hangs up instead of trying to buffer 2^62 bytes.
    CHECK(write_raw_tcp(cluster.port(), zmtp_with_huge_frame_claim(), 5s));
    CHECK(cluster.broker().running());
  }

  SUBCASE("malformed MW/1 messages each get the right ERROR") {
    RawPeer peer(context, cluster.address());
    for (const auto& bad : bad_messages()) {
      INFO("case: " << bad.what);
      const auto e = expect_error(peer, bad.frames);
      REQUIRE(e.has_value());
      CHECK(e->code == bad.expected);
      CHECK_FALSE(e->message.empty());
      CHECK(e->message.size() < 300);  // one short line, not an echo of the input
    }
    // A single frame over --max-message-bytes: ZeroMQ cuts the connection
    // (no reply is possible), and the broker goes on.
    RawPeer big(context, cluster.address());
    big.send({tag(mw::Command::Submit), valid_submit_header(), std::string(kMaxMessageBytes + 1000, 'z')});
    CHECK_FALSE(big.receive(500ms).has_value());
    CHECK(cluster.broker().running());
  }

  SUBCASE("a flood of 10000 bad messages and 200 garbage connections leaves RSS bounded") {
    const auto before = resident_kib(cluster.broker().pid());
    REQUIRE(before.has_value());
    const auto bad = bad_messages();
    RawPeer peer(context, cluster.address());
    constexpr int kFlood = 10000;
    int replies = 0;
    auto drain = [&](std::chrono::milliseconds wait) {
      while (auto reply = peer.receive(wait)) {
        REQUIRE(reply->size() == 2);
        REQUIRE(mw::wire::decode_tag((*reply)[0]) == mw::Command::Error);
        ++replies;
        wait = 0ms;
      }
    };
    for (int i = 0; i < kFlood; ++i) {
      peer.send(bad[static_cast<std::size_t>(i) % bad.size()].frames);
      if (i % 100 == 99) drain(0ms);
    }
    REQUIRE(wait_until(
        [&] {
          drain(50ms);
          return replies >= kFlood;
        },
        20s, 1ms));
    CHECK(replies == kFlood);
    for (int i = 0; i < 200; ++i) {
      const auto n = std::uniform_int_distribution<std::size_t>(1, 8192)(rng);
      write_raw_tcp(cluster.port(), random_bytes(n, rng), 0ms);
    }
    REQUIRE(cluster.broker().running());
    const auto after = resident_kib(cluster.broker().pid());
    REQUIRE(after.has_value());
    MESSAGE("broker RSS " << *before << " KiB before, " << *after << " KiB after the flood");
    // AddressSanitizer keeps freed memory in quarantine (256 MiB by
    // default) instead of reusing it, which RSS counts: allow for it there.
#if defined(__SANITIZE_ADDRESS__)
    constexpr long kQuarantineKib = 256 * 1024;
#else
    constexpr long kQuarantineKib = 0;
#endif
    CHECK(*after - *before < 100 * 1024 + kQuarantineKib);
    // Bad input is logged with a limiter, not once per message.
    const auto log = cluster.broker().stderr_text();
    CHECK(std::count(log.begin(), log.end(), '\n') < 1000);
  }

  // Whatever came before, the broker still serves: a new flow completes,
  // and the client that ran all along saw nothing wrong.
  REQUIRE(cluster.broker().running());
  const auto r = cluster.mw({"submit", "sampleworker", "0.5", "--wait", "--timeout", "20"});
  CHECK(r.exit_status == 0);
  CHECK(nlohmann::json::parse(r.out).at("value").get<double>() == doctest::Approx(std::sin(0.5)).epsilon(1e-12));
  REQUIRE(wait_until([&] { return good.completed.load() >= 3; }, 20s));
  good.thread.request_stop();
  good.thread.join();
  std::lock_guard lock(good.mutex);
  CHECK(good.failures.empty());
  for (const auto& f : good.failures) MESSAGE(f);
}

namespace {

// HELLO from a client that takes BATCHes of up to 16 messages.
void say_hello_as_client(RawPeer& peer, std::string_view name, bool inline_payloads) {
  mw::wire::Hello hello;
  hello.role = mw::kRoleClient;
  hello.name = name;
  hello.batch = 16;
  hello.inline_payloads = inline_payloads;
  peer.send({tag(mw::Command::Hello), bytes_of(mw::wire::encode(hello))});
}

}  // namespace

// A peer written from docs/PROTOCOL.md alone: it announces BATCH in HELLO,
// sends SUBMITs in a BATCH, and reads the broker's answers, which may come
// batched, in order.
TEST_CASE("BATCH both ways with a hand-written peer") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  zmq::context_t context(1);
  RawPeer peer(context, cluster.address());

  say_hello_as_client(peer, "batching-peer", /*inline_payloads=*/false);

  // Each answer as (command, header bytes), BATCHes unpacked.
  std::vector<std::pair<mw::Command, std::string>> answers;
  int batches = 0;
  auto read_answers = [&](std::size_t want) {
    return wait_until(
        [&] {
          while (answers.size() < want) {
            auto frames = peer.receive(50ms);
            if (!frames) return false;
            const auto command = mw::wire::decode_tag(frames->at(0));
            if (command == mw::Command::Heartbeat) continue;  // it said HELLO: the broker heartbeats it
            if (command != mw::Command::Batch) {
              answers.emplace_back(command, bytes_of(frames->at(1)));
              continue;
            }
            ++batches;
            std::vector<mw::wire::BatchItem> items;
            mw::wire::decode_batch_index(frames->at(1), items);
            REQUIRE(mw::wire::batch_payload_count(items) == frames->size() - 2);
            for (const auto& item : items) answers.emplace_back(item.command, std::string(item.header));
          }
          return true;
        },
        10s, 1ms);
  };
  REQUIRE(read_answers(1));
  REQUIRE(answers[0].first == mw::Command::Welcome);
  const auto welcome = mw::wire::decode_welcome(zmq::message_t(answers[0].second.data(), answers[0].second.size()));
  CHECK(welcome.batch == mw::kMaxBatchEntries);

  // 40 SUBMITs in two BATCHes of 20: 40 ACCEPTEDs, in order, at most 16 to a BATCH.
  std::vector<std::string> frames;
  for (std::uint64_t batch = 0; batch < 2; ++batch) {
    std::vector<std::pair<mw::Command, std::string>> entries;
    std::vector<std::string> payloads;
    for (std::uint64_t i = 1; i <= 20; ++i) {
      mw::wire::Submit submit;
      submit.request_id = batch * 20 + i;
      submit.type = "nobody.serves.this";
      entries.emplace_back(mw::Command::Submit, bytes_of(mw::wire::encode(submit)));
      payloads.push_back("\xc0");
    }
    frames = {tag(mw::Command::Batch), batch_index(entries)};
    frames.insert(frames.end(), payloads.begin(), payloads.end());
    peer.send(frames);
  }
  REQUIRE(read_answers(41));
  REQUIRE(answers.size() == 41);
  for (std::uint64_t i = 1; i <= 40; ++i) {
    CAPTURE(i);
    REQUIRE(answers[i].first == mw::Command::Accepted);
    const auto a = mw::wire::decode_accepted(zmq::message_t(answers[i].second.data(), answers[i].second.size()));
    CHECK(a.request_id == i);
  }
  CHECK(batches >= 3);  // 40 answers, at most 16 a BATCH

  // SUBMITs that wait for a RESULT that will not come soon: each ACCEPTED,
  // held to travel with the RESULT, still comes on its own within ms, not
  // at the broker's next timer (its lease scan, every 250 ms). The median
  // of nine tells the two apart without failing on one slow moment.
  std::vector<std::chrono::steady_clock::duration> waits;
  for (std::uint64_t request = 41; request <= 49; ++request) {
    CAPTURE(request);
    mw::wire::Submit waiting;
    waiting.request_id = request;
    waiting.type = "nobody.serves.this";
    waiting.wait = true;
    const auto sent_at = std::chrono::steady_clock::now();
    peer.send({tag(mw::Command::Submit), bytes_of(mw::wire::encode(waiting)), "\xc0"});
    REQUIRE(read_answers(request + 1));
    waits.push_back(std::chrono::steady_clock::now() - sent_at);
    REQUIRE(answers[request].first == mw::Command::Accepted);
    const auto& header = answers[request].second;
    CHECK(mw::wire::decode_accepted(zmq::message_t(header.data(), header.size())).request_id == request);
  }
  std::nth_element(waits.begin(), waits.begin() + 4, waits.end());
  CHECK(waits[4] < 50ms);
  const auto status = cluster.mw({"status", "--json"});
  REQUIRE(status.exit_status == 0);
  CHECK(status.out.find("nobody.serves.this") != std::string::npos);
}

// The same hand-written peer, now also announcing inline payloads: it sends
// CALLs whose bodies sit inside the index (one in a frame, as a sender may
// mix both), and the broker's REPLYs come back with theirs inside too.
TEST_CASE("inline payloads both ways with a hand-written peer") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  zmq::context_t context(1);
  RawPeer peer(context, cluster.address());

  say_hello_as_client(peer, "inlining-peer", /*inline_payloads=*/true);
  std::optional<std::vector<zmq::message_t>> frames;
  REQUIRE(wait_until([&] { return (frames = peer.receive(50ms)).has_value(); }, 10s, 1ms));
  REQUIRE(mw::wire::decode_tag(frames->at(0)) == mw::Command::Welcome);
  CHECK(mw::wire::decode_welcome(frames->at(1)).inline_payloads);

  std::vector<std::tuple<mw::Command, std::string, std::optional<std::string>>> entries;
  std::vector<std::uint8_t> body_in_frame;
  for (std::uint64_t r = 1; r <= 4; ++r) {
    const std::string id = "n" + std::to_string(r);
    const auto header = bytes_of(mw::wire::encode(mw::wire::Call{r, "notes", "create", std::nullopt}));
    std::vector<std::uint8_t> body;
    nlohmann::json::to_msgpack({{"data", {{"id", id}, {"text", std::string(20 * r, 'x')}}}}, body);
    if (r == 3) {
      body_in_frame = body;
      entries.emplace_back(mw::Command::Call, header, std::nullopt);
    } else {
      entries.emplace_back(mw::Command::Call, header, std::string(body.begin(), body.end()));
    }
  }
  peer.send({tag(mw::Command::Batch), inline_batch_index(entries), std::string(body_in_frame.begin(), body_in_frame.end())});

  // Four REPLYs, each with the record it created. In a BATCH (the broker
  // batches for this peer; a lone REPLY would be the message itself) each
  // small payload comes inside the index.
  std::vector<std::pair<mw::wire::Reply, nlohmann::json>> replies;
  int batched_replies = 0, inline_replies = 0;
  REQUIRE(wait_until(
      [&] {
        while (replies.size() < 4) {
          auto got = peer.receive(50ms);
          if (!got) return false;
          const auto command = mw::wire::decode_tag(got->at(0));
          if (command == mw::Command::Heartbeat) continue;
          if (command == mw::Command::Reply) {
            REQUIRE(got->size() == 3);
            replies.emplace_back(mw::wire::decode_reply(got->at(1)),
                                 nlohmann::json::from_msgpack(std::string_view(got->at(2).data<char>(), got->at(2).size())));
            continue;
          }
          REQUIRE(command == mw::Command::Batch);
          std::vector<mw::wire::BatchItem> items;
          mw::wire::decode_batch(got->at(1), got->size() - 2, items);
          std::size_t next_frame = 2;
          for (const auto& item : items) {
            REQUIRE(item.command == mw::Command::Reply);
            ++batched_replies;
            const zmq::message_t header(const_cast<char*>(item.header.data()), item.header.size(), nullptr);
            std::string_view payload = item.payload;
            if (item.inline_payload) {
              ++inline_replies;
            } else {
              payload = std::string_view(got->at(next_frame).data<char>(), got->at(next_frame).size());
              ++next_frame;
            }
            replies.emplace_back(mw::wire::decode_reply(header), nlohmann::json::from_msgpack(payload));
          }
        }
        return true;
      },
      10s, 1ms));
  REQUIRE(replies.size() == 4);
  CHECK(batched_replies >= 2);  // all four leave in one turn of the broker
  CHECK(inline_replies == batched_replies);
  for (std::uint64_t r = 1; r <= 4; ++r) {
    CAPTURE(r);
    const auto& [reply, record] = replies[r - 1];
    CHECK(reply.request_id == r);
    CHECK(reply.code == 0);
    CHECK(record.at("id") == "n" + std::to_string(r));
    CHECK(record.at("text") == std::string(20 * r, 'x'));
  }
  const auto listed = cluster.mw({"find", "notes"});
  REQUIRE(listed.exit_status == 0);
  CHECK(nlohmann::json::parse(listed.out).at("total") == 4);
}
