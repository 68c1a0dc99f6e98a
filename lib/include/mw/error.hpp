// mw/error.hpp — how mw reports failure.
//
// mw::Error is thrown for set-up and programmer mistakes (a bad address, a
// broker that cannot be reached in time, an ERROR reply). Timeouts and
// "nothing yet" are std::optional returns, never exceptions. A job handler
// fails a job by throwing: any std::exception fails it retryably, JobError
// lets the handler say whether a retry can help.
#pragma once

#include <stdexcept>
#include <string>

#include "mw/protocol.hpp"

namespace mw {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorCode code = ErrorCode::Internal)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// A command line that cannot be run as given: a missing or unexpected
// argument, a bad option value, a command that does not exist. Nothing was
// done, and asking the same again will fail the same way. (Its code is
// BadRequest, as for a request the broker refuses as malformed.)
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(message, ErrorCode::BadRequest) {}
};

// The exit code of the mw programs for a request that cannot be run as
// given, as for a command line their option parser rejects: a script can
// tell it from work that failed (1).
inline constexpr int kUsageExitCode = 2;

// The exit code of a program that stops on `e`: kUsageExitCode for a
// request that cannot run as given (an Error with code BadRequest, as every
// UsageError has, or TooLarge), 1 otherwise.
inline int exit_code_for(const std::exception& e) noexcept {
  const auto* error = dynamic_cast<const Error*>(&e);
  const bool as_given = error && (error->code() == ErrorCode::BadRequest || error->code() == ErrorCode::TooLarge);
  return as_given ? kUsageExitCode : 1;
}

// Thrown by a blocking Client call whose ClientOptions::stop fired while it
// waited (Ctrl-C on a command line tool). What was sent stays sent.
class Interrupted : public Error {
 public:
  explicit Interrupted(const std::string& message) : Error(message, ErrorCode::Unavailable) {}
};

// Thrown from a job handler to fail the job. `retryable == false` makes the
// job dead at once (bad input will not get better on the next attempt).
class JobError : public std::runtime_error {
 public:
  explicit JobError(const std::string& message, bool retryable = true)
      : std::runtime_error(message), retryable_(retryable) {}
  bool retryable() const noexcept { return retryable_; }

 private:
  bool retryable_;
};

// Thrown from a job handler that gives its job back unfinished because the
// worker is stopping (mw-exec does, for a command it had to end): no answer
// is sent for it, and the worker's DISCONNECT returns it to the front of
// its queue without counting the attempt, as a job never started. Thrown
// while the worker is not stopping, it fails the job (retryable) instead.
class JobHandedBack : public std::runtime_error {
 public:
  explicit JobHandedBack(const std::string& why) : std::runtime_error(why) {}
};

}  // namespace mw
