// A SQLite file for one test: a unique path in the temp directory, removed
// (with its WAL/SHM companions) on destruction.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <system_error>

// A unique path in the temp directory; the file and its WAL/SHM companions
// are removed on destruction.
class TempDb {
 public:
  TempDb() {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("mw_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".db"))
                .string();
    remove_all();
  }
  ~TempDb() { remove_all(); }
  const std::string& path() const { return path_; }

 private:
  void remove_all() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path_ + suffix, ec);
  }
  std::string path_;
};

