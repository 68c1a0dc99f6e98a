#include "exec_progress.hpp"

#include <utility>

#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/protocol.hpp"

namespace mw::exec {
namespace {

// A line longer than this cannot be a progress value (whose msgpack is at
// most kMaxProgressBytes): it is skipped without being kept.
constexpr std::size_t kMaxLineBytes = 4 * kMaxProgressBytes;

}  // namespace

ProgressLines::ProgressLines(const Job& job, std::string command) : job_(job), command_(std::move(command)) {}

void ProgressLines::take(std::string_view bytes) {
  while (!bytes.empty()) {
    const std::size_t end = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, end);
    if (!skipping_) {
      if (partial_.size() + piece.size() > kMaxLineBytes) {
        warn_once("a progress line longer than " + std::to_string(kMaxLineBytes) + " bytes was skipped");
        partial_.clear();
        skipping_ = true;
      } else {
        partial_.append(piece);
      }
    }
    if (end == std::string_view::npos) return;
    if (!skipping_) report_line(partial_);
    partial_.clear();
    skipping_ = false;
    bytes.remove_prefix(end + 1);
  }
}

void ProgressLines::report_line(std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
  try {
    job_.report_progress(Payload::parse_json(line));
  } catch (const std::exception& e) {
    warn_once(std::string("a progress line was skipped: ") + e.what());
  }
}

void ProgressLines::warn_once(const std::string& why) {
  if (std::exchange(warned_, true)) return;
  log(LogLevel::warn, "mw-exec",
      "job " + std::to_string(job_.id) + ": '" + command_ + "' wrote to $MW_PROGRESS_FD (" +
          std::to_string(kProgressFd) + "), but " + why + "; each line there must be one JSON value (more such "
          "lines of this job are skipped without a word)");
}

}  // namespace mw::exec
