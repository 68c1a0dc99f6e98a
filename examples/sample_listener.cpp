// The seed's SampleListener, on the broker's events: prints every finished
// flow's result and every dead job. Entity events (created, updated,
// patched, removed) arrive the same way once the broker serves endpoints.
//
//   ./sample_listener --broker tcp://127.0.0.1:5555
#include <iostream>

#include <cxxopts.hpp>

#include "mw/error.hpp"
#include "mw/options.hpp"
#include "mw/listener.hpp"
#include "mw/stop_signal.hpp"

int main(int argc, char** argv) {
  auto stop = mw::StopSignal::on_signals();
  cxxopts::Options options("sample_listener", "Print finished flows and dead jobs.");
  options.add_options()
      ("h,help", "print this help")
      ("broker", mw::kBrokerFlagHelp,
       cxxopts::value<std::string>()->default_value(mw::default_broker_address()));
  try {
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    mw::ListenerOptions lo;
    lo.broker = args["broker"].as<std::string>();
    lo.topics = {"$mw.flow.done", "$mw.job.dead"};
    mw::Listener listener(lo);
    while (!stop.fired()) {
      auto event = listener.next(std::chrono::milliseconds(200));
      if (!event) continue;
      if (event->topic == "$mw.flow.done")
        std::cout << "flow " << event->flow_id << " done at " << event->type << ": " << event->data.to_json_text() << std::endl;
      else
        std::cout << "job of flow " << event->flow_id << " dead at " << event->type << ": " << event->error << std::endl;
    }
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "sample_listener: " << mw::option_error_text(e.what(), argc, argv) << " (see --help)" << std::endl;
    return mw::kUsageExitCode;
  } catch (const std::exception& e) {
    std::cerr << "sample_listener: " << e.what() << std::endl;
    return mw::exit_code_for(e);  // 2 for what cannot run as given
  }
}
