// mw-exec: any command as a worker. Its stdout is the result; a non-zero
// exit fails the job with stderr's last lines; 65 and non-JSON are final.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>

#include <doctest/doctest.h>

#include "cluster.hpp"
#include "mw/client.hpp"

using namespace mwtest;

namespace {

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

std::size_t lines_in(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

}  // namespace

TEST_CASE("mw-exec: stdout is the result; failures are retried, reported and buried") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--retry-base-ms", "20", "--max-attempts", "3"});

  SUBCASE("tr a-z A-Z transforms the payload's JSON") {
    cluster.start_exec("up", {}, {"tr", "a-z", "A-Z"});
    const auto r = cluster.mw({"submit", "up", R"({"msg":"hello","list":["a","b"]})", "--wait", "--timeout", "20"});
    REQUIRE(r.exit_status == 0);
    CHECK(nlohmann::json::parse(r.out) == nlohmann::json{{"MSG", "HELLO"}, {"LIST", {"A", "B"}}});
  }

  SUBCASE("exit 1: retried up to --max-attempts, then dead with the last stderr lines") {
    cluster.start_exec("fails", {}, {"/bin/sh", "-c",
                                     "cat >/dev/null; echo 'some noise' >&2; "
                                     "echo \"disk on fire (attempt $MW_ATTEMPT)\" >&2; exit 1"});
    const auto r = cluster.mw({"submit", "fails", "{}", "--wait", "--timeout", "20"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "some noise | disk on fire (attempt 3)"));  // stderr's last lines, on one line
    CHECK(lines_in(r.err) == 1);
    CHECK(contains(r.err, "after 3 attempt(s)"));
    auto s = cluster.status();
    CHECK(type_stats(s, "fails").value().failed == 3);
    CHECK(type_stats(s, "fails").value().dead == 1);
    CHECK(s.retried == 2);

    // The submitter's --max-attempts wins over the broker's default.
    const auto r2 = cluster.mw({"submit", "fails", "{}", "--wait", "--timeout", "20", "--max-attempts", "2"});
    CHECK(r2.exit_status == 1);
    CHECK(contains(r2.err, "disk on fire (attempt 2)"));
    CHECK(contains(r2.err, "after 2 attempt(s)"));
  }

  SUBCASE("--timeout ends the command and everything it started") {
    const auto pid_file = cluster.dir() / "sleeper.pid";
    cluster.start_exec("slow", {"--timeout", "1"},
                       {"/bin/sh", "-c", "sleep 300 & echo $! > '" + pid_file.string() + "'; wait"});
    const auto r = cluster.mw({"submit", "slow", "{}", "--wait", "--timeout", "30", "--max-attempts", "1"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "ran longer than 1000 ms"));
    const pid_t sleeper = pid_in_file(pid_file);
    REQUIRE(sleeper > 0);
    CHECK(wait_until([&] { return process_ended(sleeper); }, 5s));
  }

  SUBCASE("a command that leaves a process behind finishes with its job, and that process ends") {
    const auto pid_file = cluster.dir() / "straggler.pid";
    cluster.start_exec("leaves", {},
                       {"/bin/sh", "-c", "cat >/dev/null; sleep 300 & echo $! > '" + pid_file.string() +
                                             "'; echo '{\"ok\":1}'"});
    const auto r = cluster.mw({"submit", "leaves", "{}", "--wait", "--timeout", "10"});
    CHECK(r.exit_status == 0);
    CHECK(nlohmann::json::parse(r.out) == nlohmann::json{{"ok", 1}});
    const pid_t straggler = pid_in_file(pid_file);
    REQUIRE(straggler > 0);
    CHECK(wait_until([&] { return process_ended(straggler); }, 5s));
  }

  SUBCASE("exit 65 (EX_DATAERR): dead after one attempt") {
    cluster.start_exec("baddata", {}, {"/bin/sh", "-c", "cat >/dev/null; echo 'record 7 is corrupt' >&2; exit 65"});
    const auto r = cluster.mw({"submit", "baddata", "{}", "--wait", "--timeout", "20"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "record 7 is corrupt"));
    CHECK(contains(r.err, "after 1 attempt(s)"));
    const auto s = cluster.status();
    CHECK(type_stats(s, "baddata").value().failed == 1);
    CHECK(s.retried == 0);
    CHECK(s.dead == 1);
  }

  SUBCASE("stderr of binary bytes: the reason keeps its text, never comes out empty") {
    // A line of NULs used to empty the reason: it travels as an exception
    // text, which ends at the first NUL (the probe of 2026-12-07).
    cluster.start_exec("zeros", {}, {"/bin/sh", "-c", "cat >/dev/null; head -c 100000 /dev/zero >&2; exit 1"});
    const auto zeros = cluster.mw({"submit", "zeros", "{}", "--wait", "--timeout", "20", "--max-attempts", "1"});
    CHECK(zeros.exit_status == 1);
    CHECK(contains(zeros.err, "after 1 attempt(s): exit status 1"));
    cluster.start_exec("mixed", {}, {"/bin/sh", "-c",
                                     "cat >/dev/null; printf 'bad \\000\\001 byte\\n\\377\\376 not utf-8\\n' >&2; exit 1"});
    const auto mixed = cluster.mw({"submit", "mixed", "{}", "--wait", "--timeout", "20", "--max-attempts", "1"});
    CHECK(mixed.exit_status == 1);
    CHECK(contains(mixed.err, "after 1 attempt(s): bad \\x00\\x01 byte | "));
    CHECK(contains(mixed.err, " not utf-8"));
    CHECK(lines_in(mixed.err) == 1);
    const auto dead = cluster.mw({"dead", "--json"});
    CHECK(dead.exit_status == 0);
    CHECK(contains(dead.out, "exit status 1"));
  }

  SUBCASE("stdout that is not JSON: dead after one attempt") {
    cluster.start_exec("notjson", {}, {"/bin/sh", "-c", "cat >/dev/null; echo 'this is not json'"});
    const auto r = cluster.mw({"submit", "notjson", "{}", "--wait", "--timeout", "20"});
    CHECK(r.exit_status == 1);
    CHECK(contains(r.err, "not JSON"));
    CHECK(contains(r.err, "after 1 attempt(s)"));
    const auto s = cluster.status();
    CHECK(s.retried == 0);
    CHECK(s.dead == 1);
  }
}

TEST_CASE("messages over --max-message-bytes: a request fails at once, a result fails its job, saying why") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--max-message-bytes", "4096"});
  const std::string big = "\"" + std::string(5000, 'x') + "\"";

  const auto submit = cluster.mw({"submit", "anything", big}, 10s);
  CHECK(submit.exit_status == 2);  // cannot run as given
  CHECK(contains(submit.err, "SUBMIT of 50"));
  CHECK(contains(submit.err, "bytes is larger than the broker takes (4096 bytes, its --max-message-bytes)"));
  CHECK(lines_in(submit.err) == 1);
  const auto create = cluster.mw({"create", "things", "{\"x\":" + big + "}"}, 10s);
  CHECK(create.exit_status == 2);
  CHECK(contains(create.err, "is larger than the broker takes (4096 bytes"));
  CHECK(cluster.status().submitted == 0);

  // A worker whose result would not fit fails the job for good, instead of
  // losing its connection (and the job) over and over.
  cluster.start_exec("grows", {}, {"/bin/sh", "-c", "cat >/dev/null; printf '\"%s\"' $(head -c 6000 /dev/zero | tr '\\0' x)"});
  const auto grown = cluster.mw({"submit", "grows", "{}", "--wait", "--timeout", "20"});
  CHECK(grown.exit_status == 1);
  CHECK(contains(grown.err, "after 1 attempt(s): the result (6"));
  CHECK(contains(grown.err, "is larger than the broker's --max-message-bytes (4096)"));
  // So does one whose error text would not fit: it is cut.
  cluster.start_exec("noisy", {}, {"/bin/sh", "-c", "cat >/dev/null; head -c 6000 /dev/zero | tr '\\0' 1"});
  const auto noisy = cluster.mw({"submit", "noisy", "{}", "--wait", "--timeout", "20"});
  CHECK(noisy.exit_status == 1);
  CHECK(contains(noisy.err, "after 1 attempt(s): '/bin/sh' printed 6000 bytes that are not JSON"));
  CHECK(noisy.err.size() < 1000);
  cluster.start_exec("wordy", {}, {"/bin/sh", "-c",
                                   "cat >/dev/null; for i in 1 2 3 4; do head -c 1900 /dev/zero | tr '\\0' e >&2; "
                                   "echo >&2; done; exit 65"});
  const auto wordy = cluster.mw({"submit", "wordy", "{}", "--wait", "--timeout", "20"});
  CHECK(wordy.exit_status == 1);
  CHECK(contains(wordy.err, "after 1 attempt(s): eeee"));
  CHECK(contains(wordy.err, "e…"));  // cut to fit
  CHECK(wordy.err.size() < 4096);
  const auto s = cluster.status();
  CHECK(s.requeued == 0);
  CHECK(s.dead == 3);
}

TEST_CASE("mw-exec refuses at once a command it cannot run") {
  Cluster cluster;
  INFO(cluster.report());
  Process& missing = cluster.start("mw-exec-missing", {binaries().exec, "--type", "t", "--", "no-such-command-here"});
  CHECK(missing.wait_exit(10s) == 2);  // a command line that cannot run
  CHECK(contains(missing.stderr_text(), "cannot run 'no-such-command-here': not found on PATH"));
  Process& not_executable = cluster.start("mw-exec-file", {binaries().exec, "--type", "t", "--", "/etc/passwd"});
  CHECK(not_executable.wait_exit(10s) == 2);
  CHECK(contains(not_executable.stderr_text(), "not an executable file"));
}

TEST_CASE("mw-exec --help says how a command reports progress and how a stop ends it") {
  Cluster cluster;
  const auto help = run_to_exit("mw-exec-help", {binaries().exec, "--help"}, cluster.dir(), 10s);
  CHECK(help.exit_status == 0);
  CHECK(contains(help.out, "--type T [OPTION...] -- COMMAND [ARG ...]"));
  CHECK(contains(help.out, "descriptor 3 ($MW_PROGRESS_FD)"));
  CHECK(contains(help.out, "mw-reaper"));
  CHECK(contains(help.out, "running commands get 10 s to finish"));
}

TEST_CASE("a worker whose --next is its own type warns of the loop at start, and a loop can be cancelled") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--max-stages", "10000"});  // the cancel ends it, not the limit
  Process& looping = cluster.start_exec("again", {"--next", "again"}, {"/bin/cat"});
  CHECK(looping.wait_for_stderr_line("--next again is this worker's own type", 10s).has_value());
  const auto submitted = cluster.mw({"submit", "again", "{}"});
  REQUIRE(submitted.exit_status == 0);
  const std::string flow = submitted.out.substr(0, submitted.out.find('\n'));
  REQUIRE(wait_until([&] { return type_stats(cluster.status(), "again").value_or(mw::wire::TypeStats{}).done > 20; },
                     10s));
  REQUIRE(cluster.mw({"cancel", flow}).exit_status == 0);
  const auto after_cancel = cluster.status();
  pause_for(300ms);
  const auto later = type_stats(cluster.status(), "again").value();
  CHECK(later.done <= type_stats(after_cancel, "again").value().done + 1);  // at most the stage in flight
  CHECK(later.in_flight == 0);
  CHECK(later.queued == 0);
}

TEST_CASE("--type-rate: free workers get a limited type's jobs no faster than its rate") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--type-rate", "slowapi=2/1"});  // at most two starts in any second
  const auto starts = cluster.dir() / "starts";
  cluster.start_exec("slowapi", {"--concurrency", "8"},
                     {"/bin/sh", "-c", "date +%s%N >> '" + starts.string() + "'; cat"});
  REQUIRE(cluster.wait_for_workers("slowapi", 1));
  mw::Client client({cluster.address()});
  const auto submitted_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  for (int i = 0; i < 6; ++i) client.submit("slowapi", mw::Payload::of(i));  // within a few ms
  // While the window is full, status says the queued ones wait for their turn, not for a worker.
  const auto held = cluster.mw({"status"});
  const auto held_stats = type_stats(cluster.status(), "slowapi").value();
  if (held_stats.queued > 0) {  // unless the machine was slow enough for the window to have moved on
    CHECK(held_stats.rate_held == held_stats.queued);
    CHECK(held.out.find("queued wait for their turn)") != std::string::npos);
  }
  REQUIRE(wait_until([&] { return type_stats(cluster.status(), "slowapi").value_or(mw::wire::TypeStats{}).done == 6; },
                     20s));
  std::ifstream in(starts);
  std::vector<long long> ns;
  for (long long t; in >> t;) ns.push_back(t);
  REQUIRE(ns.size() == 6);
  std::sort(ns.begin(), ns.end());
  // Eight free slots and six jobs submitted at once, yet no second saw more
  // than two start: two, two a second later, two a second after that. The
  // last cannot start before 2 s after the submits (a slower machine only
  // starts it later); the first two need not wait.
  CHECK(ns[5] - submitted_ns >= 1'990'000'000LL);
  const auto status = cluster.mw({"status"});
  CHECK(status.out.find("rate limits (--type-rate): slowapi 2 per 1s") != std::string::npos);
  CHECK(type_stats(cluster.status(), "slowapi").value().rate_max == 2);
}

TEST_CASE("a loop of stages ends by itself at --max-stages: the flow dies and says why") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--max-stages", "5"});
  cluster.start_exec("again", {"--next", "again"}, {"/bin/cat"});
  const auto looped = cluster.mw({"submit", "again", "{\"n\":1}", "--wait", "--timeout", "20"});
  CHECK(looped.exit_status == 1);
  CHECK(looped.err.find("died at again") != std::string::npos);
  CHECK(looped.err.find("stage limit: the flow had run 5 stage(s) (mw-broker --max-stages 5)") != std::string::npos);
  const auto s = cluster.status();
  CHECK(s.dead == 1);
  CHECK(type_stats(s, "again").value().done == 5);
}

TEST_CASE("mw-exec asked to stop lets a running command finish for 10 s, then ends it; its job goes back, its attempt not used up") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--retry-base-ms", "20"});
  const auto pid_file = cluster.dir() / "sleeper.pid";
  Process& exec = cluster.start_exec("stuck", {}, {"/bin/sh", "-c", "echo $$ > '" + pid_file.string() + "'; exec sleep 1000"});
  REQUIRE(cluster.wait_for_workers("stuck", 1));
  // One attempt only: a stop of the worker must not use it up.
  REQUIRE(cluster.mw({"submit", "stuck", R"({"n": 1})", "--max-attempts", "1"}).exit_status == 0);
  REQUIRE(wait_until([&] { return pid_in_file(pid_file) > 0; }, 10s));
  const pid_t sleeper = pid_in_file(pid_file);
  exec.signal(SIGINT);
  CHECK(exec.wait_exit(25s) == 0);
  CHECK(process_ended(sleeper));
  CHECK(exec.stderr_text().find("handed back unfinished") != std::string::npos);
  REQUIRE(cluster.wait_for_worker_pid(exec.pid(), false));
  const auto s = cluster.status();
  CHECK(s.failed == 0);  // not a failure: the job was given back with the DISCONNECT
  CHECK(s.retried == 0);
  CHECK(s.dead == 0);
  const auto waiting = nlohmann::json::parse(cluster.mw({"flows", "--json"}).out);
  CHECK(waiting.at("state") == "queued");
  CHECK(waiting.at("attempts") == 0);
  // Its one attempt is still there for the next worker.
  cluster.start_exec("stuck", {}, {"cat"});
  REQUIRE(wait_until([&] { return cluster.status().done == 1; }, 15s));
}

TEST_CASE("mw-exec stopping when its broker restarts registers with no credit: the recovered job waits for another") {
  // It registers again to answer for its run, but must take no new job: it
  // would only hand it back as it goes (the probe of 2026-12-07).
  Cluster cluster;
  INFO(cluster.report());
  const std::string store = (cluster.dir() / "jobs.db").string();
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"});
  const std::string address = cluster.address(), pub = cluster.pub_address();
  const auto pid_file = cluster.dir() / "run.pid";
  Process& exec = cluster.start_exec("slowstop", {"--concurrency", "2"},
                                     {"/bin/sh", "-c", "echo $$ > '" + pid_file.string() + "'; cat >/dev/null; sleep 3"});
  REQUIRE(cluster.wait_for_workers("slowstop", 1));
  REQUIRE(cluster.mw({"submit", "slowstop", "{}"}).exit_status == 0);
  REQUIRE(wait_until([&] { return pid_in_file(pid_file) > 0; }, 10s));
  exec.signal(SIGTERM);  // its run may finish (10 s of grace)
  cluster.broker().signal(SIGKILL);
  REQUIRE(cluster.broker().wait_exit(5s).has_value());
  cluster.start_broker({"--store", store, "--heartbeat-ms", "200"}, address, pub);

  // Back with the broker (it answers for its run), with no room for the recovered job.
  REQUIRE(cluster.wait_for_worker_pid(exec.pid(), true));
  const auto me = worker_stats(cluster.status(), exec.pid());
  REQUIRE(me.has_value());
  CHECK(me->credit == 0);
  CHECK(me->in_flight == 0);
  CHECK(exec.wait_exit(20s) == 0);
  // The recovered job runs on a worker that is not stopping.
  cluster.start_exec("slowstop", {}, {"/bin/sh", "-c", "cat >/dev/null; echo 1"});
  REQUIRE(wait_until([&] { return cluster.status().done >= 1; }, 15s));
}

TEST_CASE("mw-exec killed with SIGKILL: its reaper ends the running command and what it started") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200"});
  const auto shell_file = cluster.dir() / "shell.pid";
  const auto child_file = cluster.dir() / "child.pid";
  // A shell that waits for a child of its own: both must end.
  Process& exec = cluster.start_exec(
      "doomed", {},
      {"/bin/sh", "-c",
       "echo $$ > '" + shell_file.string() + "'; sleep 1000 & echo $! > '" + child_file.string() + "'; wait"});
  REQUIRE(cluster.wait_for_workers("doomed", 1));
  REQUIRE(cluster.mw({"submit", "doomed", "{}"}).exit_status == 0);
  REQUIRE(wait_until([&] { return pid_in_file(shell_file) > 0 && pid_in_file(child_file) > 0; }, 10s));
  const pid_t shell = pid_in_file(shell_file), child = pid_in_file(child_file);
  CHECK_FALSE(process_ended(child));
  exec.signal(SIGKILL);
  REQUIRE(exec.wait_exit(10s).has_value());
  CHECK(wait_until([&] { return process_ended(shell) && process_ended(child); }, 10s));
}

TEST_CASE("mw cancel of a flow whose job outlived its lease: mw-exec ends the command still running it") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker({"--heartbeat-ms", "200", "--type-lease", "stuck=1"});
  const auto pid_file = cluster.dir() / "stuck.pid";
  cluster.start_exec("stuck", {}, {"/bin/sh", "-c", "echo $$ > '" + pid_file.string() + "'; exec sleep 1000"});
  REQUIRE(cluster.wait_for_workers("stuck", 1));
  const auto submitted = cluster.mw({"submit", "stuck", "{}"});
  REQUIRE(submitted.exit_status == 0);
  const std::string flow = submitted.out.substr(0, submitted.out.find('\n'));
  REQUIRE(wait_until([&] { return pid_in_file(pid_file) > 0; }, 10s));
  const pid_t command = pid_in_file(pid_file);
  // The lease runs out: the job goes back to its queue, and waits there (the
  // worker's only slot is still taken by the run).
  REQUIRE(wait_until([&] { return cluster.status().requeued == 1; }, 10s));
  CHECK_FALSE(process_ended(command));

  const auto cancelled = cluster.mw({"cancel", flow});
  CHECK(cancelled.exit_status == 0);
  CHECK(contains(cancelled.out, "cancelled (was queued"));
  CHECK(contains(cancelled.out, "; 1 run(s) past their lease told to stop"));
  CHECK(wait_until([&] { return process_ended(command); }, 10s));
  // The run's answer frees the slot: the next job of the type runs.
  std::filesystem::remove(pid_file);
  const auto next = cluster.mw({"submit", "stuck", "{}"});
  REQUIRE(next.exit_status == 0);
  CHECK(wait_until([&] { return pid_in_file(pid_file) > 0; }, 10s));
  // Ended now, not by the stop grace at teardown.
  CHECK(cluster.mw({"cancel", next.out.substr(0, next.out.find('\n'))}).exit_status == 0);
  CHECK(wait_until([&] { return process_ended(pid_in_file(pid_file)); }, 10s));
}

TEST_CASE("a stage sent to a type no worker serves is named once in the broker's log: a --next typo shows") {
  Cluster cluster;
  INFO(cluster.report());
  cluster.start_broker();
  cluster.start_exec("first", {"--next", "secnod"}, {"/bin/cat"});  // meant: second
  REQUIRE(cluster.wait_for_workers("first", 1));
  const auto one = cluster.mw({"submit", "first", "1"});
  REQUIRE(one.exit_status == 0);
  const auto warning = cluster.broker().wait_for_stderr_line("went on to type 'secnod'", 10s);
  REQUIRE(warning.has_value());
  CHECK(warning->find("flow " + one.out.substr(0, one.out.find('\n'))) != std::string::npos);
  CHECK(warning->find("mw flows secnod lists them") != std::string::npos);
  REQUIRE(cluster.mw({"submit", "first", "2"}).exit_status == 0);
  REQUIRE(wait_until([&] { return type_stats(cluster.status(), "secnod").value_or(mw::wire::TypeStats{}).queued == 2; }, 10s));
  const std::string log = cluster.broker().stderr_text();
  std::size_t times = 0;
  for (auto at = log.find("went on to type 'secnod'"); at != std::string::npos; at = log.find("went on to type 'secnod'", at + 1))
    ++times;
  CHECK(times == 1);
  // A first stage submitted before its workers start is normal: no warning.
  REQUIRE(cluster.mw({"submit", "later", "3"}).exit_status == 0);
  pause_for(200ms);
  CHECK(cluster.broker().stderr_text().find("type 'later'") == std::string::npos);
}
