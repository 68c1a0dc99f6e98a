// mw/options.hpp — the addresses every mw program agrees on.
#pragma once

#include <string>
#include <string_view>

namespace mw {

// The broker to use when --broker is not given: $MW_BROKER if set and not
// empty, else tcp://127.0.0.1:5555.
std::string default_broker_address();

// Makes an address a broker reported connectable from here: a PUB bound to
// "tcp://0.0.0.0:5556" or "tcp://*:5556" is reached on the host of
// `broker_address`. Other addresses are returned as they are.
std::string connectable_address(std::string_view reported, std::string_view broker_address);

// The host name of this machine, for READY and logs.
std::string host_name();

}  // namespace mw
