// submit_header.hpp — SUBMIT's header for unit tests, fields set by name
// so that wire::Submit may grow.
#pragma once

#include <cstdint>
#include <string_view>

#include "mw/wire.hpp"

inline mw::wire::Submit submit_header(std::uint64_t request_id, std::string_view type, bool wait = false,
                                      std::uint32_t max_attempts = 0, std::string_view entity = {}) {
  mw::wire::Submit m;
  m.request_id = request_id;
  m.type = type;
  m.wait = wait;
  m.max_attempts = max_attempts;
  m.entity = entity;
  return m;
}
