// The integration suite's entry point: doctest, plus cleanup of child
// processes should the test program itself be killed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "mw/log.hpp"
#include "process.hpp"

int main(int argc, char** argv) {
  mwtest::install_child_cleanup();
  // In-process workers and clients log to this program's stderr: keep it to problems.
  mw::set_log_level(mw::LogLevel::warn);
  doctest::Context context(argc, argv);
  return context.run();
}
