// mw — the command line for people: submit jobs, watch status and events,
// measure the broker.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "mw/error.hpp"
#include "mw/options.hpp"
#include "mw/stop_signal.hpp"
#include "mw/version.hpp"

namespace mw::cli {

void add_common_options(cxxopts::Options& options) {
  options.add_options()
      ("broker", kBrokerFlagHelp,
       cxxopts::value<std::string>()->default_value(default_broker_address()))
      ("h,help", "print this help");
}

bool parse_or_help(cxxopts::Options& options, int argc, char** argv, cxxopts::ParseResult& out) {
  out = options.parse(argc, argv);
  if (out.count("help")) {
    std::vector<std::string> shown;
    for (const auto& group : options.groups())
      if (group != kPositionalGroup) shown.push_back(group);
    std::cout << options.help(shown) << std::endl;
    return true;
  }
  return false;
}

std::string read_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

}  // namespace mw::cli

namespace {

constexpr const char* kUsage =
    "usage: mw COMMAND [ARGS]\n"
    "\n"
    "  submit TYPE [JSON | -] [--wait] [--timeout SECONDS]   submit a job; prints its id, or the final result\n"
    "         [--delay SECONDS | --at TIME] [--priority N] [--key KEY] [--lease SECONDS]\n"
    "         [--max-attempts N] [--entity ENDPOINT/ID]      run later, ahead of others, once per key …\n"
    "  result FLOW [--wait] [--timeout SECONDS] [--json]     how a flow ended: its result, or why it died\n"
    "  status [--json] [--all]                               workers, queues and counters (--all: idle types too)\n"
    "  listen [TOPIC ...] [--since SEQ] [--count N]          print events as JSON lines (N of them, then exit)\n"
    "  flows [TYPE] [--state S] [--limit N] [--json]         unfinished flows: in flight, queued, delayed\n"
    "  cancel FLOW [FLOW ...]                                cancel unfinished flows (a waiting submitter hears it)\n"
    "  dead [TYPE] [--limit N] [--json]                      dead jobs not yet replayed, oldest first\n"
    "  retry ID | --type TYPE [--limit N]                    submit dead jobs again; prints ID -> flow N\n"
    "  schedule NAME TYPE [JSON | -] --every SECONDS         run a job every SECONDS (replaces NAME if it exists)\n"
    "           [--at TIME] [--priority N] [--max-attempts N] [--paused]\n"
    "  schedule --list [--json] | --remove NAME | --pause NAME | --resume NAME\n"
    "                                                        the schedules: runs, skips, next run; change one\n"
    "  create ENDPOINT JSON|-                                create one entity (or an array of them)\n"
    "  get ENDPOINT ID                                       one entity\n"
    "  find ENDPOINT [QUERY_JSON]                            {total, limit, skip, data}; Feathers query\n"
    "  patch ENDPOINT ID JSON|-                              merge fields (--query Q instead of ID: every match)\n"
    "  update ENDPOINT ID JSON|-                             replace the document (--query Q as for patch)\n"
    "  remove ENDPOINT ID                                    remove (--query Q as for patch)\n"
    "  bench [--stages K] [--workers W] [--concurrency C] [--jobs N] [--payload BYTES] [--serial] [--json]\n"
    "                                                        measure jobs/s and latency against a broker\n"
    "  bench --entities [--jobs N] [--window W]              measure creates/s, gets/s and finds/s of the entity store\n"
    "  bench --backlog [--jobs N] [--payload BYTES]          the broker's memory with N jobs queued, then the drain rate\n"
    "\n"
    "Every command takes --broker ADDR (default $MW_BROKER, then tcp://127.0.0.1:5555), before or after\n"
    "the command's name, and --help.\n";

}  // namespace

namespace {

// `mw --broker ADDR COMMAND …` (or --broker=ADDR) as people type it after
// other tools (docker -H, kubectl --server): the option moves to just after
// the command, where every command reads it; a --broker the command is given
// itself comes later and wins. Returns false (after saying why) for a
// --broker without its address.
bool hoist_global_broker(std::vector<char*>& args) {
  // Every leading --broker (given twice, the last wins, as after the command).
  std::vector<char*> options;
  std::size_t at = 1;
  while (at < args.size()) {
    const std::string_view word = args[at];
    if (word == "--broker") {
      if (at + 1 >= args.size()) {
        std::fputs("mw: --broker needs an address: mw --broker ADDR COMMAND ...\n", stderr);
        return false;
      }
      options.insert(options.end(), {args[at], args[at + 1]});
      at += 2;
    } else if (word.starts_with("--broker=")) {
      if (word == "--broker=") {
        std::fputs("mw: --broker= needs an address: mw --broker=ADDR COMMAND ...\n", stderr);
        return false;
      }
      options.push_back(args[at]);
      at += 1;
    } else {
      break;
    }
  }
  if (options.empty()) return true;
  if (at >= args.size()) {
    std::fputs("mw: a command must follow --broker ADDR: mw --broker ADDR COMMAND ... (see mw --help)\n", stderr);
    return false;
  }
  std::vector<char*> reordered{args[0], args[at]};
  reordered.insert(reordered.end(), options.begin(), options.end());
  reordered.insert(reordered.end(), args.begin() + static_cast<std::ptrdiff_t>(at) + 1, args.end());
  args = std::move(reordered);
  return true;
}

}  // namespace

int main(int raw_argc, char** raw_argv) {
  std::vector<char*> args(raw_argv, raw_argv + raw_argc);
  if (!hoist_global_broker(args)) return mw::kUsageExitCode;
  args.push_back(nullptr);  // argv[argc] is null, as main's own
  const int argc = raw_argc;
  char** argv = args.data();
  if (argc < 2 || std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? mw::kUsageExitCode : 0;
  }
  const std::string_view command = argv[1];
  if (command == "--version") {
    std::cout << "mw " << mw::kVersion << std::endl;
    return 0;
  }
  try {
    if (command == "submit") return mw::cli::submit(argc - 1, argv + 1);
    if (command == "status") return mw::cli::status(argc - 1, argv + 1);
    if (command == "listen") return mw::cli::listen(argc - 1, argv + 1);
    if (command == "dead") return mw::cli::dead(argc - 1, argv + 1);
    if (command == "retry") return mw::cli::retry(argc - 1, argv + 1);
    if (command == "schedule") return mw::cli::schedule(argc - 1, argv + 1);
    if (command == "flows") return mw::cli::flows(argc - 1, argv + 1);
    if (command == "cancel") return mw::cli::cancel(argc - 1, argv + 1);
    if (command == "result") return mw::cli::result(argc - 1, argv + 1);
    if (command == "bench") {
      for (int i = 2; i < argc; ++i)
        if (std::strcmp(argv[i], "--entities") == 0) return mw::cli::bench_entities(argc - 1, argv + 1);
      return mw::cli::bench(argc - 1, argv + 1);
    }
    for (std::string_view method : {"create", "get", "find", "update", "patch", "remove"})
      if (command == method) return mw::cli::entity(method, argc - 1, argv + 1);
    std::fprintf(stderr, "mw: unknown command '%s' (try: submit, status, result, listen, flows, cancel, dead, retry, schedule, bench, create, get, find, patch, update, remove; see mw --help)\n", argv[1]);
    return mw::kUsageExitCode;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "mw %s: %s (see mw %s --help)\n", argv[1],
                 mw::option_error_text(e.what(), argc, argv).c_str(), argv[1]);
    return mw::kUsageExitCode;
  } catch (const mw::Interrupted& e) {
    std::fprintf(stderr, "mw %s: %s\n", argv[1], e.what());
    // As a shell reports a command ended by the signal (SIGINT when the
    // interruption came from elsewhere).
    const int signal = mw::StopSignal::received_signal();
    return 128 + (signal ? signal : SIGINT);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mw %s: %s\n", argv[1], e.what());
    return mw::exit_code_for(e);  // 2 for a request that cannot run as given
  }
}
