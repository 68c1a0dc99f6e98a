// mw flows [TYPE] [--state S] [--limit N] [--json]   — the unfinished flows
// mw cancel FLOW [FLOW ...]                          — cancel unfinished flows
//
// Both use the broker's reserved endpoint $flows (docs/PROTOCOL.md §11.5).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "columns.hpp"
#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "mw/log.hpp"

namespace mw::cli {
namespace {

constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kProgressColumn = 48;

std::int64_t wall_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// "3.2s", "5m10s", "2h3m".
std::string duration_text(std::int64_t ms) {
  ms = std::max<std::int64_t>(0, ms);
  char text[32];
  if (ms < 60'000)
    std::snprintf(text, sizeof text, "%.1fs", static_cast<double>(ms) / 1000);
  else if (ms < 3'600'000)
    std::snprintf(text, sizeof text, "%lldm%llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  else
    std::snprintf(text, sizeof text, "%lldh%lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  return text;
}

// Where a flow is: its worker ("host:pid"), when it is due, or "-".
std::string where_text(const nlohmann::ordered_json& f) {
  if (f.contains("worker"))
    return f["worker"].at("host").get<std::string>() + ":" + std::to_string(f["worker"].at("pid").get<long long>());
  if (f.contains("due_at")) return "due in " + duration_text(f["due_at"].get<std::int64_t>() - wall_now_ms());
  return "-";
}

void print_table(const nlohmann::ordered_json& flows) {
  std::size_t type_width = 4, where_width = 12;
  bool any_progress = false;
  // Each row's WORKER / DUE once: a "due in" read twice could differ by a
  // second between the width and the row.
  std::vector<std::string> wheres;
  wheres.reserve(flows.size());
  for (const auto& f : flows) {
    type_width = std::max(type_width, display_width(f.at("type").get<std::string>()));
    where_width = std::max(where_width, display_width(wheres.emplace_back(where_text(f))));
    any_progress |= f.contains("progress");
  }
  auto row = [&](const std::string& flow, const std::string& state, const std::string& type,
                 const std::string& attempts, const std::string& priority, const std::string& age,
                 const std::string& where, const std::string& progress) {
    std::cout << std::left << std::setw(20) << flow << "  " << std::setw(9) << state << "  "
              << pad_right(type, type_width) << "  " << std::right << std::setw(8) << attempts
              << "  " << std::setw(8) << priority << "  " << std::setw(8) << age << "  " << std::left;
    // The progress column only when some flow reported one.
    if (any_progress) {
      std::cout << pad_right(where, where_width) << "  " << progress << '\n';
    } else {
      std::cout << where << '\n';
    }
  };
  row("FLOW", "STATE", "TYPE", "ATTEMPTS", "PRIORITY", "AGE", "WORKER / DUE", "PROGRESS");
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const auto& f = flows[i];
    // One line of at most kProgressColumn bytes: a progress is a short value.
    const std::string progress = f.contains("progress") ? shortened(json_text(f["progress"]), kProgressColumn) : "-";
    row(std::to_string(f.at("id").get<std::uint64_t>()), f.at("state").get<std::string>(),
        f.at("type").get<std::string>(), std::to_string(f.at("attempts").get<long long>()),
        std::to_string(f.at("priority").get<long long>()),
        duration_text(wall_now_ms() - f.at("submitted_at").get<std::int64_t>()), wheres[i], progress);
  }
  std::cout.flush();
}

}  // namespace

int flows(int argc, char** argv) {
  cxxopts::Options options("mw flows",
                           "List the unfinished flows: in flight, then queued (in the order they will run), then "
                           "delayed.");
  options.positional_help("[TYPE]");
  add_common_options(options);
  options.add_options()
      ("state", "only flows in this state: queued, delayed or in_flight", cxxopts::value<std::string>())
      ("limit", "show at most N (default " + std::to_string(kDefaultLimit) + ", at most 1000)",
       cxxopts::value<std::size_t>())
      ("json", "one JSON object per line")
      ("type", "only flows whose current stage is of this type", cxxopts::value<std::string>());
  options.parse_positional({"type"});
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty())
    throw UsageError("unexpected argument '" + args.unmatched().front() +
                     "' (usage: mw flows [TYPE] [--state S] [--limit N] [--json])");
  nlohmann::ordered_json query = nlohmann::ordered_json::object();
  if (args.count("type")) query["type"] = args["type"].as<std::string>();
  if (args.count("state")) {
    const std::string state = args["state"].as<std::string>();
    if (state != "queued" && state != "delayed" && state != "in_flight")
      throw UsageError("--state must be queued, delayed or in_flight, not '" + state + "'");
    query["state"] = state;
  }
  std::size_t limit = kDefaultLimit;
  if (args.count("limit")) {
    limit = args["limit"].as<std::size_t>();
    if (limit == 0 || limit > 1000) throw UsageError("--limit must be 1 to 1000");
  }
  query["$limit"] = limit;

  Client client({args["broker"].as<std::string>()});
  const auto page = client.call(kFlowsEndpoint, "find", std::nullopt, nullptr, query);
  const auto& found = page.at("data");
  if (args.count("json")) {
    for (const auto& f : found) std::cout << json_text(f) << '\n';
    std::cout.flush();
  } else if (found.empty()) {
    std::string none = "no unfinished flows";
    if (args.count("type")) none += " of type " + args["type"].as<std::string>();
    if (args.count("state")) none += " in state " + args["state"].as<std::string>();
    std::fprintf(stderr, "%s\n", none.c_str());
  } else {
    print_table(found);
  }
  if (page.value("more", false))
    std::fprintf(stderr, "mw flows: more than %zu; narrow by TYPE or --state, or raise --limit\n", limit);
  return 0;
}

int cancel(int argc, char** argv) {
  cxxopts::Options options("mw cancel",
                           "Cancel unfinished flows: a waiting job leaves its queue; a job in flight is stopped by its "
                           "worker (mw workers and mw-exec stop it; a worker that cannot runs it on, and its answer is "
                           "dropped). A submitter that waits hears 'cancelled'. Exit 0 when every FLOW was "
                           "cancelled, 1 when one had ended already, 4 when the broker does not know one.");
  options.positional_help("FLOW [FLOW ...]");
  add_common_options(options);
  options.add_options()("flows", "flow ids, as mw submit or mw flows print them",
                        cxxopts::value<std::vector<std::string>>());
  options.parse_positional({"flows"});
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty()) throw UsageError("unexpected argument '" + args.unmatched().front() + "'");
  if (!args.count("flows")) throw UsageError("missing FLOW: mw cancel FLOW [FLOW ...] (see mw flows)");

  const auto flows = args["flows"].as<std::vector<std::string>>();
  for (const auto& flow : flows) parse_flow_id(flow);  // a word that is no flow id: nothing is cancelled (exit 2)
  Client client({args["broker"].as<std::string>()});
  int status = 0;
  for (const auto& flow : flows) {
    try {
      const auto record = client.call(kFlowsEndpoint, "remove", flow);
      std::cout << "flow " << flow << " cancelled (was " << record.value("was", std::string("?")) << ", "
                << record.value("type", std::string("?")) << ")";
      if (record.contains("stop_sent"))
        std::cout << (record["stop_sent"] == true ? "; its worker was told to stop the job"
                                                  : "; its worker cannot be told to stop: the job runs on, and its "
                                                    "answer will be dropped");
      if (const auto told = record.value("expired_runs_told", std::uint64_t{0}))
        std::cout << "; " << told << " run(s) past their lease told to stop";
      std::cout << std::endl;
    } catch (const Error& e) {
      // The others are still worth cancelling; the exit status says one
      // failed, with mw result's code for a flow the broker does not know.
      if (e.code() != ErrorCode::NotFound && e.code() != ErrorCode::Conflict) throw;
      std::fprintf(stderr, "mw cancel: %s\n", e.what());
      status = std::max(status, e.code() == ErrorCode::NotFound ? kExitUnknownFlow : 1);
    }
  }
  return status;
}

}  // namespace mw::cli
