// mw listen [TOPIC ...]
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "json_text.hpp"
#include "mw/error.hpp"
#include "mw/listener.hpp"
#include "mw/options.hpp"
#include "mw/stop_signal.hpp"

namespace mw::cli {
namespace {

// A listener is often started beside its broker (a script, a service
// manager) and may come first: it waits for the broker as a worker does,
// saying so at the 1st, 2nd, 4th, 8th... silent attempt. Ctrl-C or SIGTERM
// ends the wait (mw::Interrupted: exit 130, or 143 for SIGTERM).
Listener subscribe_when_up(const ListenerOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  for (unsigned attempt = 1;; ++attempt) {
    try {
      return Listener(options);
    } catch (const Interrupted&) {
      throw;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::Unavailable) throw;
      if ((attempt & (attempt - 1)) != 0) continue;
      const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - started;
      std::fprintf(stderr, "mw listen: no answer from a broker at %s for %.0f s: %s; still trying\n",
                   options.broker.c_str(), waited.count(), std::string(kNoBrokerHint).c_str());
    }
  }
}

}  // namespace

int listen(int argc, char** argv) {
  auto stop = StopSignal::on_signals();
  cxxopts::Options options("mw listen",
                           "Print the broker's events, one JSON line each: {\"topic\", \"seq\", \"data\"}.\n"
                           "TOPIC patterns match whole topics, * matching anything (\"$mw.flow.*\"); none = all. A broker that is not "
                           "up yet is waited for.");
  options.positional_help("[TOPIC ...]");
  add_common_options(options);
  options.add_options()
      ("since", "first replay the stored events after this sequence (0: all kept), then go live; none lost or twice",
       cxxopts::value<std::uint64_t>())
      ("count", "exit after this many events (0 = until interrupted)", cxxopts::value<std::uint64_t>()->default_value("0"))
      ("topics", "topic patterns", cxxopts::value<std::vector<std::string>>());
  options.parse_positional({"topics"});
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  ListenerOptions lo;
  lo.broker = args["broker"].as<std::string>();
  if (args.count("topics")) lo.topics = args["topics"].as<std::vector<std::string>>();
  // The broker's own topics start with "$mw.", which a shell expands inside
  // double quotes ("$mw.flow.*" becomes ".flow.*"): such a pattern matches
  // nothing, silently, so say it.
  for (const auto& topic : lo.topics) {
    // An empty word is most often an unset shell variable ("$TOPIC"): it
    // would match no topic at all, and wait forever.
    if (topic.empty())
      throw UsageError("an empty TOPIC pattern matches no event (an unset shell variable?); leave the patterns out "
                       "to hear every event, or give '*'");
    if (topic.starts_with('.') || topic.starts_with("mw."))
      std::fprintf(stderr,
                   "mw listen: '%s' matches none of the broker's own topics, which start with '$mw.': did you mean "
                   "'$mw%s' (in single quotes, so that the shell leaves $mw alone)?\n",
                   topic.c_str(), topic.starts_with('.') ? topic.c_str() : topic.substr(2).c_str());
    else if (topic.size() >= 4 && topic.compare(0, 4, "$mw.") != 0 && (topic[0] == '$') &&
             (topic[1] | 0x20) == 'm' && (topic[2] | 0x20) == 'w' && topic[3] == '.')
      std::fprintf(stderr, "mw listen: '%s' matches none of the broker's own topics: topics are case-sensitive, "
                           "and theirs start with '$mw.' in small letters\n", topic.c_str());
    else if (topic.find_first_of(" \t\n\r") != std::string::npos)
      throw UsageError("'" + topic + "' holds white space, which no topic does: it would match nothing (topics are " +
                       "ENDPOINT.EVENT or $mw.…, one word each)");
  }
  if (args.count("since")) lo.since = args["since"].as<std::uint64_t>();
  lo.stop = &stop;
  Listener listener = subscribe_when_up(lo);
  if (listener.missed())
    std::fprintf(stderr, "mw listen: %llu event(s) after %llu were already dropped by the broker's retention\n",
                 static_cast<unsigned long long>(listener.missed()), static_cast<unsigned long long>(*lo.since));
  const std::uint64_t limit = args["count"].as<std::uint64_t>();
  std::uint64_t seen = 0;
  while (!stop.fired()) {
    auto event = listener.next(std::chrono::milliseconds(200));
    if (!event) continue;
    nlohmann::ordered_json line = {{"topic", event->topic}, {"seq", event->seq}};
    if (event->flow_id) line["flow"] = event->flow_id;
    if (!event->type.empty()) line["type"] = event->type;
    if (!event->error.empty()) line["error"] = event->error;
    try {
      line["data"] = event->data.to_ordered_json();
    } catch (const std::exception& e) {
      line["data"] = nullptr;
      line["data_error"] = e.what();
    }
    std::cout << json_text(line) << std::endl;
    if (limit && ++seen >= limit) break;
  }
  return 0;
}

}  // namespace mw::cli
