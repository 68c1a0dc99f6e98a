// cluster.hpp — a broker and its peers as real processes, for one test.
//
//   mwtest::Cluster cluster;
//   INFO(cluster.report());                       // logs of every process, shown on failure
//   cluster.start_broker({"--heartbeat-ms", "100"});
//   cluster.start_worker("sample", mwtest::binaries().sample_worker);
//   auto r = cluster.mw({"submit", "sampleworker", "0.5", "--wait"});
//
// Binaries come from environment variables set by test/integration/meson.build
// (MW_BROKER_BIN, MW_CLI_BIN, MW_EXEC_BIN, MW_SAMPLE_WORKER_BIN,
// MW_NEXT_WORKER_BIN). Every process started is stopped by the destructor,
// newest first, also when a test fails. Every wait is bounded.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mw/client.hpp"
#include "mw/wire.hpp"
#include "process.hpp"

namespace mwtest {

struct Binaries {
  std::string broker, cli, exec, sample_worker, next_worker;
};

// Read once from the environment. Throws std::runtime_error naming a
// missing variable.
const Binaries& binaries();

class Cluster {
 public:
  Cluster();
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts mw-broker bound to `bind` and `pub` with extra `args`, and reads
  // the addresses it bound from its log line ("serving ADDR, events on PUB").
  // It becomes the cluster's broker: what address() and the starters use.
  // Throws std::runtime_error when the line does not come within 10 s.
  Process& start_broker(std::vector<std::string> args = {}, std::string bind = "tcp://127.0.0.1:*",
                        std::string pub = "tcp://127.0.0.1:*");

  const std::string& address() const noexcept { return address_; }
  const std::string& pub_address() const noexcept { return pub_address_; }
  int port() const;  // of address()
  Process& broker();

  // Starts any program; `name` names its logs.
  Process& start(std::string name, std::vector<std::string> argv);

  // Starts a worker program with `args` and --broker address().
  Process& start_worker(std::string name, const std::string& program, std::vector<std::string> args = {});

  // Starts mw-exec --type `type` `options` -- `command`.
  Process& start_exec(const std::string& type, std::vector<std::string> options, std::vector<std::string> command);

  // Runs `mw SUBCOMMAND --broker address() ARGS...` to completion (killed
  // after `timeout`).
  Finished mw(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s);

  // Starts `mw SUBCOMMAND --broker address() ARGS...` in the background.
  Process& start_mw(std::string name, std::vector<std::string> args);

  // `mw status --json`, parsed. Throws std::runtime_error when it fails.
  nlohmann::json status_json();

  // The broker's status through mw::Client. Throws mw::Error when the
  // broker does not answer within 3 s.
  mw::wire::Stats status();

  // Waits until the broker lists exactly `count` workers serving `type`.
  bool wait_for_workers(std::string_view type, std::size_t count, std::chrono::milliseconds timeout = 10s);

  // Waits until the broker lists a worker with this pid (present == true)
  // or lists none (present == false).
  bool wait_for_worker_pid(pid_t pid, bool present, std::chrono::milliseconds timeout = 10s);

  // The tail of every process's output, for failure reports.
  std::string report() const;

  const std::filesystem::path& dir() const noexcept { return dir_.path(); }

 private:
  std::vector<std::string> cli_argv(std::vector<std::string> args) const;

  TempDir dir_;
  std::vector<std::unique_ptr<Process>> processes_;
  Process* broker_ = nullptr;
  std::string address_, pub_address_;
  std::unique_ptr<mw::Client> client_;  // for status(); replaced when the broker changes
};

// Submits with wait through `client`'s pipelined API and returns the flow id
// once ACCEPTED. Throws std::runtime_error on ERROR or after 5 s.
std::uint64_t submit_waiting(mw::Client& client, std::string_view type, const nlohmann::json& payload);

// The RESULT of `flow_id`, or nullopt when it does not come within
// `timeout`. Other events are dropped.
[[nodiscard]] std::optional<mw::Outcome> await_result(mw::Client& client, std::uint64_t flow_id,
                                                      std::chrono::milliseconds timeout);

// The stats of one type, or nullopt when the broker does not list it.
std::optional<mw::wire::TypeStats> type_stats(const mw::wire::Stats& stats, std::string_view type);

// The broker's entry for the worker process `pid`, or nullopt.
std::optional<mw::wire::WorkerInfo> worker_stats(const mw::wire::Stats& stats, pid_t pid);

// The entry of `type` in `mw status --json` output, or null.
nlohmann::json type_json(const nlohmann::json& status, std::string_view type);

// The entry of the worker with `pid` in `mw status --json` output, or null.
nlohmann::json worker_json(const nlohmann::json& status, pid_t pid);

}  // namespace mwtest
