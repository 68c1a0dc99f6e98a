// exec_reaper.hpp — ends mw-exec's commands when mw-exec dies unannounced.
//
// mw-exec ends its commands' process groups itself when it is stopped, a
// job is cancelled or times out. Killed with SIGKILL (or by the OOM
// killer), it can do nothing: its commands would run on unwatched while
// their jobs, requeued by the broker, run again elsewhere. So mw-exec
// starts a reaper first, a forked process that waits on a pipe: mw-exec
// writes the process group of each command it starts and of each it has
// ended; when the pipe reaches end of file (mw-exec is gone, however it
// died) the reaper kills the groups still running and exits.
//
//   ExecReaper reaper = ExecReaper::start();   // before any thread exists
//   reaper.started(pid);   // after posix_spawn: the command's group is pid
//   reaper.ended(pid);     // before the command is reaped (its pid cannot be reused yet)
//
// The reaper is named mw-reaper and has a process group of its own, so a
// kill of mw-exec's group does not take it along. Best effort: a command
// mw-exec dies before announcing (a few µs after its spawn) is not
// covered, nor are commands that leave their group.
// Thread safety: started() and ended() may be called from any thread (one
// write of at most PIPE_BUF bytes each, which the pipe keeps whole).
#pragma once

#include <sys/types.h>

namespace mw::exec {

class ExecReaper {
 public:
  // Forks the reaper. Call while the process has one thread: the child
  // runs on after fork() and only one thread survives it. If the fork
  // fails, the reaper is missing and started()/ended() do nothing.
  static ExecReaper start();
  // No reaper: started() and ended() do nothing.
  ExecReaper() = default;

  void started(pid_t group) const noexcept { tell(group); }
  void ended(pid_t group) const noexcept { tell(-group); }

 private:
  explicit ExecReaper(int write_fd) : write_fd_(write_fd) {}
  void tell(pid_t signed_group) const noexcept;
  int write_fd_ = -1;  // -1 without a reaper; never closed: its closing at exit is the signal
};

}  // namespace mw::exec
