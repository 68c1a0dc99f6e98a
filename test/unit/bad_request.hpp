// bad_request.hpp — what a refused argument says, for unit tests of the
// CLI's argument checks.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "mw/error.hpp"

// The message of the mw::Error that `f` throws, which must be BadRequest;
// fails the test when nothing is thrown.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const mw::Error& e) {
    CHECK(e.code() == mw::ErrorCode::BadRequest);
    return e.what();
  }
  FAIL("no mw::Error thrown");
  return {};
}
