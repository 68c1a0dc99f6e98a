// mw status [--json]
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "columns.hpp"
#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "stalled_flow.hpp"
#include "type_hint.hpp"

namespace mw::cli {
namespace {

nlohmann::json to_json(const wire::Stats& s) {
  nlohmann::json j = {
      {"broker_version", s.broker_version}, {"uptime_ms", s.uptime_ms}, {"store", s.store},
      {"submitted", s.submitted}, {"done", s.done}, {"failed", s.failed}, {"dead", s.dead},
      {"retried", s.retried}, {"requeued", s.requeued}, {"stale", s.stale}, {"lease_expired", s.lease_expired},
      {"recovered", s.recovered}, {"delayed", s.delayed}, {"rss_bytes", s.rss_bytes},
      {"waiting", s.waiting}, {"waiting_bytes", s.waiting_bytes}, {"max_waiting", s.max_waiting},
      {"max_waiting_bytes", s.max_waiting_bytes}, {"refused", s.refused}, {"cancelled", s.cancelled},
      {"submitted_per_second", s.submitted_per_second},
      {"done_per_second", s.done_per_second}, {"types", nlohmann::json::array()}, {"workers", nlohmann::json::array()}};
  for (const auto& t : s.types) {
    j["types"].push_back({{"type", t.type}, {"workers", t.workers}, {"queued", t.queued},
                          {"oldest_queued_ms", t.oldest_queued_ms}, {"in_flight", t.in_flight}, {"done", t.done},
                          {"failed", t.failed}, {"dead", t.dead}, {"done_per_second", t.done_per_second},
                          {"delayed", t.delayed}, {"rate_max", t.rate_max}, {"rate_period_ms", t.rate_period_ms},
                          {"rate_held", t.rate_held}, {"max_waiting", t.max_waiting}, {"refused", t.refused}});
  }
  for (const auto& w : s.workers) {
    j["workers"].push_back({{"id", w.id}, {"types", w.types}, {"next", w.next}, {"host", w.host}, {"pid", w.pid},
                            {"credit", w.credit}, {"in_flight", w.in_flight}, {"done", w.done},
                            {"expired", w.expired}});
  }
  return j;
}

// A --type-rate period: "1s", "1.5s", "250ms".
std::string period_text(std::uint64_t ms) {
  std::ostringstream out;
  if (ms < 1000) {
    out << ms << "ms";
  } else {
    out << static_cast<double>(ms) / 1000.0 << "s";
  }
  return out.str();
}

std::string age(std::uint64_t ms) {
  if (ms == 0) return "-";
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(ms) / 1000.0 << "s";
  return out.str();
}

constexpr double kMiB = 1024.0 * 1024.0;

// "10000000", "4096.0", or "none" for 0; `unit` divides.
std::string limit_text(std::uint64_t limit, double unit) {
  if (limit == 0) return "none";
  std::ostringstream out;
  if (unit == 1) out << limit;
  else out << std::fixed << std::setprecision(1) << static_cast<double>(limit) / unit;
  return out.str();
}

// A type nobody serves and nothing of which waits or runs (a finished
// mw bench's, a retired pipeline's): its counts are history.
bool idle(const wire::TypeStats& t) {
  return t.workers == 0 && t.queued == 0 && t.in_flight == 0 && t.delayed == 0 && t.done_per_second == 0;
}

void print_table(const wire::Stats& s, bool all_types) {
  std::printf("broker %s  up %s  store %s\n", s.broker_version.c_str(), age(s.uptime_ms).c_str(), s.store.c_str());
  std::printf("flows: %llu submitted, %llu done, %llu dead, %llu cancelled; %llu failures, %llu retries, "
              "%llu requeued; %.1f submitted/s, %.1f done/s\n",
              static_cast<unsigned long long>(s.submitted), static_cast<unsigned long long>(s.done),
              static_cast<unsigned long long>(s.dead), static_cast<unsigned long long>(s.cancelled),
              static_cast<unsigned long long>(s.failed),
              static_cast<unsigned long long>(s.retried), static_cast<unsigned long long>(s.requeued),
              s.submitted_per_second, s.done_per_second);
  std::printf("jobs: %llu delayed, %llu recovered at start, %llu leases expired, %llu stale answers; "
              "broker resident %.1f MB\n",
              static_cast<unsigned long long>(s.delayed), static_cast<unsigned long long>(s.recovered),
              static_cast<unsigned long long>(s.lease_expired), static_cast<unsigned long long>(s.stale),
              static_cast<double>(s.rss_bytes) / 1e6);
  std::printf("waiting: %llu jobs (limit %s), %.1f MiB of payload (limit %s); %llu submits refused (full)\n",
              static_cast<unsigned long long>(s.waiting), limit_text(s.max_waiting, 1).c_str(),
              static_cast<double>(s.waiting_bytes) / kMiB, limit_text(s.max_waiting_bytes, kMiB).c_str(),
              static_cast<unsigned long long>(s.refused));
  std::printf("\n%-24s %7s %8s %8s %9s %10s %8s %6s %9s\n", "TYPE", "WORKERS", "QUEUED", "OLDEST", "IN-FLIGHT",
              "DONE", "FAILED", "DEAD", "DONE/S");
  std::size_t hidden = 0;
  for (const auto& t : s.types) {
    if (!all_types && idle(t)) {
      ++hidden;
      continue;
    }
    std::printf("%s %7u %8llu %8s %9llu %10llu %8llu %6llu %9.1f\n", pad_right(t.type, 24).c_str(), t.workers,
                static_cast<unsigned long long>(t.queued), age(t.oldest_queued_ms).c_str(),
                static_cast<unsigned long long>(t.in_flight), static_cast<unsigned long long>(t.done),
                static_cast<unsigned long long>(t.failed), static_cast<unsigned long long>(t.dead), t.done_per_second);
  }
  if (hidden) std::printf("(%zu idle type(s) without workers not shown: mw status --all)\n", hidden);
  // Jobs that cannot move: no worker was started for the type, or a
  // stage's --next (or nextWorkerType) names a type nobody runs.
  const auto served = served_types(s);
  for (const auto& t : s.types)
    if (t.workers == 0 && t.queued > 0) {
      const bool ran = ran_before(t);
      const auto nearest = ran ? std::nullopt : nearest_type(t.type, served);
      std::printf("! %s: %llu job(s) queued and no worker serves it%s (start one with %s%s)\n", t.type.c_str(),
                  static_cast<unsigned long long>(t.queued), ran ? " any more" : "",
                  type_option(t.type).c_str(), nearest ? ("; or did you mean '" + *nearest + "'?").c_str() : "");
    }
  std::string limits;
  for (const auto& t : s.types)
    if (t.rate_max)
      limits += (limits.empty() ? "" : ", ") + t.type + " " + std::to_string(t.rate_max) + " per " +
                period_text(t.rate_period_ms) +
                (t.rate_held ? " (" + std::to_string(t.rate_held) + " queued wait for their turn)" : "");
  if (!limits.empty()) std::printf("rate limits (--type-rate): %s\n", limits.c_str());
  std::string waiting_limits;
  for (const auto& t : s.types)
    if (t.max_waiting)
      waiting_limits += (waiting_limits.empty() ? "" : ", ") + t.type + " " + std::to_string(t.queued + t.delayed) +
                        " of " + std::to_string(t.max_waiting) +
                        (t.refused ? " (" + std::to_string(t.refused) + " submits refused)" : "");
  if (!waiting_limits.empty())
    std::printf("waiting per type (--max-waiting-per-type, --type-max-waiting): %s\n", waiting_limits.c_str());
  std::printf("\n%-12s %-24s %-16s %-20s %8s %11s %10s\n", "WORKER", "TYPES", "NEXT", "HOST", "PID", "IN-FLIGHT",
              "DONE");
  std::uint64_t expired = 0;
  for (const auto& w : s.workers) {
    // A slot still taken by a run whose lease expired is shown as such:
    // "0+2/2" is a worker with no job of the broker's and no room either.
    const std::string held = w.expired ? std::to_string(w.in_flight) + "+" + std::to_string(w.expired)
                                       : std::to_string(w.in_flight);
    std::printf("%-12s %s %s %s %8u %5s/%-5u %10llu\n", w.id.c_str(), pad_right(joined_types(w.types), 24).c_str(),
                pad_right(w.next.empty() ? "-" : w.next, 16).c_str(), pad_right(w.host, 20).c_str(), w.pid, held.c_str(),
                w.credit, static_cast<unsigned long long>(w.done));
    expired += w.expired;
  }
  if (expired)
    std::printf("(+N: slots still taken by N run(s) whose lease expired; their jobs went back to the queue, and each "
                "slot is free again once its run answers)\n");
}

}  // namespace

int status(int argc, char** argv) {
  cxxopts::Options options("mw status", "Show the broker's workers, queues and counters.");
  add_common_options(options);
  options.add_options()
      ("json", "print one JSON object instead of tables (every type)")
      ("pretty", "with --json: indent the JSON")
      ("all", "also show idle types: no workers, nothing waiting or running");
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty()) throw UsageError("unexpected argument '" + args.unmatched().front() + "'");
  if (args.count("pretty") && !args.count("json"))
    throw UsageError("--pretty indents --json: give --json too");
  Client client({args["broker"].as<std::string>()});
  const auto stats = client.status();
  if (args.count("json")) {
    std::cout << json_text(to_json(stats), args.count("pretty") > 0) << std::endl;
  } else {
    print_table(stats, args.count("all") > 0);
  }
  return 0;
}

}  // namespace mw::cli
