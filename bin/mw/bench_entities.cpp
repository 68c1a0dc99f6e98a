// mw bench --entities: creates/s, gets/s and finds/s of the entity store.
//
// Runs against a running broker, pipelining calls with a window like a
// busy client would. Start the broker with `--index bench.email` to measure
// indexed finds (the finds filter on email equality).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"

namespace mw::cli {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

struct Options {
  std::string broker;
  std::string endpoint = "bench";
  std::uint64_t count = 100000;
  std::uint64_t finds = 2000;
  std::size_t window = 256;
  bool json = false;
  std::chrono::milliseconds timeout{300000};
};

// Sends `total` calls made by `make(i)` keeping `window` in flight; returns
// the seconds it took and fills `latencies_us` when given.
template <typename Make>
double pipeline(Client& client, const Options& o, std::uint64_t total, std::size_t window, Make make,
                std::vector<std::int64_t>* latencies_us = nullptr) {
  const auto start = Clock::now();
  const auto deadline = start + o.timeout;
  std::unordered_map<std::uint64_t, Clock::time_point> sent_at;
  std::uint64_t sent = 0, answered = 0;
  while (answered < total) {
    while (sent < total && sent - answered < window) {
      auto [method, id, data, query] = make(sent);
      const auto request = client.send_call(o.endpoint, method, id, data, query);
      if (latencies_us) sent_at[request] = Clock::now();
      ++sent;
    }
    if (Clock::now() > deadline) throw Error("mw bench --entities: timed out");
    auto event = client.next_event(std::chrono::milliseconds(10000));
    if (!event) throw Error("mw bench --entities: the broker stopped answering");
    if (event->kind == ClientEvent::Kind::Error) throw Error("broker: " + event->message, event->code);
    if (event->kind != ClientEvent::Kind::Reply) continue;
    if (!event->ok) throw Error("broker: " + event->message, event->code);
    if (latencies_us) {
      latencies_us->push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at[event->request_id]).count());
      sent_at.erase(event->request_id);
    }
    ++answered;
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double percentile(std::vector<std::int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))]);
}

}  // namespace

int bench_entities(int argc, char** argv) {
  cxxopts::Options options("mw bench --entities",
                           "Measure creates/s, gets/s and finds/s of the broker's entity store.\n"
                           "Start the broker with --index bench.email to measure indexed finds.");
  add_common_options(options);
  options.add_options()
      ("entities", "measure the entity store")
      ("jobs", "entities to create (and gets to make)", cxxopts::value<std::uint64_t>()->default_value("100000"))
      ("finds", "finds by email equality, one at a time", cxxopts::value<std::uint64_t>()->default_value("2000"))
      ("window", "calls in flight", cxxopts::value<std::size_t>()->default_value("256"))
      ("endpoint", "endpoint to fill", cxxopts::value<std::string>()->default_value("bench"))
      ("json", "print one JSON object")
      ("timeout", "give up after this many seconds", cxxopts::value<std::string>()->default_value("300"));
  // An option of the pipeline bench is named as such, not as unknown.
  options.allow_unrecognised_options();
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty())
    throw UsageError("'" + args.unmatched().front() +
                     "' does not apply to mw bench --entities, which takes --jobs, --finds, --window, --endpoint, "
                     "--json, --timeout and --broker");
  Options o;
  o.broker = args["broker"].as<std::string>();
  o.count = args["jobs"].as<std::uint64_t>();
  o.finds = args["finds"].as<std::uint64_t>();
  if (args["window"].as<std::size_t>() == 0) throw UsageError("--window must be at least 1");
  o.window = args["window"].as<std::size_t>();
  o.endpoint = args["endpoint"].as<std::string>();
  o.json = args.count("json") > 0;
  const double timeout_s = parse_decimal(args["timeout"].as<std::string>(), "--timeout");
  if (!(timeout_s > 0) || timeout_s > 1e6)
    throw UsageError("--timeout must be a positive number of seconds, at most 1000000");
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
  if (o.count == 0) throw UsageError("--jobs must be at least 1");

  Client client({o.broker, std::chrono::milliseconds(5000)});
  (void)client.status();  // a clear error now if nobody answers
  std::random_device seed;
  const std::string run = std::to_string(seed()) + std::to_string(seed());
  const auto email = [&](std::uint64_t i) { return "user" + std::to_string(i) + "." + run + "@bench"; };
  using Call = std::tuple<std::string, std::optional<std::string>, Json, Json>;

  const double create_s = pipeline(client, o, o.count, o.window, [&](std::uint64_t i) {
    Json data = {{"id", run + "-" + std::to_string(i)}, {"email", email(i)}, {"n", i}, {"name", "bench user"}};
    return Call{"create", std::nullopt, std::move(data), nullptr};
  });
  std::mt19937_64 random(seed());
  const double get_s = pipeline(client, o, o.count, o.window, [&](std::uint64_t) {
    return Call{"get", run + "-" + std::to_string(random() % o.count), nullptr, nullptr};
  });
  std::vector<std::int64_t> find_latency;
  const double find_s = o.finds == 0 ? 0 : pipeline(client, o, o.finds, 1, [&](std::uint64_t) {
    Json query = {{"email", email(random() % o.count)}};
    return Call{"find", std::nullopt, nullptr, std::move(query)};
  }, &find_latency);

  const double creates = static_cast<double>(o.count) / create_s, gets = static_cast<double>(o.count) / get_s;
  const double finds = find_s > 0 ? static_cast<double>(o.finds) / find_s : 0;
  const double p50 = percentile(find_latency, 0.5), p99 = percentile(find_latency, 0.99);
  if (o.json) {
    Json j = {{"entities", o.count}, {"window", o.window}, {"creates_per_second", std::round(creates)},
              {"gets_per_second", std::round(gets)}, {"finds_per_second", std::round(finds)},
              {"find_latency_us", {{"p50", p50}, {"p99", p99}}}};
    std::printf("%s\n", json_text(j).c_str());
  } else {
    std::printf("mw bench --entities: %llu entities on '%s', window %zu\n", static_cast<unsigned long long>(o.count),
                o.endpoint.c_str(), o.window);
    std::printf("  creates: %.0f/s   gets: %.0f/s   finds by email (one at a time): %.0f/s, p50 %.0f us, p99 %.0f us\n",
                creates, gets, finds, p50, p99);
  }
  return 0;
}

}  // namespace mw::cli
