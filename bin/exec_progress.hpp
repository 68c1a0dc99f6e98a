// exec_progress.hpp — a command's progress, as mw-exec reads it.
//
// mw-exec opens a pipe on the command's file descriptor 3 and says so in
// $MW_PROGRESS_FD. Each line the command writes there is one JSON value,
// the job's progress (Job::report_progress): shown by `mw flows`, and
// published on $mw.progress.
//
//   echo '{"done": 3, "of": 10}' >&"$MW_PROGRESS_FD"
//
// A line that is not JSON, or over the size a progress may have, is
// skipped and said once per job in mw-exec's log; it never fails the job.
#pragma once

#include <string>
#include <string_view>

#include "mw/worker.hpp"

namespace mw::exec {

// The descriptor a command writes its progress lines to.
inline constexpr int kProgressFd = 3;

class ProgressLines {
 public:
  // `command` names the command in log lines.
  ProgressLines(const Job& job, std::string command);

  // Bytes read from the pipe: every line they complete is reported.
  void take(std::string_view bytes);

 private:
  void report_line(std::string_view line);
  void warn_once(const std::string& why);

  const Job& job_;
  std::string command_;
  std::string partial_;  // a line not ended yet
  bool skipping_ = false;  // the rest of a line too long to be one
  bool warned_ = false;
};

}  // namespace mw::exec
