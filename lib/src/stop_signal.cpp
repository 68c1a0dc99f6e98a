#include "mw/stop_signal.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "mw/error.hpp"

namespace mw {

StopSignal::StopSignal() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw Error(std::string("eventfd: ") + std::strerror(errno));
}

StopSignal StopSignal::on_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) throw Error("cannot block SIGINT/SIGTERM");
  const int fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) throw Error(std::string("signalfd: ") + std::strerror(errno));
  return StopSignal(fd, true);
}

StopSignal::StopSignal(StopSignal&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), from_signals_(other.from_signals_) {}

StopSignal& StopSignal::operator=(StopSignal&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    from_signals_ = other.from_signals_;
  }
  return *this;
}

StopSignal::~StopSignal() {
  if (fd_ >= 0) ::close(fd_);
}

void StopSignal::notify() noexcept {
  if (fd_ < 0 || from_signals_) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

bool StopSignal::fired() const noexcept {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

int StopSignal::received_signal() noexcept {
  sigset_t pending;
  if (sigpending(&pending) != 0) return 0;
  if (sigismember(&pending, SIGTERM) == 1) return SIGTERM;
  if (sigismember(&pending, SIGINT) == 1) return SIGINT;
  return 0;
}

}  // namespace mw
