// mw submit TYPE [JSON | -] [--wait] [--timeout SECONDS]
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "mw/client.hpp"

namespace mw::cli {

int submit(int argc, char** argv) {
  cxxopts::Options options("mw submit", "Submit a job. Prints its flow id, or with --wait the final result as JSON.");
  options.positional_help("TYPE [JSON | -]");
  add_common_options(options);
  options.add_options()
      ("wait", "wait for the flow's end and print its result")
      ("timeout", "with --wait: give up after this many seconds (exit 3; the flow goes on)",
       cxxopts::value<double>()->default_value("30"))
      ("max-attempts", "deliveries per stage before the job is dead (default: the broker's)",
       cxxopts::value<std::uint32_t>()->default_value("0"))
      ("entity", "the entity the job works on: ENDPOINT/ID, or ID / auto to take the endpoint (and id) from the "
                 "payload's nested object ({\"order\": {\"id\": …}})", cxxopts::value<std::string>())
      ("type", "job type", cxxopts::value<std::string>())
      ("payload", "payload as JSON, or - to read it from stdin (default null)", cxxopts::value<std::string>());
  options.parse_positional({"type", "payload"});
  // cxxopts takes a negative number ("-0.5") for a cluster of short options.
  // No option name starts with a digit, so such a word is a payload: a
  // leading space keeps it positional and is the same JSON.
  std::vector<std::string> words(argv, argv + argc);
  std::vector<char*> word_ptrs;
  for (auto& w : words) {
    if (w.size() > 1 && w[0] == '-' && (std::isdigit(static_cast<unsigned char>(w[1])) || w[1] == '.')) w.insert(0, " ");
    word_ptrs.push_back(w.data());
  }
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, word_ptrs.data(), args)) return 0;
  if (!args.count("type")) throw Error("missing TYPE: mw submit TYPE [JSON | -]", ErrorCode::BadRequest);
  if (!args.unmatched().empty()) throw Error("unexpected argument '" + args.unmatched().front() + "'");

  std::string text = args.count("payload") ? args["payload"].as<std::string>() : "null";
  if (text == "-") text = read_stdin();
  const Payload payload = Payload::parse_json(text);
  const double timeout_s = args["timeout"].as<double>();
  if (!(timeout_s > 0) || timeout_s > 1e7) throw Error("--timeout must be a positive number of seconds");

  Client client({args["broker"].as<std::string>()});
  SubmitOptions submit_options;
  submit_options.max_attempts = args["max-attempts"].as<std::uint32_t>();
  if (args.count("entity")) submit_options.entity = args["entity"].as<std::string>();
  const std::string type = args["type"].as<std::string>();

  if (!args.count("wait")) {
    std::cout << client.submit(type, payload, submit_options) << std::endl;
    return 0;
  }
  const auto timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(timeout_s * 1000)));
  auto outcome = client.submit_and_wait(type, payload, timeout, submit_options);
  if (!outcome) {
    std::fprintf(stderr, "mw submit: no result within %g s (the flow is still running)\n", timeout_s);
    return 3;
  }
  if (!outcome->done) {
    std::fprintf(stderr, "mw submit: flow %llu died at %s after %u attempt(s): %s\n",
                 static_cast<unsigned long long>(outcome->flow_id), outcome->last_type.c_str(), outcome->attempts,
                 outcome->error.c_str());
    return 1;
  }
  std::cout << outcome->result.to_json_text() << std::endl;
  return 0;
}

}  // namespace mw::cli
