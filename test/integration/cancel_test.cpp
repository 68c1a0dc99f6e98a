// mw cancel of a flow whose job a worker holds: the broker sends CANCEL, the
// worker drops the job if it has not started it and stops its handler if it
// has, and the worker's credit comes back for the next job.
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "cluster.hpp"
#include "in_process_worker.hpp"
#include "mw/client.hpp"

using namespace mwtest;

namespace {

// A handler that holds a job whose payload is "slow" until its flow is
// cancelled (or 30 s pass), and echoes any other payload at once.
struct SlowUntilCancelled {
  std::atomic<int> started{0};
  std::atomic<int> stopped_by_cancel{0};

  mw::Handler handler() {
    return [this](const mw::Job& job) {
      if (job.payload.to_json() != "slow") return job.payload;
      ++started;
      const auto give_up = std::chrono::steady_clock::now() + 30s;
      while (!job.cancel.stop_requested() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(5ms);
      if (job.cancel.stop_requested()) ++stopped_by_cancel;
      return mw::Payload::of(std::string("finished anyway"));
    };
  }
};

void cancel_in_flight(mw::Client& client, std::uint64_t flow) {
  const auto record = client.call("$flows", "remove", std::to_string(flow));
  CHECK(record.at("was") == "in_flight");
  CHECK(record.at("stop_sent") == true);
}

}  // namespace

TEST_CASE("mw cancel stops a running handler, and drops a held job it had not started") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});
  SlowUntilCancelled slow;
  mw::WorkerOptions options;
  options.broker = cluster.address();
  options.types = {"held"};
  std::uint32_t threads = 1;
  SUBCASE("one handler thread: it runs on the socket's thread, so the keeper reads the CANCEL") { threads = 1; }
  SUBCASE("a pool of two handler threads: the socket's thread reads the CANCEL") { threads = 2; }
  options.threads = threads;
  options.concurrency = threads + 1;  // one job more than run at once waits in the worker
  InProcessWorker worker(options, slow.handler());
  REQUIRE(cluster.wait_for_workers("held", 1));

  mw::Client client({cluster.address()});
  std::vector<std::uint64_t> running;
  for (std::uint32_t i = 0; i < threads; ++i) running.push_back(submit_waiting(client, "held", "slow"));
  REQUIRE(wait_until([&] { return slow.started.load() == static_cast<int>(threads); }, 10s));
  const auto waiting = submit_waiting(client, "held", "slow");
  // Held by the worker (in flight at the broker) but not started.
  REQUIRE(wait_until([&] { return type_stats(cluster.status(), "held").value().in_flight == threads + 1; }, 10s));

  cancel_in_flight(client, waiting);
  // Its FAIL reached the broker, which counts only the running ones now.
  REQUIRE(wait_until([&] { return type_stats(cluster.status(), "held").value().in_flight == threads; }, 10s));
  CHECK(worker.counters().cancelled == 1);
  CHECK(slow.started.load() == static_cast<int>(threads));  // it never ran
  CHECK(slow.stopped_by_cancel.load() == 0);                // the running ones run on

  for (const auto flow : running) cancel_in_flight(client, flow);
  REQUIRE(wait_until([&] { return slow.stopped_by_cancel.load() == static_cast<int>(threads); }, 10s));
  REQUIRE(wait_until([&] { return worker.counters().cancelled == threads + 1; }, 10s));
  CHECK(worker.counters().failed == 0);

  // Every flow ended as cancelled.
  running.push_back(waiting);
  for (const auto flow : running) {
    const auto outcome = client.wait(flow, 10s);
    REQUIRE(outcome.has_value());
    CHECK(outcome->cancelled);
  }

  // The credit is back: a new job runs at once, and nothing was retried.
  const auto done = client.submit_and_wait("held", mw::Payload::of(std::string("quick")), 10s);
  REQUIRE(done.has_value());
  CHECK(done->done);
  CHECK(done->result.to_json() == "quick");
  const auto s = cluster.status();
  CHECK(s.cancelled == threads + 1);
  CHECK(s.failed == 0);
  CHECK(s.retried == 0);
  CHECK(type_stats(s, "held").value().in_flight == 0);
}

TEST_CASE("mw cancel ends the command mw-exec runs for the job, and what it started; the next job runs") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "300"});
  const auto pid_file = cluster.dir() / "sleeper.pid";
  // A "slow" job starts a sleeper and waits for it; any other is echoed.
  cluster.start_exec("stuck", {},
                     {"/bin/sh", "-c",
                      "read x; case \"$x\" in *slow*) sleep 300 & echo $! > '" + pid_file.string() +
                          "'; wait;; *) echo \"$x\";; esac"});
  REQUIRE(cluster.wait_for_workers("stuck", 1));
  const auto flow = cluster.mw({"submit", "stuck", "\"slow\""});
  REQUIRE(flow.exit_status == 0);
  const std::string flow_id = flow.out.substr(0, flow.out.find('\n'));
  REQUIRE(wait_until([&] { return pid_in_file(pid_file) > 0; }, 10s));
  const pid_t sleeper = pid_in_file(pid_file);
  REQUIRE(sleeper > 0);

  const auto cancelled = cluster.mw({"cancel", flow_id});
  CHECK(cancelled.exit_status == 0);
  CHECK(cancelled.out.find("cancelled (was in_flight, stuck); its worker was told to stop the job") != std::string::npos);
  // SIGTERM to the command's process group ends the sleeper with it.
  CHECK(wait_until([&] { return process_ended(sleeper); }, 10s));

  // Its one slot is free again long before the sleeper's 300 s.
  const auto next = cluster.mw({"submit", "stuck", "\"quick\"", "--wait", "--timeout", "20"});
  CHECK(next.exit_status == 0);
  CHECK(next.out.find("quick") != std::string::npos);
  const auto s = cluster.status();
  CHECK(s.cancelled == 1);
  CHECK(s.failed == 0);
  CHECK(s.retried == 0);
}
