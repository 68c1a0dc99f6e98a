// cli_checks.hpp — running `mw` against a Cluster's broker, and a worker
// handler that records the jobs it gets. Shared by the *_cli_test.cpp files
// built with the Cluster helper (with cli_output.hpp).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cli_output.hpp"
#include "cluster.hpp"
#include "mw/worker.hpp"

namespace mwtest {

// Runs mw and returns its stdout; fails the test unless it exits 0.
inline std::string mw_ok(Cluster& cluster, std::vector<std::string> args) {
  const auto r = cluster.mw(args);
  INFO("mw ", args.at(0), " ", (args.size() > 1 ? args[1] : ""), "\nstdout: ", r.out, "\nstderr: ", r.err);
  REQUIRE(r.exit_status == 0);
  return r.out;
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
