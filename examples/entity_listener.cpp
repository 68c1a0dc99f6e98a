// The seed's SampleListener: reacts to the events of one endpoint
// (created, updated, patched, removed), e.g. to mail a user once created.
//
//   ./entity_listener --endpoint sampleendpoint [--since 0]
#include <iostream>

#include <cxxopts.hpp>

#include "mw/error.hpp"
#include "mw/options.hpp"
#include "mw/listener.hpp"
#include "mw/protocol.hpp"

class SampleListener : public mw::Listener {
 public:
  using Listener::Listener;
  void created(const mw::Event& e) override { std::cout << "created: " << e.data.to_json_text() << std::endl; }
  void updated(const mw::Event& e) override { std::cout << "updated: " << e.data.to_json_text() << std::endl; }
  void patched(const mw::Event& e) override { std::cout << "patched: " << e.data.to_json_text() << std::endl; }
  void removed(const mw::Event& e) override { std::cout << "removed: " << e.data.to_json_text() << std::endl; }
};

int main(int argc, char** argv) {
  auto stop = mw::StopSignal::on_signals();
  cxxopts::Options options("entity_listener", "Print the events of one endpoint, as the seed's SampleListener.");
  options.add_options()
      ("h,help", "print this help")
      ("broker", mw::kBrokerFlagHelp,
       cxxopts::value<std::string>()->default_value(mw::default_broker_address()))
      ("endpoint", "endpoint to listen to", cxxopts::value<std::string>()->default_value("sampleendpoint"))
      ("since", "replay stored events after this sequence first", cxxopts::value<std::uint64_t>());
  try {
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    const auto endpoint = args["endpoint"].as<std::string>();
    // A name no endpoint can have would match no event, and wait forever.
    if (auto problem = mw::endpoint_name_problem(endpoint); !problem.empty()) throw mw::UsageError("--endpoint: " + problem);
    mw::ListenerOptions lo;
    lo.broker = args["broker"].as<std::string>();
    lo.topics = {endpoint + ".*"};
    if (args.count("since")) lo.since = args["since"].as<std::uint64_t>();
    SampleListener listener(lo);
    listener.run(stop);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "entity_listener: " << mw::option_error_text(e.what(), argc, argv) << " (see --help)" << std::endl;
    return mw::kUsageExitCode;
  } catch (const std::exception& e) {
    std::cerr << "entity_listener: " << e.what() << std::endl;
    return mw::exit_code_for(e);  // 2 for what cannot run as given
  }
}
