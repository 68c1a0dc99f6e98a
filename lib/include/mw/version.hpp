// mw/version.hpp — the release of this library and its programs.
#pragma once

#include <string_view>

namespace mw {

inline constexpr std::string_view kVersion = "0.1.0";

}  // namespace mw
