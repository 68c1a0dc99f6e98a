// mw submit TYPE [JSON | -] [--wait] [--timeout SECONDS] [--delay SECONDS | --at TIME]
//           [--priority N] [--key KEY] [--lease SECONDS] [--max-attempts N] [--entity E]
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "mw/client.hpp"
#include "outcome.hpp"
#include "stalled_flow.hpp"
#include "time_arg.hpp"

namespace mw::cli {
namespace {

// The options below that take a value: a negative number after one of them
// is that value ("--priority -5"), not a payload.
constexpr std::array<std::string_view, 9> kValueOptions = {
    "--broker", "--timeout", "--max-attempts", "--entity", "--delay", "--at", "--priority", "--key", "--lease"};

bool takes_value(std::string_view word) {
  return std::find(kValueOptions.begin(), kValueOptions.end(), word) != kValueOptions.end();
}

// The SubmitOptions the flags ask for; throws mw::Error naming the flag for
// a bad value, before anything is sent.
SubmitOptions submit_options_from(const cxxopts::ParseResult& args) {
  SubmitOptions o;
  o.max_attempts = args["max-attempts"].as<std::uint32_t>();
  if (args["max-attempts"].count() && o.max_attempts == 0)
    throw UsageError("--max-attempts must be at least 1 (leave it out for the broker's default)");
  if (args.count("entity")) {
    o.entity = args["entity"].as<std::string>();
    // Most often an unset shell variable ("$ORDER"): say so, not submit without one.
    if (o.entity.empty()) throw UsageError("--entity is empty: give ENDPOINT/ID, ID or auto (or leave it out)");
  }
  if (args.count("delay") && args.count("at"))
    throw UsageError("--delay and --at both say when to run: give one of them");
  if (args.count("delay")) o.delay = parse_seconds("--delay", args["delay"].as<std::string>());
  if (args.count("at")) {
    const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
    o.delay = delay_until(parse_time(args["at"].as<std::string>()), now);
  }
  const int priority = args["priority"].as<int>();
  if (priority < -kMaxPriority || priority > kMaxPriority)
    throw UsageError("--priority: " + std::to_string(priority) + " is out of range: give -1000 to 1000 (higher runs first)");
  o.priority = priority;
  if (args.count("key")) {
    o.key = args["key"].as<std::string>();
    if (o.key.empty() || o.key.size() > kMaxKeyBytes)
      throw UsageError("--key must be 1 to " + std::to_string(kMaxKeyBytes) + " bytes");
  }
  if (args.count("lease")) {
    o.lease = parse_seconds("--lease", args["lease"].as<std::string>(),
                            {std::chrono::milliseconds(1), "more than 0, up", "leave it out for the default"});
  }
  return o;
}

}  // namespace

int submit(int argc, char** argv) {
  cxxopts::Options options("mw submit", "Submit a job. Prints its flow id, or with --wait the final result as JSON.");
  options.positional_help("TYPE [JSON | -]");
  add_common_options(options);
  options.add_options()
      ("wait", "wait for the flow's end and print its result")
      ("timeout", "with --wait: give up after this many seconds past the job's due time, or once the broker has "
                  "been silent for 10 s (exit 3; the flow goes on)",
       cxxopts::value<std::string>()->default_value("30"))
      ("max-attempts", "deliveries per stage before the job is dead (default: the broker's)",
       cxxopts::value<std::uint32_t>()->default_value("0"))
      ("entity", "the entity the job works on: ENDPOINT/ID, or ID / auto to take the endpoint (and id) from the "
                 "payload's nested object ({\"order\": {\"id\": …}})", cxxopts::value<std::string>())
      ("delay", "run no earlier than SECONDS from now (decimals allowed)", cxxopts::value<std::string>())
      ("at", "run no earlier than TIME: 2026-12-01T10:00:00Z, an offset like +02:00 instead of Z, or @UNIXSECONDS; "
             "a past time means now", cxxopts::value<std::string>())
      ("priority", "-1000..1000; higher runs first among waiting jobs of its type",
       cxxopts::value<int>()->default_value("0"))
      ("key", "idempotency key: while a flow with this key is unfinished, submitting again returns its id",
       cxxopts::value<std::string>())
      ("lease", "SECONDS one worker may hold a stage before it is given to another (default: the broker's)",
       cxxopts::value<std::string>())
      ("type", "job type", cxxopts::value<std::string>())
      ("payload", "payload as JSON, or - to read it from stdin (default null)", cxxopts::value<std::string>());
  options.parse_positional({"type", "payload"});
  // cxxopts takes a negative number ("-0.5") for a cluster of short options.
  // No option name starts with a digit, so such a word is a payload (a
  // leading space keeps it positional and is the same JSON), unless it is
  // the value of the option before it ("--priority -5").
  std::vector<std::string> words(argv, argv + argc);
  std::vector<char*> word_ptrs;
  for (std::size_t i = 0; i < words.size(); ++i) {
    auto& w = words[i];
    const bool is_number = w.size() > 1 && w[0] == '-' && (std::isdigit(static_cast<unsigned char>(w[1])) || w[1] == '.');
    if (is_number && !(i > 0 && takes_value(words[i - 1]))) w.insert(0, " ");
  }
  for (auto& w : words) word_ptrs.push_back(w.data());
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, word_ptrs.data(), args)) return 0;
  if (!args.count("type")) throw UsageError("missing TYPE: mw submit TYPE [JSON | -]");
  if (!args.unmatched().empty()) throw UsageError("unexpected argument '" + args.unmatched().front() + "'");

  std::string text = args.count("payload") ? args["payload"].as<std::string>() : "null";
  if (text == "-") text = read_stdin();
  const Payload payload = Payload::parse_json(text);
  const double timeout_s = parse_decimal(args["timeout"].as<std::string>(), "--timeout");
  if (!(timeout_s > 0) || timeout_s > 1e7)
    throw UsageError("--timeout must be a positive number of seconds, at most 10000000 (about 116 days)");
  if (args["timeout"].count() && !args.count("wait"))
    throw UsageError("--timeout is how long --wait waits: give --wait too, or leave --timeout out");

  const SubmitOptions submit_options = submit_options_from(args);

  // Ctrl-C while waiting says which flow goes on (before any thread starts).
  const auto stop = StopSignal::on_signals();
  ClientOptions client_options{.broker = args["broker"].as<std::string>()};
  client_options.stop = &stop;
  // A type nobody serves would otherwise only show as a timeout.
  client_options.on_still_waiting = say_why_stalled("mw submit", client_options.broker, &stop);
  Client client(client_options);
  const std::string type = args["type"].as<std::string>();

  if (!args.count("wait")) {
    std::cout << client.submit(type, payload, submit_options) << std::endl;
    return 0;
  }
  // The timeout is for the work: a delayed job is not late while it waits for its time.
  const auto timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(timeout_s * 1000))) + submit_options.delay;
  std::optional<Outcome> outcome;
  try {
    outcome = client.submit_and_wait(type, payload, timeout, submit_options);
  } catch (const Interrupted&) {
    throw;  // main says it and exits 128 + the signal
  } catch (const Error& e) {
    // Accepted, then the broker went silent: no outcome, as on a timeout;
    // the flow goes on if the broker comes back.
    if (e.code() != ErrorCode::Unavailable || client.last_flow_id() == 0) throw;
    std::fprintf(stderr, "mw submit: %s\n", e.what());
    return 3;
  }
  if (!outcome) {
    const auto flow = static_cast<unsigned long long>(client.last_flow_id());
    std::fprintf(stderr,
                 "mw submit: no result within %g s; flow %llu goes on (mw result %llu --wait waits again, "
                 "mw cancel %llu ends it)\n",
                 timeout_s, flow, flow, flow);
    return 3;
  }
  return report_outcome("mw submit", *outcome);
}

}  // namespace mw::cli
