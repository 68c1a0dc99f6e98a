// The seed's `new Server config, sampleHooks`: a broker of your own, built
// from the broker library, with hooks on an entity endpoint.
//
//   ./custom_broker --bind tcp://127.0.0.1:5555 --pub tcp://127.0.0.1:5556 --store :memory:
//   mw create sampleendpoint '{"n": 1}'        # gets created_at from the hook
//   mw find sampleendpoint                     # sorted by last_sync_at, then newest first; at most the last 10
#include <cstdio>
#include <iostream>

#include <cxxopts.hpp>

#include "mw/broker/server.hpp"
#include "mw/error.hpp"
#include "mw/log.hpp"
#include "mw/options.hpp"

using mw::broker::HookContext;
using mw::broker::Method;

// The seed's sampleHooks for the endpoint "sampleendpoint".
mw::broker::Hooks sample_hooks() {
  mw::broker::Hooks hooks;
  // create: add the created_at date (the store would add one too; the hook's wins).
  hooks.before("sampleendpoint", {Method::Create}, [](HookContext& hook) {
    if (hook.data.is_object()) hook.data["created_at"] = hook.now_ms;
  });
  // find: sort the result list by last_sync_at, then newest first.
  hooks.before("sampleendpoint", {Method::Find}, [](HookContext& hook) {
    if (!hook.query.is_object()) hook.query = mw::broker::Json::object();
    hook.query["$sort"] = {{"last_sync_at", 1}, {"created_at", -1}};
  });
  // find: only the last 10.
  hooks.after("sampleendpoint", {Method::Find}, [](HookContext& hook) {
    auto& data = hook.result["data"];
    if (data.is_array() && data.size() > 10) data.erase(data.begin(), data.end() - 10);
  });
  return hooks;
}

int main(int argc, char** argv) {
  try {
    auto stop = mw::StopSignal::on_signals();
    cxxopts::Options options("custom_broker", "An mw broker with the seed's sampleHooks on 'sampleendpoint'.");
    options.add_options()
        ("h,help", "print this help")
        ("bind", "ROUTER address", cxxopts::value<std::string>()->default_value(std::string(mw::kDefaultBrokerAddress)))
        ("pub", "PUB address", cxxopts::value<std::string>()->default_value(std::string(mw::kDefaultPubAddress)))
        ("store", "SQLite file or :memory:", cxxopts::value<std::string>()->default_value(":memory:"));
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    mw::broker::ServerOptions server;
    server.bind = args["bind"].as<std::string>();
    server.pub = args["pub"].as<std::string>();
    server.config.store = args["store"].as<std::string>();
    server.hooks = sample_hooks();
    mw::broker::BrokerServer broker(std::move(server));
    mw::log(mw::LogLevel::info, "custom_broker", "serving " + broker.bound_address() + ", events on " + broker.pub_address());
    broker.run(stop);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "custom_broker: " << mw::option_error_text(e.what(), argc, argv) << " (see --help)" << std::endl;
    return mw::kUsageExitCode;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_broker: %s\n", e.what());
    return mw::exit_code_for(e);  // 2 for what cannot run as given
  }
}
