#include "outcome.hpp"

#include <cstdio>
#include <iostream>
#include <string>

#include "mw/log.hpp"

namespace mw::cli {

int report_outcome(std::string_view command, const Outcome& outcome) {
  const std::string who(command);
  const auto flow = static_cast<unsigned long long>(outcome.flow_id);
  if (outcome.cancelled) {
    std::fprintf(stderr, "%s: flow %llu was cancelled at %s (mw cancel)\n", who.c_str(), flow,
                 outcome.last_type.c_str());
    return 1;
  }
  if (!outcome.done) {
    std::fprintf(stderr, "%s: flow %llu died at %s after %u attempt(s): %s\n", who.c_str(), flow,
                 outcome.last_type.c_str(), outcome.attempts, one_line(outcome.error).c_str());
    return 1;
  }
  std::cout << outcome.result.to_json_text() << std::endl;
  return 0;
}

}  // namespace mw::cli
