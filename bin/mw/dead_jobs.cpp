// mw dead [TYPE] [--limit N] [--json]      — jobs the broker gave up on
// mw retry ID | --type TYPE [--limit N]     — submit them again
//
// Both read the broker's dead-job records (mw/dead_jobs.hpp) in the sync
// endpoint (--sync-endpoint, as given to the broker).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "columns.hpp"
#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "mw/dead_jobs.hpp"

namespace mw::cli {
namespace {

constexpr std::size_t kDefaultListLimit = 100;
// A table cell for the error is cut here: the full text is in --json.
constexpr std::size_t kMaxErrorColumn = 80;

void add_sync_endpoint_option(cxxopts::Options& options) {
  options.add_options()("sync-endpoint", "the entity endpoint holding the dead-job records (the broker's --sync-endpoint)",
                        cxxopts::value<std::string>()->default_value(std::string(kDefaultSyncEndpoint)));
}

// "2026-12-01T10:00:00.250Z"; "-" for a record without a time.
std::string utc_time_text(std::int64_t ms_since_epoch) {
  if (ms_since_epoch <= 0) return "-";
  using namespace std::chrono;
  const sys_time<milliseconds> at{milliseconds{ms_since_epoch}};
  const sys_days day = floor<days>(at);
  const year_month_day date{day};
  const hh_mm_ss<milliseconds> time{at - day};
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(time.hours().count()), static_cast<int>(time.minutes().count()),
                static_cast<int>(time.seconds().count()), static_cast<int>(time.subseconds().count()));
  return text;
}

// Newlines and tabs would break the table's rows.
std::string one_line(std::string text, std::size_t max_bytes) {
  std::replace_if(text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
  if (text.size() > max_bytes) text = text.substr(0, max_bytes - 3) + "...";
  return text;
}

nlohmann::ordered_json to_json(const DeadJob& dead) {
  nlohmann::ordered_json j = {{"id", dead.id},         {"type", dead.type},   {"flow", dead.flow_id},
                              {"job", dead.job_id},    {"attempts", dead.attempts}, {"died_at", dead.died_at_ms},
                              {"error", dead.error},   {"payload", dead.payload}};
  if (!dead.entity.empty()) j["entity"] = dead.entity;
  return j;
}

void print_table(const std::vector<DeadJob>& jobs) {
  std::size_t id_width = 2, type_width = 4;
  for (const auto& d : jobs) {
    id_width = std::max(id_width, d.id.size());
    type_width = std::max(type_width, display_width(d.type));
  }
  auto row = [&](const std::string& id, const std::string& type, const std::string& attempts, const std::string& died_at,
                 const std::string& error) {
    std::cout << std::left << std::setw(static_cast<int>(id_width)) << id << "  " << pad_right(type, type_width)
              << "  " << std::right << std::setw(8) << attempts << "  " << std::left << std::setw(24) << died_at
              << "  " << error << '\n';
  };
  row("ID", "TYPE", "ATTEMPTS", "DIED AT", "ERROR");
  for (const auto& d : jobs)
    row(d.id, d.type, std::to_string(d.attempts), utc_time_text(d.died_at_ms), one_line(d.error, kMaxErrorColumn));
  std::cout.flush();
}

std::size_t limit_from(const cxxopts::ParseResult& args, std::size_t if_absent) {
  if (!args.count("limit")) return if_absent;
  const auto limit = args["limit"].as<std::size_t>();
  if (limit == 0) throw UsageError("--limit must be at least 1");
  return limit;
}

}  // namespace

int dead(int argc, char** argv) {
  cxxopts::Options options("mw dead", "List the dead jobs not yet replayed, oldest first.");
  options.positional_help("[TYPE]");
  add_common_options(options);
  add_sync_endpoint_option(options);
  options.add_options()
      ("limit", "show at most N (default " + std::to_string(kDefaultListLimit) + ")", cxxopts::value<std::size_t>())
      ("json", "one JSON object per line, with the payload and the whole error")
      ("type", "only jobs of this type", cxxopts::value<std::string>());
  options.parse_positional({"type"});
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty())
    throw UsageError("unexpected argument '" + args.unmatched().front() + "' (usage: mw dead [TYPE] [--limit N] [--json])");
  const std::size_t limit = limit_from(args, kDefaultListLimit);
  const std::string type = args.count("type") ? args["type"].as<std::string>() : "";

  Client client({args["broker"].as<std::string>()});
  const auto jobs = find_dead_jobs(client, args["sync-endpoint"].as<std::string>(), type, limit);
  if (args.count("json")) {
    for (const auto& d : jobs)
      std::cout << json_text(to_json(d)) << '\n';
    std::cout.flush();
  } else if (jobs.empty()) {
    std::fputs(type.empty() ? "no dead jobs\n" : ("no dead jobs of type '" + type + "'\n").c_str(), stderr);
  } else {
    print_table(jobs);
  }
  return 0;
}

// The record `given` names: a record id as mw dead shows it, or a bare
// number, which is a job id ("dead-N") or else the flow id that `mw submit
// --wait` printed when the flow died. Throws NotFound saying where to look.
DeadJob dead_record(Client& client, const std::string& endpoint, const std::string& given) {
  const bool number = !given.empty() && given.find_first_not_of("0123456789") == std::string::npos;
  const std::string id = number ? "dead-" + given : given;
  try {
    return DeadJob::from_record(client.call(endpoint, "get", id));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::NotFound) throw;
  }
  if (number) {
    const nlohmann::ordered_json query = {{"kind", "dead"}, {"flow", std::stoull(given)}, {"$limit", 1}};
    const auto page = client.call(endpoint, "find", std::nullopt, nullptr, query);
    if (!page.at("data").empty()) return DeadJob::from_record(page.at("data").at(0));
  }
  throw Error("no dead job '" + given + "': give an ID that mw dead lists, or the flow id a died flow printed",
              ErrorCode::NotFound);
}

int retry(int argc, char** argv) {
  cxxopts::Options options("mw retry", "Submit dead jobs again (same type, payload and entity); prints ID -> flow N.");
  options.positional_help("ID | --type TYPE [--limit N]");
  add_common_options(options);
  add_sync_endpoint_option(options);
  options.add_options()
      ("type", "replay every dead job of this type, oldest first", cxxopts::value<std::string>())
      ("limit", "with --type: replay at most N (default: all)", cxxopts::value<std::size_t>())
      ("id", "the dead job's id, as mw dead shows it, or the flow id a died flow printed",
       cxxopts::value<std::string>());
  options.parse_positional({"id"});
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty())
    throw UsageError("unexpected argument '" + args.unmatched().front() + "' (usage: mw retry ID | --type TYPE)");
  if (args.count("id") == args.count("type"))
    throw UsageError("give one dead job ID or --type TYPE (see mw dead)");
  if (args.count("limit") && !args.count("type")) throw UsageError("--limit goes with --type");
  const std::string endpoint = args["sync-endpoint"].as<std::string>();

  Client client({args["broker"].as<std::string>()});
  if (args.count("id")) {
    const DeadJob dead = dead_record(client, endpoint, args["id"].as<std::string>());
    const std::uint64_t flow = retry_dead_job(client, endpoint, dead);
    std::cout << dead.id << " -> flow " << flow << std::endl;
    return 0;
  }

  const std::string type = args["type"].as<std::string>();
  const auto jobs = find_dead_jobs(client, endpoint, type, limit_from(args, std::numeric_limits<std::size_t>::max()));
  // Nothing to replay is not a failure (a nightly replay finds none most nights).
  if (jobs.empty()) std::fprintf(stderr, "no dead jobs of type '%s' to replay\n", type.c_str());
  // One failure (say another operator replayed the job a moment ago: each
  // record is read again before it is replayed) does not stop the rest;
  // the exit status tells that something failed.
  int failed = 0;
  for (const auto& d : jobs) {
    try {
      const std::uint64_t flow = retry_dead_job(client, endpoint, d.id);
      std::cout << d.id << " -> flow " << flow << std::endl;
    } catch (const Error& e) {
      std::fprintf(stderr, "mw retry: %s: %s\n", d.id.c_str(), e.what());
      ++failed;
    }
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace mw::cli
