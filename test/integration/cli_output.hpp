// cli_output.hpp — reading what a CLI run printed, and what every failed
// CLI call must look like. Needs only process.hpp, so the CLI test
// executables with and without the Cluster helper share it.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "process.hpp"

namespace mwtest {

// The non-empty lines of `text`.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// One JSON document per non-empty line (the --json output of list commands).
inline std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  for (const auto& line : lines_of(text)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A failed CLI call: non-zero exit of its own, nothing on stdout, one line on stderr.
inline void check_cli_error(const Finished& r, std::string_view needle) {
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  CHECK(r.exit_status != 0);
  CHECK(r.exit_status != -1);  // it ended by itself
  CHECK(r.out.empty());
  CHECK(lines_of(r.err).size() == 1);
  CHECK(r.err.find(needle) != std::string::npos);
}

}  // namespace mwtest
