// mw/log.hpp: every log line starts with its time, whatever a message holds;
// one_line for texts shown to people; the limiter.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "mw/log.hpp"

namespace {

// What log() writes to stderr for one message.
std::string logged(std::string_view message) {
  std::fflush(stderr);
  char path[] = "/tmp/mw-log-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(fd, STDERR_FILENO);
  mw::log(mw::LogLevel::warn, "test", message);
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::string out;
  ::lseek(fd, 0, SEEK_SET);
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  ::unlink(path);
  return out;
}

}  // namespace

TEST_CASE("a message with line breaks or control characters is logged as one line") {
  const std::string line = logged("worker says: line one\nline two\r\x01 end\ttab");
  CHECK(line.find("warn  test: worker says: line one\\nline two\\r\\x01 end\ttab\n") != std::string::npos);
  CHECK(line.find('\n') == line.size() - 1);
  const std::string plain = logged("nothing to escape: é ü");  // UTF-8 passes as it is
  CHECK(plain.find("test: nothing to escape: é ü\n") != std::string::npos);
}

TEST_CASE("one_line joins lines with ' | '") {
  CHECK(mw::one_line("a") == "a");
  CHECK(mw::one_line("a\nb") == "a | b");
  CHECK(mw::one_line("a\r\nb\rc") == "a | b | c");
  CHECK(mw::one_line("trailing\n") == "trailing");
  CHECK(mw::one_line("") == "");
}

TEST_CASE("shortened cuts at a character boundary and says so") {
  CHECK(mw::shortened("short", 10) == "short");
  CHECK(mw::shortened("abcdef", 3) == "abc…");
  CHECK(mw::shortened("ab\xc3\xa9" "cd", 3) == "ab…");  // not inside é
  CHECK(mw::shortened("ab\xc3\xa9" "cd", 4) == "ab\xc3\xa9" "…");
}

TEST_CASE("LogLimiter lets a burst through per window and counts the rest") {
  mw::LogLimiter limiter(2, 1000);
  std::uint64_t suppressed = 0;
  CHECK(limiter.allow(0, suppressed));
  CHECK(limiter.allow(10, suppressed));
  CHECK_FALSE(limiter.allow(20, suppressed));
  CHECK_FALSE(limiter.allow(30, suppressed));
  CHECK(limiter.allow(1000, suppressed));
  CHECK(suppressed == 2);
}
