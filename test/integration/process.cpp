#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace mwtest {
namespace {

// Pids of live children, for the fatal-signal handler. Lock-free slots so
// that the handler (async-signal context) can read them.
constexpr std::size_t kMaxChildren = 256;
std::array<std::atomic<pid_t>, kMaxChildren> g_children{};

void remember_child(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = 0;
    if (slot.compare_exchange_strong(expected, pid)) return;
  }
  // More children than slots: they are still reaped by their destructors.
}

void forget_child(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

void kill_children_and_die(int sig) {
  for (auto& slot : g_children) {
    const pid_t pid = slot.load();
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A log name not yet used in `dir`: name, name-2, name-3 ...
std::string unique_name(const std::filesystem::path& dir, const std::string& name) {
  std::string candidate = name;
  for (int n = 2; std::filesystem::exists(dir / (candidate + ".err")); ++n) candidate = name + "-" + std::to_string(n);
  return candidate;
}

std::string last_lines(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t n = 0; n < lines && pos > 0; ++n) {
    const auto nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return pos == 0 ? text : text.substr(pos + 1);
}

}  // namespace

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout, std::chrono::milliseconds step) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::min<Clock::duration>(step, deadline - Clock::now() + 1ms));
  }
}

pid_t pid_in_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

bool process_ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

void pause_for(std::chrono::milliseconds duration) { std::this_thread::sleep_for(duration); }

void install_child_cleanup() {
  struct sigaction action {};
  action.sa_handler = kill_children_and_die;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGABRT, SIGSEGV}) ::sigaction(sig, &action, nullptr);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- TempDir --------------------------------------------------------------

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/mw-integration-XXXXXX";
  if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  path_ = pattern;
}

TempDir::~TempDir() {
  if (std::getenv("MW_TEST_KEEP")) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

// ---- Process --------------------------------------------------------------

Process::Process(std::string name, std::vector<std::string> argv, const std::filesystem::path& log_dir)
    : name_(unique_name(log_dir, name)),
      out_path_(log_dir / (name_ + ".out")),
      err_path_(log_dir / (name_ + ".err")) {
  if (argv.empty()) throw std::runtime_error("Process: empty argv");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // Sockets of this test program must not leak into the children.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  // Caught signals are reset by exec anyway; ignored ones would be inherited.
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int error = ::posix_spawn(&pid_, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(error));
  remember_child(pid_);
}

Process::~Process() { stop(); }

bool Process::reap(bool block) {
  if (exit_status_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exit_status_ = decode_status(status);
    forget_child(pid_);
    return true;
  }
  if (r < 0) {  // ECHILD: someone else reaped it; treat as gone.
    exit_status_ = -1;
    forget_child(pid_);
    return true;
  }
  return false;
}

bool Process::running() { return !reap(false); }

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout) {
  if (!wait_until([&] { return reap(false); }, timeout, 10ms)) return std::nullopt;
  return exit_status_;
}

void Process::signal(int sig) {
  if (!exit_status_) ::kill(pid_, sig);
}

int Process::stop(std::chrono::milliseconds grace) {
  if (running()) {
    ::kill(pid_, SIGTERM);
    ::kill(pid_, SIGCONT);
    if (!wait_exit(grace)) {
      ::kill(pid_, SIGKILL);
      reap(true);  // SIGKILL cannot be ignored: this returns promptly
    }
  }
  return *exit_status_;
}

std::string Process::stdout_text() const { return read_file(out_path_); }
std::string Process::stderr_text() const { return read_file(err_path_); }

std::optional<std::string> Process::wait_for_stderr_line(std::string_view needle,
                                                         std::chrono::milliseconds timeout) const {
  std::optional<std::string> line;
  wait_until(
      [&] {
        const std::string text = stderr_text();
        const auto at = text.find(needle);
        if (at == std::string::npos) return false;
        const auto end = text.find('\n', at);
        if (end == std::string::npos) return false;  // wait for the whole line
        const auto begin = text.rfind('\n', at);
        line = text.substr(begin == std::string::npos ? 0 : begin + 1, end - (begin == std::string::npos ? 0 : begin + 1));
        return true;
      },
      timeout);
  return line;
}

std::string Process::tail(std::size_t lines) const {
  std::string out = "---- " + name_ + " (pid " + std::to_string(pid_) + ") stderr:\n" +
                    last_lines(stderr_text(), lines) + "\n";
  const std::string so = stdout_text();
  if (!so.empty()) out += "---- " + name_ + " stdout:\n" + last_lines(so, lines) + "\n";
  return out;
}

Finished run_to_exit(std::string name, std::vector<std::string> argv, const std::filesystem::path& log_dir,
                     std::chrono::milliseconds timeout) {
  Process p(std::move(name), std::move(argv), log_dir);
  Finished f;
  if (auto status = p.wait_exit(timeout)) {
    f.exit_status = *status;
  } else {
    p.stop(500ms);
    f.exit_status = -1;
  }
  f.out = p.stdout_text();
  f.err = p.stderr_text();
  return f;
}

std::optional<long> resident_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return std::nullopt;
}

}  // namespace mwtest
