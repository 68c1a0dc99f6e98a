#include "store_lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mw/error.hpp"

namespace mw::broker {

StoreLock::StoreLock(const std::string& store_path) {
  const std::string lock_path = store_path + ".lock";
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error("cannot open store '" + store_path + "': cannot create its lock file '" + lock_path +
                "': " + std::strerror(errno));
  struct flock whole {};
  whole.l_type = F_WRLCK;
  whole.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file
  if (::fcntl(fd_, F_SETLK, &whole) == 0) return;
  const int why = errno;
  std::string holder = "another process";
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  if (::fcntl(fd_, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK)
    holder = "process " + std::to_string(probe.l_pid) + " (another mw-broker?)";
  ::close(fd_);
  fd_ = -1;
  if (why == EACCES || why == EAGAIN)
    throw Error("store '" + store_path + "' is in use by " + holder +
                    ": one broker per store; stop that one or give this one another --store",
                ErrorCode::Conflict);
  throw Error("cannot lock '" + lock_path + "': " + std::strerror(why));
}

StoreLock::~StoreLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace mw::broker
