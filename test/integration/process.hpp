// process.hpp — child processes for the integration tests.
//
// A Process is a program started with posix_spawn, its stdout and stderr
// going to files in a log directory, its stdin /dev/null. It is always
// reaped: the destructor sends SIGTERM (and SIGCONT, for a stopped child),
// waits a bounded time, then SIGKILLs. Children are also killed when the
// test program itself is killed by SIGTERM/SIGINT/SIGHUP or crashes (see
// install_child_cleanup()).
//
// Every wait here is bounded: functions that wait take a timeout and report
// "not yet" as an empty optional or false.
//
// Not thread-safe: one thread owns a Process. Not movable (the cleanup
// registry holds its pid; keep processes in std::unique_ptr).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mwtest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `done` every `step` until it returns true (returns true) or
// `timeout` passes (returns false; `done` is tried one last time).
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = 20ms);

// Sleeps for a short, fixed time (never unbounded): used to let a state last
// long enough to be meaningful, never to wait for something to happen.
void pause_for(std::chrono::milliseconds duration);

// The pid a command wrote to `file` (echo $! > file), or 0 while it has not.
pid_t pid_in_file(const std::filesystem::path& file);

// True when `pid` has ended: no such process, or a zombie nobody reaped yet
// (a grandchild whose parent died is reaped by whoever adopts it, maybe never).
bool process_ended(pid_t pid);

// Installs handlers that SIGKILL every live child before the test program
// dies of SIGTERM, SIGINT, SIGHUP, SIGABRT or SIGSEGV. Call once from main.
void install_child_cleanup();

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction unless $MW_TEST_KEEP is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

class Process {
 public:
  // Starts argv[0] (a path; no PATH search) with argv. `name` names the log
  // files (<log_dir>/<name>.out, .err) and the process in messages. Throws
  // std::runtime_error when the program cannot be started.
  Process(std::string name, std::vector<std::string> argv, const std::filesystem::path& log_dir);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  const std::string& name() const noexcept { return name_; }

  // True until the process has exited (reaps it when it has).
  bool running();

  // Waits up to `timeout` for the exit. Returns the exit status, or
  // 128 + signal number for a process killed by a signal; nullopt when it
  // is still running.
  [[nodiscard]] std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  // Sends `sig` to this process only (not to its children).
  void signal(int sig);

  // SIGTERM (and SIGCONT), up to `grace` for the exit, then SIGKILL.
  // Returns the exit status as wait_exit() does. Idempotent.
  int stop(std::chrono::milliseconds grace = 3000ms);

  std::string stdout_text() const;
  std::string stderr_text() const;

  // Waits up to `timeout` for `needle` to appear in the process's stderr;
  // returns the whole line holding it.
  [[nodiscard]] std::optional<std::string> wait_for_stderr_line(std::string_view needle,
                                                                std::chrono::milliseconds timeout) const;

  // The last `lines` lines of stdout and stderr, labelled, for failure reports.
  std::string tail(std::size_t lines = 25) const;

 private:
  bool reap(bool block);

  std::string name_;
  std::filesystem::path out_path_, err_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

// A finished command: what run_to_exit() returns.
struct Finished {
  int exit_status = -1;  // -1: it had to be killed after the timeout
  std::string out, err;
};

// Runs a program to completion (bounded by `timeout`; killed after it).
Finished run_to_exit(std::string name, std::vector<std::string> argv, const std::filesystem::path& log_dir,
                     std::chrono::milliseconds timeout);

// Resident set size of a live process in KiB, from /proc/PID/status; nullopt
// when it cannot be read.
[[nodiscard]] std::optional<long> resident_kib(pid_t pid);

std::string read_file(const std::filesystem::path& path);

}  // namespace mwtest
