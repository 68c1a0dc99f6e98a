#include "exec_reaper.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace mw::exec {

namespace {

// The reaper's whole life: collect the groups, kill those left at EOF.
[[noreturn]] void reap_on_eof(int read_fd) {
  // Ctrl-C at a terminal reaches the whole foreground group, the reaper
  // too: it must outlive mw-exec's own stop, so it ignores what stops it.
  // A group of its own as well: a kill aimed at mw-exec's group (job
  // control's kill %1, timeout -s KILL, Ctrl-\) must not take it along.
  ::setpgid(0, 0);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::prctl(PR_SET_NAME, "mw-reaper", 0, 0, 0);  // not "mw-exec…": pkill mw-exec must miss it
  std::vector<pid_t> running;
  pid_t message[64];
  for (;;) {
    const ssize_t n = ::read(read_fd, message, sizeof message);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: mw-exec has exited, however it died
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(pid_t)); ++i) {
      const pid_t group = message[i];
      if (group > 0) {
        running.push_back(group);
      } else {
        std::erase(running, -group);
      }
    }
  }
  for (const pid_t group : running) ::kill(-group, SIGKILL);
  ::_exit(0);
}

}  // namespace

ExecReaper ExecReaper::start() {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return ExecReaper();
  // Above the standard descriptors, even if mw-exec started with them
  // closed: log lines written to fd 2 must not land in the pipe.
  int fds[2];
  for (int i = 0; i < 2; ++i) {
    fds[i] = ::fcntl(pipe_fds[i], F_DUPFD_CLOEXEC, 3);
    ::close(pipe_fds[i]);
  }
  if (fds[0] < 0 || fds[1] < 0) {
    for (const int fd : fds)
      if (fd >= 0) ::close(fd);
    return ExecReaper();
  }
  // A stopped reaper must not block the worker's threads: a record that
  // does not fit is lost (best effort).
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return ExecReaper();
  }
  if (pid == 0) {
    ::close(fds[1]);  // else the reaper would hold its own EOF off
    reap_on_eof(fds[0]);
  }
  ::close(fds[0]);
  return ExecReaper(fds[1]);
}

void ExecReaper::tell(pid_t signed_group) const noexcept {
  if (write_fd_ < 0) return;
  // Whole or not at all (a pipe keeps writes of up to PIPE_BUF whole); a
  // reaper that died makes this fail with EPIPE (SIGPIPE is ignored), a
  // full pipe with EAGAIN.
  [[maybe_unused]] const ssize_t n = ::write(write_fd_, &signed_group, sizeof signed_group);
}

}  // namespace mw::exec
