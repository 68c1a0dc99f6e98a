// The seed's SampleSync: checks that each number is 50. Its entities are
// the numbers 10, 20, 30 and 40, so every check fails, each failure is
// recorded in the sync endpoint, and with fixErrors on, fix_entity() is
// called on each (as in the seed, it hands the entity back as it is).
//
//   ./sample_sync --broker tcp://127.0.0.1:5555 [--once]
//
// Prints one line per failed check; the log (stderr) says what each run
// did. With --once: one run, its summary on stdout, exit 0 (1 when the
// broker cannot be reached or a signal ended the run).
#include <iostream>
#include <optional>
#include <string>

#include <cxxopts.hpp>

#include "mw/error.hpp"
#include "mw/options.hpp"
#include "mw/stop_signal.hpp"
#include "mw/sync.hpp"

namespace {

// The seed's checkIfNumberIs50.
std::optional<std::string> check_if_number_is_50(const nlohmann::ordered_json& number) {
  if (number == 50) return std::nullopt;
  std::string error = "The number " + number.dump() + " value isn't 50";
  std::cout << error << std::endl;
  return error;
}

// The seed's super(config, syncChecks, entityEndpoint, fixErrors,
// syncEndpoint, syncEntityName, syncInterval).
mw::SyncOptions sample_options(std::string broker, const mw::StopSignal& stop) {
  mw::SyncOptions o;
  o.broker = std::move(broker);
  o.stop = &stop;  // Ctrl-C ends a --once pass that waits for the broker
  o.checks = {check_if_number_is_50};
  o.entity_endpoint = "sampleentity";
  o.fix_errors = true;
  o.sync_endpoint = "sync";
  o.name = "data";
  o.interval = std::chrono::milliseconds(30000);
  return o;
}

class SampleSync : public mw::Sync {
 public:
  SampleSync(std::string broker, const mw::StopSignal& stop) : Sync(sample_options(std::move(broker), stop)) {}

  // Syncing some numbers.
  std::vector<nlohmann::ordered_json> find_entities_to_sync() override { return {10, 20, 30, 40}; }

  // The seed's fix: its comment speaks of incrementing the number, its code
  // hands the entity back unchanged; so does this one.
  nlohmann::ordered_json fix_entity(const nlohmann::ordered_json& entity) override { return entity; }
};

void print(const mw::SyncReport& r) {
  std::cout << "checked " << r.checked << ", failed " << r.failed << ", fixed " << r.fixed << ", replayed "
            << r.replayed << std::endl;
  for (const auto& line : r.errors) std::cout << "error: " << line << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  auto stop = mw::StopSignal::on_signals();
  cxxopts::Options options("sample_sync", "The seed's SampleSync: check that numbers are 50, record and fix.");
  options.add_options()
      ("h,help", "print this help")
      ("broker", mw::kBrokerFlagHelp,
       cxxopts::value<std::string>()->default_value(mw::default_broker_address()))
      ("once", "run a single pass and exit");
  try {
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    SampleSync sync(args["broker"].as<std::string>(), stop);
    if (args.count("once")) {
      print(sync.run_once());
      return 0;
    }
    sync.run(stop);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "sample_sync: " << mw::option_error_text(e.what(), argc, argv) << " (see --help)" << std::endl;
    return mw::kUsageExitCode;
  } catch (const std::exception& e) {
    std::cerr << "sample_sync: " << e.what() << std::endl;
    return mw::exit_code_for(e);  // 2 for what cannot run as given
  }
}
