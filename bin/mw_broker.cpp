// mw-broker: routes typed jobs through pipelines of workers.
#include <cstdio>
#include <iostream>

#include <cxxopts.hpp>

#include "mw/broker/server.hpp"
#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/stop_signal.hpp"
#include "mw/version.hpp"

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
        ("store", "where jobs live: :memory: (the only store of this release)",
         cxxopts::value<std::string>()->default_value(":memory:"))
        ("heartbeat-ms", "heartbeat interval; a peer silent for 3 intervals is dropped",
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(mw::kDefaultHeartbeatMs)))
        ("max-message-bytes", "largest message accepted",
         cxxopts::value<std::size_t>()->default_value(std::to_string(mw::kDefaultMaxMessageBytes)))
        ("max-attempts", "deliveries of a job before it is dead, unless the submitter says otherwise",
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(mw::kDefaultMaxAttempts)))
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
    if (!args.unmatched().empty()) throw mw::Error("unexpected argument '" + args.unmatched().front() + "'");

    mw::set_log_level(mw::parse_log_level(args["log-level"].as<std::string>()));
    server.bind = args["bind"].as<std::string>();
    server.pub = args["pub"].as<std::string>();
    config.store = args["store"].as<std::string>();
    if (config.store != ":memory:")
      throw mw::Error("--store " + config.store + ": this release keeps jobs in memory only; use --store :memory:");
    config.heartbeat_ms = args["heartbeat-ms"].as<std::uint32_t>();
    if (config.heartbeat_ms < 10 || config.heartbeat_ms > 600'000)
      throw mw::Error("--heartbeat-ms must be between 10 and 600000");
    config.max_message_bytes = args["max-message-bytes"].as<std::size_t>();
    if (config.max_message_bytes < 1024) throw mw::Error("--max-message-bytes must be at least 1024");
    config.default_max_attempts = args["max-attempts"].as<std::uint32_t>();
    if (config.default_max_attempts == 0) throw mw::Error("--max-attempts must be at least 1");
    config.retry_base_ms = args["retry-base-ms"].as<std::uint32_t>();

    mw::broker::BrokerServer broker(server);
    mw::log(mw::LogLevel::info, "broker",
            "mw-broker " + std::string(mw::kVersion) + " serving " + broker.bound_address() + ", events on " +
                broker.pub_address() + ", store " + config.store);
    broker.run(stop);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "mw-broker: %s (see --help)\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw-broker: %s\n", e.what());
  }
  return 1;
}
