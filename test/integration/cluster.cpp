#include "cluster.hpp"

#include <signal.h>

#include <cstdlib>
#include <stdexcept>

namespace mwtest {
namespace {

constexpr auto kBrokerStartTimeout = 10s;
constexpr auto kStatusTimeout = 3000ms;
constexpr auto kStopGrace = 3000ms;
constexpr auto kStatusPollStep = 50ms;

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value)
    throw std::runtime_error(std::string("environment variable ") + name +
                             " is not set: run this test through `meson test --suite integration`");
  return value;
}

// Extracts "ADDR" from "... serving ADDR, events on PUB, store ...".
std::string field_after(const std::string& line, std::string_view key) {
  const auto at = line.find(key);
  if (at == std::string::npos) return {};
  const auto begin = at + key.size();
  const auto end = line.find(',', begin);
  return line.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

}  // namespace

const Binaries& binaries() {
  static const Binaries b{required_env("MW_BROKER_BIN"), required_env("MW_CLI_BIN"), required_env("MW_EXEC_BIN"),
                          required_env("MW_SAMPLE_WORKER_BIN"), required_env("MW_NEXT_WORKER_BIN")};
  return b;
}

Cluster::Cluster() = default;

Cluster::~Cluster() {
  // Ask everyone at once, then collect: stopping N processes takes one grace
  // period, not N.
  for (auto& p : processes_) {
    if (p->running()) {
      p->signal(SIGTERM);
      p->signal(SIGCONT);
    }
  }
  for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) (*it)->stop(kStopGrace);
}

Process& Cluster::start(std::string name, std::vector<std::string> argv) {
  processes_.push_back(std::make_unique<Process>(std::move(name), std::move(argv), dir()));
  return *processes_.back();
}

Process& Cluster::start_broker(std::vector<std::string> args, std::string bind, std::string pub) {
  // :memory: so that brokers of different tests (and test runs) share no file.
  std::vector<std::string> argv{binaries().broker, "--bind", std::move(bind), "--pub", std::move(pub),
                                "--store", ":memory:"};
  argv.insert(argv.end(), args.begin(), args.end());
  Process& p = start("mw-broker", std::move(argv));
  const auto line = p.wait_for_stderr_line(" serving ", kBrokerStartTimeout);
  if (!line) throw std::runtime_error("mw-broker did not report its address within 10 s:\n" + p.tail());
  address_ = field_after(*line, " serving ");
  pub_address_ = field_after(*line, " events on ");
  if (address_.empty() || pub_address_.empty()) throw std::runtime_error("cannot parse the broker's log line: " + *line);
  broker_ = &p;
  client_.reset();
  return p;
}

int Cluster::port() const {
  const auto colon = address_.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(address_.c_str() + colon + 1);
}

Process& Cluster::broker() {
  if (!broker_) throw std::runtime_error("no broker started");
  return *broker_;
}

Process& Cluster::start_worker(std::string name, const std::string& program, std::vector<std::string> args) {
  std::vector<std::string> argv{program};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--broker", address_});
  return start(std::move(name), std::move(argv));
}

Process& Cluster::start_exec(const std::string& type, std::vector<std::string> options,
                             std::vector<std::string> command) {
  std::vector<std::string> argv{binaries().exec, "--broker", address_, "--type", type};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return start("mw-exec-" + type, std::move(argv));
}

std::vector<std::string> Cluster::cli_argv(std::vector<std::string> args) const {
  // --broker right after the subcommand, so that ARGS may end with "-- -1.5".
  std::vector<std::string> argv{binaries().cli};
  if (!args.empty()) argv.push_back(args.front());
  argv.insert(argv.end(), {"--broker", address_});
  if (!args.empty()) argv.insert(argv.end(), args.begin() + 1, args.end());
  return argv;
}

Finished Cluster::mw(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  std::string name = "mw-" + (args.empty() ? std::string("cli") : args.front());
  return run_to_exit(std::move(name), cli_argv(std::move(args)), dir(), timeout);
}

Process& Cluster::start_mw(std::string name, std::vector<std::string> args) {
  return start(std::move(name), cli_argv(std::move(args)));
}

nlohmann::json Cluster::status_json() {
  const auto r = mw({"status", "--json"}, 10s);
  if (r.exit_status != 0)
    throw std::runtime_error("mw status --json exited " + std::to_string(r.exit_status) + ": " + r.err);
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    throw std::runtime_error("mw status --json printed something that is not JSON (" + std::string(e.what()) +
                             "): " + r.out);
  }
}

mw::wire::Stats Cluster::status() {
  if (!client_) client_ = std::make_unique<mw::Client>(mw::ClientOptions{address_, kStatusTimeout});
  try {
    return client_->status();
  } catch (...) {
    client_.reset();  // a fresh connection next time
    throw;
  }
}

bool Cluster::wait_for_workers(std::string_view type, std::size_t count, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        try {
          const auto t = type_stats(status(), type);
          return t ? t->workers == count : count == 0;
        } catch (const std::exception&) {
          return false;
        }
      },
      timeout, kStatusPollStep);
}

bool Cluster::wait_for_worker_pid(pid_t pid, bool present, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        try {
          const auto s = status();
          bool found = false;
          for (const auto& w : s.workers) found = found || w.pid == static_cast<std::uint32_t>(pid);
          return found == present;
        } catch (const std::exception&) {
          return false;
        }
      },
      timeout, kStatusPollStep);
}

std::string Cluster::report() const {
  std::string out = "logs in " + dir().string() + " (set MW_TEST_KEEP=1 to keep them)\n";
  for (const auto& p : processes_) out += p->tail();
  return out;
}

std::uint64_t submit_waiting(mw::Client& client, std::string_view type, const nlohmann::json& payload) {
  const auto request = client.send_submit(type, mw::Payload::from_json(payload).bytes(), true);
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    auto event = client.next_event(100ms);
    if (!event || event->request_id != request) continue;
    if (event->kind == mw::ClientEvent::Kind::Accepted) return event->flow_id;
    if (event->kind == mw::ClientEvent::Kind::Error) throw std::runtime_error("SUBMIT refused: " + event->message);
  }
  throw std::runtime_error("no ACCEPTED within 5 s");
}

std::optional<mw::Outcome> await_result(mw::Client& client, std::uint64_t flow_id, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto event = client.next_event(std::min<std::chrono::milliseconds>(left + 1ms, 100ms));
    if (event && event->kind == mw::ClientEvent::Kind::Result && event->flow_id == flow_id) return event->outcome;
  }
  return std::nullopt;
}

std::optional<mw::wire::TypeStats> type_stats(const mw::wire::Stats& stats, std::string_view type) {
  for (const auto& t : stats.types)
    if (t.type == type) return t;
  return std::nullopt;
}

std::optional<mw::wire::WorkerInfo> worker_stats(const mw::wire::Stats& stats, pid_t pid) {
  for (const auto& w : stats.workers)
    if (w.pid == static_cast<std::uint32_t>(pid)) return w;
  return std::nullopt;
}

nlohmann::json type_json(const nlohmann::json& status, std::string_view type) {
  for (const auto& t : status.at("types"))
    if (t.at("type") == type) return t;
  return nullptr;
}

nlohmann::json worker_json(const nlohmann::json& status, pid_t pid) {
  for (const auto& w : status.at("workers"))
    if (w.at("pid") == pid) return w;
  return nullptr;
}

}  // namespace mwtest
