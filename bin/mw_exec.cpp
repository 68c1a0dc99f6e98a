// mw-exec --type T [--next U] [--concurrency N] -- COMMAND [ARG ...]
//
// Makes any program a worker: for each job it runs COMMAND with the payload
// as JSON on stdin, and takes the JSON on its stdout as the result. A
// non-zero exit fails the job with the last lines of stderr as the error;
// exit status 65 (EX_DATAERR) fails it for good (no retry). A job whose flow
// is cancelled (mw cancel) while its command runs has the command ended:
// SIGTERM to its process group, SIGKILL kTermGrace later.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <vector>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "exec_progress.hpp"
#include "exec_reaper.hpp"
#include "mw/log.hpp"
#include "mw/options.hpp"
#include "mw/protocol.hpp"
#include "mw/version.hpp"
#include "mw/worker.hpp"

extern char** environ;

namespace {

constexpr int kExitDataError = 65;  // sysexits.h EX_DATAERR: bad input, do not retry
constexpr std::size_t kMaxStdoutBytes = 16 * 1024 * 1024;
constexpr std::size_t kStderrTailBytes = 2048;
constexpr std::size_t kStderrTailLines = 5;
// How soon a command that exited is noticed while something it started
// still holds its output open (otherwise its pipes' end tells).
constexpr std::int64_t kExitCheckMs = 100;
// After the command exits, how long its output is still read while
// something it started (out of its process group) holds it open.
constexpr auto kDrainAfterExit = std::chrono::seconds(1);
// Once mw-exec is asked to stop, how long a running command may go on
// before SIGTERM; after SIGTERM (for a stop or a cancelled job), how long
// before SIGKILL.
constexpr auto kStopGrace = std::chrono::seconds(10);
constexpr auto kTermGrace = std::chrono::seconds(2);
// The two graces as log and error texts say them ("10", "2").
const std::string kStopGraceText = std::to_string(kStopGrace.count());
const std::string kTermGraceText = std::to_string(kTermGrace.count());
// How much of a JSON parser's complaint a job's error quotes.
constexpr std::size_t kMaxQuotedBytes = 200;

// What --help says after the options: how a command reports progress and
// how mw-exec ends commands (the README says the same).
std::string help_notes() {
  const std::string fd = std::to_string(mw::exec::kProgressFd);
  return "Progress: JSON lines a command writes to descriptor " + fd + " ($MW_PROGRESS_FD) are its job's progress,\n"
         "  shown by mw flows and mw result while the job runs.\n"
         "Cleanup: each command runs in a process group of its own, ended with its job; should mw-exec\n"
         "  be killed with SIGKILL, the small mw-reaper process it forks at start ends them.\n"
         "Stop: on SIGINT or SIGTERM, running commands get " + kStopGraceText + " s to finish, then SIGTERM and, " +
         kTermGraceText + " s later,\n"
         "  SIGKILL; their jobs go back to their queue without using up an attempt.";
}

struct ExecOptions {
  std::vector<std::string> command;
  std::chrono::milliseconds timeout{0};  // 0 = none
  int stop_fd = -1;  // readable once mw-exec is asked to stop (StopSignal)
  mw::exec::ExecReaper reaper;  // told of every command's group (none until started)
};

// A pipe whose ends close themselves.
struct Pipe {
  int read = -1, write = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw mw::Error(std::string("pipe: ") + std::strerror(errno));
    read = fds[0];
    write = fds[1];
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (read >= 0) ::close(read);
    read = -1;
  }
  void close_write() {
    if (write >= 0) ::close(write);
    write = -1;
  }
};

// True when `line` has something to read: a byte that is neither a space,
// nor a control character. (A NUL would also cut the error short: errors
// travel as exception texts, which end at the first NUL.)
bool has_text(std::string_view line) {
  return std::any_of(line.begin(), line.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c != 0x7f;
  });
}

// The last few lines of a child's stderr that hold text, the part that
// says what went wrong, on one line (joined by " | "): errors are one line.
// Control characters (bytes below 0x20 but tab) are written as \xNN; lines
// with no byte above a space but DEL are skipped.
std::string tail_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  std::string line;
  while (std::getline(stream, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (has_text(line)) lines.push_back(mw::escaped_controls(line));
  }
  std::string out;
  const std::size_t from = lines.size() > kStderrTailLines ? lines.size() - kStderrTailLines : 0;
  for (std::size_t i = from; i < lines.size(); ++i) out += (out.empty() ? "" : " | ") + lines[i];
  return out;
}

void set_env(std::vector<std::string>& env, const std::string& name, const std::string& value) {
  env.push_back(name + "=" + value);
}

// Runs the command for one job and returns its result, or throws
// mw::JobError describing how it failed.
mw::Payload run_command(const ExecOptions& options, const mw::Job& job) {
  if (job.cancel.stop_requested())
    throw mw::JobError("the job's flow was cancelled before '" + options.command[0] + "' started", false);
  const std::string input = job.payload.to_json_text() + "\n";
  Pipe in, out, err, progress;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.write, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.write, STDERR_FILENO);
  posix_spawn_file_actions_adddup2(&actions, progress.write, mw::exec::kProgressFd);  // last: it may be one of the above
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // mw-exec blocks SIGINT/SIGTERM to receive them on a signalfd; the child
  // must get the default mask and dispositions back.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  // Its own process group: a Ctrl-C at the terminal (sent to mw-exec's
  // group) does not kill the job mw-exec is finishing, and a timeout or a
  // finished job can end whatever the command started (kill(-pid)).
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  set_env(env, "MW_JOB_ID", std::to_string(job.id));
  set_env(env, "MW_FLOW_ID", std::to_string(job.flow_id));
  set_env(env, "MW_JOB_TYPE", job.type);
  set_env(env, "MW_ATTEMPT", std::to_string(job.attempt));
  set_env(env, "MW_ENTITY", job.entity);
  set_env(env, "MW_PROGRESS_FD", std::to_string(mw::exec::kProgressFd));
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = options.command;
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  const int spawn_error = ::posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (spawn_error != 0)
    throw mw::JobError("cannot run '" + options.command[0] + "': " + std::strerror(spawn_error), false);
  options.reaper.started(pid);
  in.close_read();
  out.close_write();
  err.close_write();
  progress.close_write();
  ::fcntl(in.write, F_SETFL, O_NONBLOCK);
  mw::exec::ProgressLines progress_lines(job, options.command[0]);

  // Feed stdin and drain stdout/stderr together, so a child that writes a
  // lot before reading everything cannot deadlock with us.
  std::string stdout_text, stderr_text;
  std::size_t written = 0;
  bool too_much_output = false, timed_out = false;
  const auto started = std::chrono::steady_clock::now();
  char buffer[65536];
  // The command is not reaped before the end: until then its pid, which
  // names its process group, cannot be reused, so kill(-pid) is safe.
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> exited_at, stop_at, term_at;
  // Readable when the command exits (Linux 5.3+), so its end is seen at
  // once; without it, within kExitCheckMs.
  const int exit_fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  struct CloseExitFd {
    int fd;
    ~CloseExitFd() {
      if (fd >= 0) ::close(fd);
    }
  } close_exit_fd{exit_fd};
  // Readable once the job's flow is cancelled (written by the stop callback,
  // which may run on the worker's I/O thread).
  const int cancel_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct CloseCancelFd {
    int fd;
    ~CloseCancelFd() {
      if (fd >= 0) ::close(fd);
    }
  } close_cancel_fd{cancel_fd};
  std::stop_callback on_cancel(job.cancel, [cancel_fd] {
    const std::uint64_t one = 1;
    if (cancel_fd >= 0) {
      [[maybe_unused]] auto n = ::write(cancel_fd, &one, sizeof one);
    }
  });
  std::optional<Clock::time_point> cancelled_at;
  bool stopped = false, cancelled = false;
  for (;;) {
    const auto now = Clock::now();
    // The command has exited: what it started goes with it (else something
    // holding its output open would hold the job too).
    siginfo_t info{};
    if (!exited_at && ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      exited_at = now;
      ::kill(-pid, SIGKILL);
    }
    const bool output_open = out.read >= 0 || err.read >= 0;
    if (exited_at && (!output_open || now - *exited_at >= kDrainAfterExit)) break;  // a setsid escapee keeps it open
    if (options.timeout.count() > 0 && now - started >= options.timeout) {
      timed_out = true;
      break;
    }
    // mw-exec is stopping: the running command gets kStopGrace to finish,
    // then SIGTERM, then (below) SIGKILL; its job fails and is retried.
    if (stop_at && !term_at && now - *stop_at >= kStopGrace) {
      mw::log(mw::LogLevel::warn, "mw-exec",
              "job " + std::to_string(job.id) + ": '" + options.command[0] + "' (pid " + std::to_string(pid) +
                  ") still runs " + kStopGraceText + " s after the stop: SIGTERM, SIGKILL " + kTermGraceText +
                  " s later; the job will run again");
      ::kill(-pid, SIGTERM);
      term_at = now;
    }
    if (term_at && now - *term_at >= kTermGrace) {
      stopped = true;
      break;
    }
    // The job's flow was cancelled: nobody wants its result.
    if (!cancelled_at && !exited_at && job.cancel.stop_requested()) {
      mw::log(mw::LogLevel::info, "mw-exec",
              "job " + std::to_string(job.id) + "'s flow was cancelled: ending '" + options.command[0] + "' (pid " +
                  std::to_string(pid) + ") with SIGTERM, SIGKILL " + kTermGraceText + " s later");
      ::kill(-pid, SIGTERM);
      cancelled_at = now;
    }
    if (cancelled_at && !exited_at && now - *cancelled_at >= kTermGrace) {
      cancelled = true;
      break;
    }
    pollfd fds[7];
    int n = 0;
    int in_at = -1, out_at = -1, err_at = -1, progress_at = -1, stop_at_index = -1;
    if (in.write >= 0) { in_at = n; fds[n++] = {in.write, POLLOUT, 0}; }
    if (out.read >= 0) { out_at = n; fds[n++] = {out.read, POLLIN, 0}; }
    if (err.read >= 0) { err_at = n; fds[n++] = {err.read, POLLIN, 0}; }
    if (progress.read >= 0) { progress_at = n; fds[n++] = {progress.read, POLLIN, 0}; }
    if (!stop_at && options.stop_fd >= 0) { stop_at_index = n; fds[n++] = {options.stop_fd, POLLIN, 0}; }
    if (!exited_at && exit_fd >= 0) fds[n++] = {exit_fd, POLLIN, 0};
    if (!cancelled_at && !exited_at && cancel_fd >= 0) fds[n++] = {cancel_fd, POLLIN, 0};
    if (::poll(fds, static_cast<nfds_t>(n), static_cast<int>(kExitCheckMs)) < 0 && errno != EINTR) break;
    if (stop_at_index >= 0 && fds[stop_at_index].revents) {
      stop_at = Clock::now();
      mw::log(mw::LogLevel::info, "mw-exec",
              "stopping: job " + std::to_string(job.id) + "'s '" + options.command[0] + "' (pid " + std::to_string(pid) +
                  ") gets " + kStopGraceText + " s to finish");
    }
    if (in_at >= 0 && fds[in_at].revents) {
      const ssize_t w = ::write(in.write, input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if (w < 0 && errno != EAGAIN) in.close_write();  // EPIPE: the child does not read its input
      if (written == input.size()) in.close_write();
    }
    if (out_at >= 0 && fds[out_at].revents) {
      const ssize_t r = ::read(out.read, buffer, sizeof buffer);
      if (r <= 0) {
        out.close_read();
      } else {
        stdout_text.append(buffer, static_cast<std::size_t>(r));
        if (stdout_text.size() > kMaxStdoutBytes) {
          too_much_output = true;
          break;
        }
      }
    }
    if (progress_at >= 0 && fds[progress_at].revents) {
      const ssize_t r = ::read(progress.read, buffer, sizeof buffer);
      if (r <= 0) {
        progress.close_read();
      } else {
        progress_lines.take(std::string_view(buffer, static_cast<std::size_t>(r)));
      }
    }
    if (err_at >= 0 && fds[err_at].revents) {
      const ssize_t r = ::read(err.read, buffer, sizeof buffer);
      if (r <= 0) {
        err.close_read();
      } else {
        stderr_text.append(buffer, static_cast<std::size_t>(r));
        if (stderr_text.size() > 4 * kStderrTailBytes) stderr_text.erase(0, stderr_text.size() - kStderrTailBytes);
      }
    }
  }
  if (timed_out || too_much_output || stopped || cancelled) ::kill(-pid, SIGKILL);
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
  }
  ::kill(-pid, SIGKILL);  // what the command left running ends with its job
  options.reaper.ended(pid);  // before the reap: until then the pid is not reused
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (cancelled_at)
    throw mw::JobError("the job's flow was cancelled: '" + options.command[0] + "' was ended", false);
  if (timed_out)
    throw mw::JobError("'" + options.command[0] + "' ran longer than " + std::to_string(options.timeout.count()) +
                       " ms and was killed");
  if (too_much_output) throw mw::JobError("'" + options.command[0] + "' wrote more than 16 MiB to stdout", false);
  // Ended because mw-exec is stopping (SIGKILLed, or gone at the SIGTERM
  // without finishing): the job was not done here, and goes back without
  // using up an attempt.
  if (stopped || (term_at && (WIFSIGNALED(status) || WEXITSTATUS(status) != 0)))
    throw mw::JobHandedBack("mw-exec was stopping and '" + options.command[0] + "' ran on for " + kStopGraceText +
                            " s more: it was ended");

  const std::string said = tail_lines(stderr_text);
  if (WIFSIGNALED(status))
    throw mw::JobError("'" + options.command[0] + "' was killed by signal " + std::to_string(WTERMSIG(status)) +
                       (said.empty() ? "" : ": " + said));
  const int code = WEXITSTATUS(status);
  if (code != 0) {
    throw mw::JobError(said.empty() ? "exit status " + std::to_string(code) : said, code != kExitDataError);
  }
  if (stdout_text.find_first_not_of(" \t\r\n") == std::string::npos) return mw::Payload();
  try {
    return mw::Payload::parse_json(stdout_text);
  } catch (const mw::Error& e) {
    // The parser's message may quote the whole output: say what is wrong, not all of it.
    const std::string why = mw::shortened(e.what(), kMaxQuotedBytes);
    throw mw::JobError("'" + options.command[0] + "' printed " + std::to_string(stdout_text.size()) +
                           " bytes that are not JSON: " + why,
                       false);
  }
}

// Throws unless `program` can be run, as posix_spawnp would look for it:
// a command that cannot start would otherwise fail every job it is given.
void check_runnable(const std::string& program) {
  const auto executable = [](const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) {
    if (executable(program)) return;
    throw mw::UsageError("cannot run '" + program + "': " +
                         (::access(program.c_str(), F_OK) == 0 ? "not an executable file" : "no such file"));
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (executable((dir.empty() ? "." : dir) + "/" + program)) return;
  throw mw::UsageError("cannot run '" + program + "': not found on PATH");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    // A command that exits without reading its input makes the write of
    // the payload fail with EPIPE; without this, SIGPIPE would kill mw-exec
    // (and with it every job it holds) instead.
    ::signal(SIGPIPE, SIG_IGN);
    auto stop = mw::StopSignal::on_signals();
    // Everything after "--" is the command, untouched by option parsing.
    int split = argc;
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--") == 0) {
        split = i;
        break;
      }
    }
    cxxopts::Options options("mw-exec",
                             "Run any command as an mw worker, once per job: the payload as JSON on its stdin, the "
                             "result as JSON from its stdout. A non-zero exit fails the job with the last lines of "
                             "stderr, retried up to its max attempts; exit 65 fails it for good.");
    options.custom_help("--type T [OPTION...] -- COMMAND [ARG ...]");
    options.add_options()
        ("broker", mw::kBrokerFlagHelp,
         cxxopts::value<std::string>()->default_value(mw::default_broker_address()))
        ("type", "job type(s) to serve, comma-separated (or --type given more than once)",
         cxxopts::value<std::string>())
        ("next", "type of the job the result becomes; empty ends the flow", cxxopts::value<std::string>()->default_value(""))
        ("concurrency", "commands run at once", cxxopts::value<std::uint32_t>()->default_value("1"))
        ("timeout", "kill a command running longer than this many seconds and fail the job (0 = never)",
         cxxopts::value<std::string>()->default_value("0"))
        ("log-level", "debug, info, warn, error or off", cxxopts::value<std::string>()->default_value("info"))
        ("version", "print the version")
        ("h,help", "print this help");
    auto args = options.parse(split, argv);
    if (args.count("help")) {
      std::cout << options.help() << "\n" << help_notes() << std::endl;
      return 0;
    }
    if (args.count("version")) {
      std::cout << "mw-exec " << mw::kVersion << std::endl;
      return 0;
    }
    if (!args.unmatched().empty())
      throw mw::UsageError("unexpected argument '" + args.unmatched().front() + "' (put the command after --)");
    if (!args.count("type")) throw mw::UsageError("--type is required: mw-exec --type T -- COMMAND [ARG ...]");
    if (split >= argc - 1) throw mw::UsageError("no command: mw-exec --type T -- COMMAND [ARG ...]");
    mw::set_log_level(mw::parse_log_level(args["log-level"].as<std::string>()));

    ExecOptions exec;
    for (int i = split + 1; i < argc; ++i) exec.command.emplace_back(argv[i]);
    check_runnable(exec.command[0]);
    exec.stop_fd = stop.fd();
    const double timeout_s = mw::parse_decimal(args["timeout"].as<std::string>(), "--timeout");
    // Ten years at most: the milliseconds must fit, and no job runs longer.
    if (timeout_s < 0 || timeout_s > 315'360'000)
      throw mw::UsageError("--timeout must be between 0 (never) and 315360000 seconds");
    exec.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
    // Forked while this is the only thread (the worker starts the others).
    exec.reaper = mw::exec::ExecReaper::start();

    mw::WorkerOptions wo;
    wo.broker = args["broker"].as<std::string>();
    std::vector<std::string> type_lists;  // one per --type given
    for (const auto& given : args.arguments())
      if (given.key() == "type") type_lists.push_back(given.value());
    wo.types = mw::split_types(type_lists, "--type");
    wo.next = args["next"].as<std::string>();
    wo.concurrency = args["concurrency"].as<std::uint32_t>();
    wo.threads = wo.concurrency;  // one command per held job
    // Its jobs are processes, milliseconds each: no gap between messages is
    // short enough to be worth a spin (mw/spin_poll.hpp).
    wo.spin_us = 0;
    wo.name = mw::joined_types(wo.types) + "@mw-exec";
    mw::Worker worker(wo, [&exec](const mw::Job& job) {
      try {
        return run_command(exec, job);
      } catch (const mw::JobError& e) {
        // Whoever watches this worker sees why its jobs fail, not only the broker's log.
        mw::log(mw::LogLevel::warn, "mw-exec",
                "job " + std::to_string(job.id) + " (flow " + std::to_string(job.flow_id) + ", attempt " +
                    std::to_string(job.attempt) + ") failed" + (e.retryable() ? "" : " for good") + ": " + e.what());
        throw;
      }
    });
    mw::log(mw::LogLevel::info, "mw-exec", "serving " + mw::joined_types(wo.types) + " with '" + exec.command[0] + "'; connecting to the broker at " + wo.broker);
    worker.run(stop);
    const auto counters = worker.counters();
    mw::log(mw::LogLevel::info, "mw-exec",
            "stopped: " + std::to_string(counters.done) + " job(s) done, " + std::to_string(counters.failed) +
                " failed, " + std::to_string(counters.cancelled) + " cancelled, " +
                std::to_string(counters.handed_back) +
                " handed back unfinished (their commands were ended by the stop; they run again, the attempt not "
                "counted); jobs not started went back to the broker");
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "mw-exec: %s (see --help)\n", mw::option_error_text(e.what(), argc, argv).c_str());
    return mw::kUsageExitCode;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw-exec: %s\n", e.what());
    return mw::exit_code_for(e);
  }
  return 1;
}
