// mw-broker: routes typed jobs through pipelines of workers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>
#include <iostream>

#include <cxxopts.hpp>

#include "mw/broker/entity_service.hpp"
#include "mw/broker/server.hpp"
#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/options.hpp"
#include "mw/stop_signal.hpp"
#include "mw/version.hpp"

namespace {

// "TYPE=VALUE" pairs of the per-type options.
std::vector<std::pair<std::string, std::string>> type_settings(const std::vector<std::string>& items,
                                                               const char* option) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw mw::UsageError(std::string(option) + " takes TYPE=VALUE, got '" + item + "'");
    std::string type = item.substr(0, eq);
    if (auto problem = mw::type_name_problem(type); !problem.empty())
      throw mw::UsageError(std::string(option) + ": " + problem);
    if (std::any_of(out.begin(), out.end(), [&](const auto& seen) { return seen.first == type; }))
      throw mw::UsageError(std::string(option) + " gives type '" + type + "' twice: give each type once");
    out.emplace_back(std::move(type), item.substr(eq + 1));
  }
  return out;
}

double parse_number(const std::string& text, const char* option) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(v)) throw mw::UsageError(std::string(option) + ": '" + text + "' is not a number");
  return v;
}

// --type-rate's value: "N" (jobs per second) or "N/SECONDS".
mw::broker::TypeRate type_rate(const std::string& text) {
  const auto slash = text.find('/');
  const double max = parse_number(text.substr(0, slash), "--type-rate");
  const double seconds = slash == std::string::npos ? 1.0 : parse_number(text.substr(slash + 1), "--type-rate");
  if (!(max >= 1 && max <= mw::broker::TypeRate::kMaxPerPeriod && max == std::floor(max)))
    throw mw::UsageError("--type-rate: the number of jobs must be a whole number from 1 to " +
                         std::to_string(mw::broker::TypeRate::kMaxPerPeriod) + ", got '" + text + "'");
  if (!(seconds >= 0.001 && seconds <= 86'400))
    throw mw::UsageError("--type-rate: the period must be from 0.001 to 86400 seconds, got '" + text + "'");
  return {static_cast<std::uint32_t>(max), static_cast<std::uint64_t>(std::llround(seconds * 1000))};
}

std::uint64_t lease_ms(double seconds, const char* option) {
  if (!(seconds >= 0.01 && seconds <= 315'360'000))
    throw mw::UsageError(std::string(option) + " must be between 0.01 and 315360000 seconds");
  return static_cast<std::uint64_t>(seconds * 1000);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    // Before ZeroMQ starts its threads, so that they inherit the blocked mask.
    auto stop = mw::StopSignal::on_signals();

    cxxopts::Options options("mw-broker", "Routes typed jobs through pipelines of workers (MW/1 over ZeroMQ).");
    mw::broker::ServerOptions server;
    auto& config = server.config;
    options.add_options()
        ("bind", "ROUTER address every worker and client connects to",
         cxxopts::value<std::string>()->default_value(std::string(mw::kDefaultBrokerAddress)))
        ("pub", "PUB address where events are published",
         cxxopts::value<std::string>()->default_value(std::string(mw::kDefaultPubAddress)))
        ("store", "the SQLite file of jobs, entities and events, or :memory: to keep nothing across restarts",
         cxxopts::value<std::string>()->default_value("mw.db"))
        ("sync", "normal: a write survives a broker crash; full: also a power loss (an fsync per commit)",
         cxxopts::value<std::string>()->default_value("normal"))
        ("endpoints", "serve only these entity endpoints (comma-separated); default: any, created on first use",
         cxxopts::value<std::vector<std::string>>())
        ("index", "index a field queried by find, as endpoint.field (repeat or comma-separate)",
         cxxopts::value<std::vector<std::string>>())
        ("page-default", "find's page size when the query has no $limit",
         cxxopts::value<std::size_t>()->default_value("10"))
        ("page-max", "the largest page find returns", cxxopts::value<std::size_t>()->default_value("1000"))
        ("events-keep", "stored change events kept for resuming listeners (newest N)",
         cxxopts::value<std::uint64_t>()->default_value("1000000"))
        ("events-keep-hours", "stored change events older than this are dropped",
         cxxopts::value<std::string>()->default_value("168"))
        ("heartbeat-ms", "heartbeat interval; a peer silent for 3 intervals is dropped",
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(mw::kDefaultHeartbeatMs)))
        ("spin-us", mw::kSpinFlagHelp,
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(mw::kDefaultBrokerSpinUs)))
        ("max-message-bytes", "largest message accepted",
         cxxopts::value<std::size_t>()->default_value(std::to_string(mw::kDefaultMaxMessageBytes)))
        ("max-waiting", "jobs that may wait for a worker or their time; a SUBMIT beyond it is refused "
                        "(ERROR 507) until workers catch up (0: no limit)",
         cxxopts::value<std::uint64_t>()->default_value("10000000"))
        ("max-waiting-mb", "MiB of payload those waiting jobs may hold (0: no limit)",
         cxxopts::value<std::uint64_t>()->default_value("4096"))
        ("max-waiting-per-type", "jobs of any one type that may wait; a SUBMIT of that type beyond it is refused "
                                 "(ERROR 507), so one type whose workers fell behind leaves room for the others "
                                 "(0: no limit)",
         cxxopts::value<std::uint64_t>()->default_value("0"))
        ("type-max-waiting", "the same for one job type, as TYPE=N (repeat or comma-separate; 0: no limit)",
         cxxopts::value<std::vector<std::string>>())
        ("max-stages", "stages one flow may pass through; a flow whose next stage would be beyond it dies "
                       "(a --next or nextWorkerType that loops back)",
         cxxopts::value<std::uint32_t>()->default_value("100"))
        ("keep-results", "outcomes of ended flows kept for mw result and for submitters that wait again "
                         "after a restart (the newest N; 0: none; also kept in a durable store, across restarts)",
         cxxopts::value<std::uint64_t>()->default_value("10000"))
        ("keep-results-mb", "MiB of results those kept outcomes may hold",
         cxxopts::value<std::uint64_t>()->default_value("64"))
        ("max-attempts", "deliveries of a job before it is dead, unless the submitter says otherwise",
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(mw::kDefaultMaxAttempts)))
        ("type-max-attempts", "max attempts for one job type, as TYPE=N (repeat or comma-separate)",
         cxxopts::value<std::vector<std::string>>())
        ("lease", "seconds a worker may hold a job before it is taken back and requeued",
         cxxopts::value<std::string>()->default_value("3600"))
        ("type-lease", "lease for one job type, as TYPE=SECONDS (repeat or comma-separate)",
         cxxopts::value<std::vector<std::string>>())
        ("type-rate", "at most N jobs of a type given to workers in any second, or any SECONDS, as TYPE=N or "
                      "TYPE=N/SECONDS (repeat or comma-separate); the others wait in their queue",
         cxxopts::value<std::vector<std::string>>())
        ("sync-endpoint", "entity endpoint that receives the records of dead jobs",
         cxxopts::value<std::string>()->default_value(config.sync_endpoint))
        ("schedule-endpoint", "entity endpoint whose documents are periodic jobs (mw schedule)",
         cxxopts::value<std::string>()->default_value(config.schedule_endpoint))
        ("retry-base-ms", "first retry delay; doubles each attempt (with jitter)",
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(config.retry_base_ms)))
        ("log-level", "debug, info, warn, error or off", cxxopts::value<std::string>()->default_value("info"))
        ("version", "print the version and exit")
        ("h,help", "print this help");
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    if (args.count("version")) {
      std::cout << "mw-broker " << mw::kVersion << std::endl;
      return 0;
    }
    if (!args.unmatched().empty()) throw mw::UsageError("unexpected argument '" + args.unmatched().front() + "'");

    mw::set_log_level(mw::parse_log_level(args["log-level"].as<std::string>()));
    server.bind = args["bind"].as<std::string>();
    server.pub = args["pub"].as<std::string>();
    config.store = args["store"].as<std::string>();
    if (config.store.empty()) throw mw::UsageError("--store needs a file path or :memory:");
    server.sqlite.synchronous = args["sync"].as<std::string>();
    if (args.count("endpoints")) server.entities.endpoints = args["endpoints"].as<std::vector<std::string>>();
    if (args.count("index")) server.entities.indexes = args["index"].as<std::vector<std::string>>();
    server.entities.page.default_limit = args["page-default"].as<std::size_t>();
    server.entities.page.max_limit = args["page-max"].as<std::size_t>();
    if (server.entities.page.max_limit == 0) throw mw::UsageError("--page-max must be at least 1");
    if (server.entities.page.default_limit == 0) throw mw::UsageError("--page-default must be at least 1");
    if (args.count("page-default") && server.entities.page.default_limit > server.entities.page.max_limit)
      throw mw::UsageError("--page-default (" + std::to_string(server.entities.page.default_limit) +
                           ") must not exceed --page-max (" + std::to_string(server.entities.page.max_limit) + ")");
    server.entities.page.default_limit = std::min(server.entities.page.default_limit, server.entities.page.max_limit);
    server.entities.event_keep_count = args["events-keep"].as<std::uint64_t>();
    const double keep_hours = mw::parse_decimal(args["events-keep-hours"].as<std::string>(), "--events-keep-hours");
    if (!(keep_hours > 0) || keep_hours > 87'600) throw mw::UsageError("--events-keep-hours must be between 0 and 87600 (ten years)");
    server.entities.event_keep_ms = static_cast<std::int64_t>(keep_hours * 3600 * 1000);
    config.heartbeat_ms = args["heartbeat-ms"].as<std::uint32_t>();
    if (config.heartbeat_ms < 10 || config.heartbeat_ms > 600'000)
      throw mw::UsageError("--heartbeat-ms must be between 10 and 600000");
    server.spin_us = args["spin-us"].as<std::uint32_t>();
    mw::check_spin_us(server.spin_us, "--spin-us");
    config.max_message_bytes = args["max-message-bytes"].as<std::size_t>();
    if (config.max_message_bytes < mw::kMinMaxMessageBytes || config.max_message_bytes >= (std::size_t{1} << 32))
      throw mw::UsageError("--max-message-bytes must be at least " + std::to_string(mw::kMinMaxMessageBytes) +
                           " and below 4 GiB (4294967296)");
    config.max_waiting_jobs = args["max-waiting"].as<std::uint64_t>();
    const auto waiting_mb = args["max-waiting-mb"].as<std::uint64_t>();
    if (waiting_mb > (std::uint64_t{1} << 40)) throw mw::UsageError("--max-waiting-mb must be at most 2^40 (0: no limit)");
    config.max_waiting_bytes = waiting_mb << 20;
    config.max_waiting_per_type = args["max-waiting-per-type"].as<std::uint64_t>();
    if (args.count("type-max-waiting"))
      for (const auto& [type, value] :
           type_settings(args["type-max-waiting"].as<std::vector<std::string>>(), "--type-max-waiting")) {
        const double n = parse_number(value, "--type-max-waiting");
        if (n < 0 || n > 1e15 || n != static_cast<std::uint64_t>(n))
          throw mw::UsageError("--type-max-waiting " + type + "=" + value +
                               ": jobs must be a whole number from 0 (no limit) to 10^15");
        config.type_max_waiting[type] = static_cast<std::uint64_t>(n);
      }
    config.max_stages = args["max-stages"].as<std::uint32_t>();
    if (config.max_stages == 0 || config.max_stages > mw::broker::BrokerConfig::kMaxStagesLimit)
      throw mw::UsageError("--max-stages must be between 1 and " + std::to_string(mw::broker::BrokerConfig::kMaxStagesLimit));
    config.keep_results = args["keep-results"].as<std::uint64_t>();
    const auto results_mb = args["keep-results-mb"].as<std::uint64_t>();
    if (results_mb > (std::uint64_t{1} << 40)) throw mw::UsageError("--keep-results-mb must be at most 2^40");
    config.keep_results_bytes = results_mb << 20;
    config.default_max_attempts = args["max-attempts"].as<std::uint32_t>();
    if (config.default_max_attempts == 0) throw mw::UsageError("--max-attempts must be at least 1");
    config.retry_base_ms = args["retry-base-ms"].as<std::uint32_t>();
    config.lease_ms = lease_ms(mw::parse_decimal(args["lease"].as<std::string>(), "--lease"), "--lease");
    if (args.count("type-rate"))
      for (const auto& [type, value] : type_settings(args["type-rate"].as<std::vector<std::string>>(), "--type-rate"))
        config.type_rates[type] = type_rate(value);
    if (args.count("type-lease"))
      for (const auto& [type, value] : type_settings(args["type-lease"].as<std::vector<std::string>>(), "--type-lease"))
        config.type_lease_ms[type] = lease_ms(parse_number(value, "--type-lease"), "--type-lease");
    if (args.count("type-max-attempts"))
      for (const auto& [type, value] :
           type_settings(args["type-max-attempts"].as<std::vector<std::string>>(), "--type-max-attempts")) {
        const double n = parse_number(value, "--type-max-attempts");
        if (n < 1 || n > 1'000'000 || n != static_cast<std::uint32_t>(n))
          throw mw::UsageError("--type-max-attempts " + type + "=" + value + ": attempts must be a whole number from 1");
        config.type_max_attempts[type] = static_cast<std::uint32_t>(n);
      }
    config.sync_endpoint = args["sync-endpoint"].as<std::string>();
    mw::broker::EntityService::check_endpoint_name(config.sync_endpoint);
    config.schedule_endpoint = args["schedule-endpoint"].as<std::string>();
    mw::broker::EntityService::check_endpoint_name(config.schedule_endpoint);
    // The broker writes these itself; mw dead, mw retry and mw schedule
    // must reach them even when --endpoints limits the others.
    if (!server.entities.endpoints.empty()) {
      server.entities.endpoints.push_back(config.sync_endpoint);
      server.entities.endpoints.push_back(config.schedule_endpoint);
    }

    mw::broker::BrokerServer broker(server);
    mw::log(mw::LogLevel::info, "broker",
            "mw-broker " + std::string(mw::kVersion) + " serving " + broker.bound_address() + ", events on " +
                broker.pub_address() + ", store " + config.store);
    broker.run(stop);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "mw-broker: %s (see --help)\n", mw::option_error_text(e.what(), argc, argv).c_str());
    return mw::kUsageExitCode;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw-broker: %s\n", e.what());
    return mw::exit_code_for(e);
  }
  return 1;
}
