// mw/options.hpp: the broker address every program defaults to, addresses a
// broker reports, and option errors that name the flag at fault.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "mw/error.hpp"
#include "mw/options.hpp"

namespace {

std::string error_for(std::string_view parser_message, std::vector<const char*> argv) {
  return mw::option_error_text(parser_message, static_cast<int>(argv.size()), argv.data());
}

constexpr std::string_view kFailedToParse = "Argument \u2018abc\u2019 failed to parse";

}  // namespace

TEST_CASE("option_error_text names the flag whose value did not parse") {
  CHECK(error_for(kFailedToParse, {"submit", "sq", "{}", "--timeout", "abc"}) ==
        "--timeout 'abc' is not a valid value");
  CHECK(error_for(kFailedToParse, {"submit", "--timeout=abc", "sq"}) == "--timeout 'abc' is not a valid value");
  CHECK(error_for(kFailedToParse, {"mw-exec", "-c", "abc"}) == "-c 'abc' is not a valid value");
  // Two flags with that value: which one failed is not known, so none is named.
  CHECK(error_for(kFailedToParse, {"submit", "--key", "abc", "--priority", "abc"}) == "'abc' is not a valid value");
  // A positional word equal to the value is no flag's value.
  CHECK(error_for(kFailedToParse, {"submit", "abc"}) == "'abc' is not a valid value");
}

TEST_CASE("option_error_text passes other complaints on with plain quotes") {
  CHECK(error_for("Option \u2018bogus\u2019 does not exist", {"submit", "--bogus"}) == "Option 'bogus' does not exist");
  CHECK(error_for("plain text", {"x"}) == "plain text");
}

TEST_CASE("parse_decimal takes a whole number, and names the flag otherwise") {
  CHECK(mw::parse_decimal("30", "--timeout") == 30.0);
  CHECK(mw::parse_decimal("1.5", "--timeout") == 1.5);
  CHECK(mw::parse_decimal("1e3", "--timeout") == 1000.0);
  CHECK(mw::parse_decimal("+5", "--timeout") == 5.0);
  CHECK(mw::parse_decimal("-2", "--timeout") == -2.0);  // the caller says which range it takes
  for (const char* bad : {"5x", "", "0x2", "abc", " 5", "inf", "nan", "+-5", "++5"}) {
    CAPTURE(bad);
    try {
      mw::parse_decimal(bad, "--timeout");
      FAIL("accepted");
    } catch (const mw::UsageError& e) {
      CHECK(std::string(e.what()) == "--timeout '" + std::string(bad) + "' is not a number");
    }
  }
}

TEST_CASE("default_broker_address prefers a non-empty $MW_BROKER") {
  ::unsetenv("MW_BROKER");
  CHECK(mw::default_broker_address() == "tcp://127.0.0.1:5555");
  ::setenv("MW_BROKER", "", 1);
  CHECK(mw::default_broker_address() == "tcp://127.0.0.1:5555");
  ::setenv("MW_BROKER", "ipc:///tmp/mw.sock", 1);
  CHECK(mw::default_broker_address() == "ipc:///tmp/mw.sock");
  ::unsetenv("MW_BROKER");
}

TEST_CASE("connectable_address reaches a wildcard bind on the broker's host") {
  CHECK(mw::connectable_address("tcp://0.0.0.0:5556", "tcp://10.1.2.3:5555") == "tcp://10.1.2.3:5556");
  CHECK(mw::connectable_address("tcp://*:5556", "tcp://broker.example:5555") == "tcp://broker.example:5556");
  CHECK(mw::connectable_address("tcp://127.0.0.1:5556", "tcp://10.1.2.3:5555") == "tcp://127.0.0.1:5556");
  CHECK(mw::connectable_address("ipc:///tmp/pub", "tcp://10.1.2.3:5555") == "ipc:///tmp/pub");
}

// check_broker_address's message for `address`; empty when it takes it.
std::string refusal_of(const char* address) {
  try {
    mw::check_broker_address(address);
    return {};
  } catch (const mw::Error& e) {
    CHECK(e.code() == mw::ErrorCode::BadRequest);
    return e.what();
  }
}

TEST_CASE("check_broker_address refuses a TCP address whose port no socket can have") {
  for (const char* fine : {"tcp://127.0.0.1:5555", "tcp://broker.example:1", "tcp://[::1]:65535", "ipc:///tmp/mw.sock",
                           "inproc://broker"})
    CHECK(refusal_of(fine).empty());
  for (const char* unusable : {"tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1:", "tcp://127.0.0.1",
                               "tcp://127.0.0.1:55x", "tcp://127.0.0.1:-1", "tcp://127.0.0.1:*",
                               "tcp://127.0.0.1:99999999999999999999"}) {
    CAPTURE(unusable);
    CHECK(refusal_of(unusable).find("its port must be a number from 1 to 65535") != std::string::npos);
  }
  // A bind address, copied from --bind.
  for (const char* bind_address : {"tcp://*:5555", "tcp://:5555"}) {
    CAPTURE(bind_address);
    CHECK(refusal_of(bind_address).find("is no host to connect to") != std::string::npos);
  }
}

TEST_CASE("check_bind_address refuses a TCP port ZeroMQ would take modulo 65536, and takes * and 0") {
  const auto refusal = [](const char* address) -> std::string {
    try {
      mw::check_bind_address(address, "the broker socket (--bind)");
      return {};
    } catch (const mw::Error& e) {
      CHECK(e.code() == mw::ErrorCode::BadRequest);
      return e.what();
    }
  };
  for (const char* fine : {"tcp://*:5555", "tcp://127.0.0.1:*", "tcp://0.0.0.0:0", "tcp://[::1]:65535",
                           "ipc:///tmp/mw.sock", "inproc://broker"})
    CHECK(refusal(fine).empty());
  for (const char* unusable : {"tcp://127.0.0.1:99999", "tcp://*:65536", "tcp://127.0.0.1:", "tcp://127.0.0.1",
                               "tcp://*:55x", "tcp://*:-1"}) {
    CAPTURE(unusable);
    CHECK(refusal(unusable) == std::string("cannot bind the broker socket (--bind) to ") + unusable +
                                   ": its port must be a number from 0 to 65535, or * for any free one (like "
                                   "tcp://*:5555)");
  }
}

TEST_CASE("option_error_text says a negative number is no option, where the parser took one for it") {
  CHECK(error_for("Option ‘5’ does not exist", {"mw", "result", "-5"}) ==
        "'-5' is not an option, and no value here may be a negative number");
  CHECK(error_for("Option ‘1’ does not exist", {"mw", "result", "-12"}) ==
        "'-12' is not an option, and no value here may be a negative number");
  CHECK(error_for("Option ‘1’ does not exist", {"mw", "submit", "t", "-1.5"}) ==
        "'-1.5' is not an option, and no value here may be a negative number");
  CHECK(error_for("Option ‘x’ does not exist", {"mw", "result", "-x"}) == "Option 'x' does not exist");
  CHECK(error_for("Option ‘55’ does not exist", {"mw", "status", "--55"}) == "Option '55' does not exist");
}
