// cli_checks.hpp — what the CLI tests check about `mw` runs, and a worker
// handler that records the jobs it gets. Shared by the *_cli_test.cpp files.
#pragma once

#include <chrono>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "mw/worker.hpp"

namespace mwtest {

// The non-empty lines of `text`.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// One JSON document per non-empty line (the --json output of list commands).
inline std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  for (const auto& line : lines_of(text)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Runs mw and returns its stdout; fails the test unless it exits 0.
inline std::string mw_ok(Cluster& cluster, std::vector<std::string> args) {
  const auto r = cluster.mw(args);
  INFO("mw ", args.at(0), " ", (args.size() > 1 ? args[1] : ""), "\nstdout: ", r.out, "\nstderr: ", r.err);
  REQUIRE(r.exit_status == 0);
  return r.out;
}

// A failed CLI call: non-zero exit of its own, nothing on stdout, one line on stderr.
inline void check_cli_error(const Finished& r, std::string_view needle) {
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  CHECK(r.exit_status != 0);
  CHECK(r.exit_status != -1);  // it ended by itself
  CHECK(r.out.empty());
  CHECK(lines_of(r.err).size() == 1);
  CHECK(r.err.find(needle) != std::string::npos);
}

// Jobs an in-process worker received, in order; safe across its thread.
class JobLog {
 public:
  mw::Handler handler() {
    return [this](const mw::Job& job) {
      std::lock_guard lock(mutex_);
      jobs_.push_back(job);
      return job.payload;
    };
  }
  std::vector<mw::Job> jobs() const {
    std::lock_guard lock(mutex_);
    return jobs_;
  }
  // Waits (bounded) until at least `count` jobs came.
  bool wait_for(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(20)) const {
    return wait_until([&] { return jobs().size() >= count; }, timeout);
  }

 private:
  mutable std::mutex mutex_;
  std::vector<mw::Job> jobs_;
};

}  // namespace mwtest
