// mw/options.hpp — the addresses and defaults every mw program agrees on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mw {

// What a message adds when no broker answers at an address.
inline constexpr std::string_view kNoBrokerHint = "is mw-broker running there? (--broker or $MW_BROKER)";

// The broker to use when --broker is not given: $MW_BROKER if set and not
// empty, else tcp://127.0.0.1:5555.
std::string default_broker_address();

// What every program's --help says of --broker.
inline constexpr const char* kBrokerFlagHelp = "broker address (default $MW_BROKER, then tcp://127.0.0.1:5555)";

// How long a loop under steady traffic looks for its next message before
// it sleeps (mw/spin_poll.hpp; --spin-us), and the most it may be set to.
// Workers and clients spin briefly; the broker, which every hop of every
// flow passes through, longer: long enough to catch the answer to what it
// just sent (a round trip to a peer on loopback, 80-130 us), where a
// shorter spin gives up just before it and then pays for the wake-up too
// (docs/PERFORMANCE.md, eighth session).
inline constexpr std::uint32_t kDefaultSpinUs = 50;
inline constexpr std::uint32_t kDefaultBrokerSpinUs = 200;
inline constexpr std::uint32_t kMaxSpinUs = 10'000;
// Throws mw::UsageError naming `what` ("--spin-us", "spin_us") for a spin
// above kMaxSpinUs.
void check_spin_us(std::uint32_t spin_us, std::string_view what);
// What --help says of --spin-us.
inline constexpr const char* kSpinFlagHelp =
    "while messages come steadily (each within 200 us of the wait for it, or within the spin if longer), look for "
    "the next without sleeping for up to this many microseconds: more throughput and less latency under load, for "
    "CPU time (0: never)";

// Throws mw::Error (BadRequest) for a broker address no connection could
// reach: a TCP address without a port from 1 to 65535 (ZeroMQ takes
// "tcp://host:99999" and then never connects, so the caller would wait out
// its timeout and blame the broker). Other transports are left to ZeroMQ.
void check_broker_address(std::string_view address);

// Throws mw::Error (BadRequest) for a TCP address to bind whose port is
// neither a number from 0 to 65535 nor "*": ZeroMQ would bind
// "tcp://*:99999" to port 34463 (99999 modulo 65536) without a word.
// `what` names the socket in the message ("the broker socket (--bind)").
void check_bind_address(std::string_view address, std::string_view what);

// Makes an address a broker reported connectable from here: a PUB bound to
// "tcp://0.0.0.0:5556" or "tcp://*:5556" is reached on the host of
// `broker_address`. Other addresses are returned as they are.
std::string connectable_address(std::string_view reported, std::string_view broker_address);

// The host name of this machine, for READY and logs.
std::string host_name();

// A decimal number given to `flag` ("--timeout"): the whole of `text`,
// finite ("1.5", "30", "1e3"). Throws mw::UsageError naming the flag and
// the text otherwise. (The option parser's own reading of a double takes
// "5x" as 5.)
double parse_decimal(std::string_view text, std::string_view flag);

// The option parser's complaint (cxxopts' what()), said so that it names
// the flag at fault. "Argument 'abc' failed to parse" names only the value:
// this finds the flag that carried it on the command line and says
// "--timeout 'abc' is not a valid value". Other complaints come back as they
// are, with the parser's typographic quotes made plain.
std::string option_error_text(std::string_view parser_message, int argc, const char* const* argv);

}  // namespace mw
