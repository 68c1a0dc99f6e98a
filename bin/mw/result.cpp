// mw result FLOW [--wait] [--timeout SECONDS] [--json]  — how a flow ended
//
// Without --wait: asks $flows (get) where the flow is, and prints its result
// if it has ended and the broker still keeps its outcome. With --wait: sends
// WAIT and prints the result when the flow ends (docs/PROTOCOL.md §5.16).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "mw/payload.hpp"
#include "outcome.hpp"
#include "stalled_flow.hpp"

namespace mw::cli {
namespace {

constexpr std::string_view kCommand = "mw result";
// With --json, stdout gets a record too, so that a script reading one
// document per flow gets one for this flow as well.
int unknown_flow(const Error& e, std::uint64_t flow, bool json, bool pretty) {
  if (json) std::cout << json_text(nlohmann::ordered_json{{"id", flow}, {"state", "unknown"}}, pretty) << std::endl;
  std::fprintf(stderr, "mw result: %s\n", e.what());
  return kExitUnknownFlow;
}

// A $flows record as an Outcome, for a flow that has ended.
Outcome outcome_of(const nlohmann::ordered_json& record) {
  Outcome o;
  o.flow_id = record.at("id").get<std::uint64_t>();
  const auto state = record.at("state").get<std::string>();
  o.done = state == kOutcomeDone;
  o.cancelled = state == kOutcomeCancelled;
  o.last_type = record.at("type").get<std::string>();
  o.attempts = record.value("attempts", 0u);
  o.error = record.value("error", std::string());
  const char* field = o.done ? "result" : "payload";
  if (record.contains(field)) o.result = Payload::from_json(record[field]);
  return o;
}

// For --json after a WAIT: the fields of an ended $flows record that a
// RESULT carries (not its times, entity or key).
nlohmann::ordered_json record_of(const Outcome& o) {
  nlohmann::ordered_json r;
  r["id"] = o.flow_id;
  r["state"] = o.done ? kOutcomeDone : o.cancelled ? kOutcomeCancelled : kOutcomeDead;
  r["type"] = o.last_type;
  r["attempts"] = o.attempts;
  if (!o.error.empty()) r["error"] = o.error;
  Payload::put_json(r, o.done ? "result" : "payload", o.result.bytes());
  return r;
}

int exit_code_of(const Outcome& o) { return o.done ? 0 : 1; }

}  // namespace

int result(int argc, char** argv) {
  cxxopts::Options options("mw result",
                           "How flow FLOW ended: prints its result as JSON (exit 0), or says how it died or was "
                           "cancelled (exit 1), or that it has not ended yet (exit 3), or that the broker does not "
                           "know it (exit 4). The broker keeps the outcomes of the flows that ended last "
                           "(mw-broker --keep-results).");
  options.positional_help("FLOW");
  add_common_options(options);
  options.add_options()
      ("wait", "wait for an unfinished flow to end")
      ("timeout", "with --wait: give up after this many seconds, or once the broker has been silent for 10 s "
                  "(exit 3; the flow goes on)",
       cxxopts::value<std::string>()->default_value("30"))
      ("json", "print the flow's record ($flows get) as JSON instead, whatever its state "
               "({\"id\": FLOW, \"state\": \"unknown\"} for a flow the broker does not know)")
      ("pretty", "with --json: indent the JSON")
      ("flow", "flow id", cxxopts::value<std::string>());
  options.parse_positional({"flow"});
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.count("flow")) throw UsageError("missing FLOW: mw result FLOW [--wait]");
  if (!args.unmatched().empty()) throw UsageError("unexpected argument '" + args.unmatched().front() + "'");
  const std::uint64_t flow = parse_flow_id(args["flow"].as<std::string>());
  const double timeout_s = parse_decimal(args["timeout"].as<std::string>(), "--timeout");
  if (!(timeout_s > 0) || timeout_s > 1e7)
    throw UsageError("--timeout must be a positive number of seconds, at most 10000000 (about 116 days)");
  if (args["timeout"].count() && !args.count("wait"))
    throw UsageError("--timeout is how long --wait waits: give --wait too, or leave --timeout out");
  const bool json = args.count("json") > 0;
  const bool pretty = args.count("pretty") > 0;
  if (pretty && !json) throw UsageError("--pretty indents --json: give --json too");

  const auto stop = StopSignal::on_signals();
  ClientOptions client_options{.broker = args["broker"].as<std::string>()};
  client_options.stop = &stop;
  client_options.on_still_waiting = say_why_stalled(std::string(kCommand), client_options.broker, &stop);
  Client client(client_options);

  if (args.count("wait")) {
    const auto timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(timeout_s * 1000)));
    std::optional<Outcome> outcome;
    try {
      outcome = client.wait(flow, timeout);
    } catch (const Interrupted&) {
      throw;  // main says it and exits 128 + the signal
    } catch (const Error& e) {
      if (e.code() == ErrorCode::NotFound) return unknown_flow(e, flow, json, pretty);
      // The broker went silent while we waited: no outcome, as on a timeout.
      if (e.code() != ErrorCode::Unavailable) throw;
      std::fprintf(stderr, "mw result: %s\n", e.what());
      return 3;
    }
    if (!outcome) {
      // With --json, where the flow is now: its record, as without --wait.
      if (json) {
        try {
          std::cout << json_text(client.call(kFlowsEndpoint, "get", std::to_string(flow)), pretty) << std::endl;
        } catch (const Interrupted&) {
          throw;
        } catch (const Error&) {
          // It ended or went meanwhile: the line below is all there is to say.
        }
      }
      std::fprintf(stderr, "mw result: flow %llu has not ended within %g s; it goes on (mw flows shows it)\n",
                   static_cast<unsigned long long>(flow), timeout_s);
      return 3;
    }
    if (!json) return report_outcome(kCommand, *outcome);
    std::cout << json_text(record_of(*outcome), pretty) << std::endl;
    return exit_code_of(*outcome);
  }

  nlohmann::ordered_json record;
  try {
    record = client.call(kFlowsEndpoint, "get", std::to_string(flow));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::NotFound) return unknown_flow(e, flow, json, pretty);
    throw;
  }
  const auto state = record.at("state").get<std::string>();
  const bool ended = state == kOutcomeDone || state == kOutcomeDead || state == kOutcomeCancelled;
  if (json) {
    std::cout << json_text(record, pretty) << std::endl;
    return ended ? exit_code_of(outcome_of(record)) : 3;
  }
  if (!ended) {
    const std::string progress = record.contains("progress") ? ", progress " + json_text(record["progress"]) : "";
    std::fprintf(stderr, "mw result: flow %llu has not ended: it is %s at %s%s (mw result %llu --wait waits for it)\n",
                 static_cast<unsigned long long>(flow), state.c_str(), record.at("type").get<std::string>().c_str(),
                 progress.c_str(), static_cast<unsigned long long>(flow));
    return 3;
  }
  return report_outcome(kCommand, outcome_of(record));
}

}  // namespace mw::cli
