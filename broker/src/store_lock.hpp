// store_lock.hpp — one broker per store file.
//
// Two brokers on one SQLite file would each recover its unfinished jobs
// and hand them out twice. StoreLock takes an exclusive POSIX record lock
// on "<store>.lock" (created next to the store, left there on exit: the
// lock, not the file, is what counts), so the second broker refuses to
// start and names the process that holds the store. The lock goes with
// the process, so a broker killed with kill -9 leaves nothing to clean up.
//
// POSIX locks belong to a process: a second StoreLock on the same path in
// the same process succeeds (tests open one store twice), and destroying
// either releases both.
#pragma once

#include <string>

namespace mw::broker {

class StoreLock {
 public:
  // Locks "<store_path>.lock". Throws mw::Error: Conflict naming the
  // process that holds it, or Internal saying why the lock file cannot be
  // opened.
  explicit StoreLock(const std::string& store_path);
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace mw::broker
