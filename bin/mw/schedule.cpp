// mw schedule NAME TYPE [JSON | -] --every SECONDS [--at TIME] [--priority N] [--max-attempts N] [--paused]
// mw schedule --list [--json] | --remove NAME | --pause NAME | --resume NAME
//
// Periodic jobs: each schedule is an entity of the schedules endpoint
// (--schedule-endpoint, as given to the broker) named by its id; the broker
// submits its job whenever its next_at has passed (schedule_entity.hpp).
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "columns.hpp"
#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "schedule_entity.hpp"
#include "stalled_flow.hpp"

namespace mw::cli {
namespace {

using Json = nlohmann::ordered_json;

// Asked per find; the broker cuts it to its --page-max and says the total.
constexpr std::size_t kListPageSize = 1000;

// The options that take a value: a negative number after one of them is
// that value ("--priority -5"), not a payload.
constexpr std::array<std::string_view, 9> kValueOptions = {
    "--broker", "--schedule-endpoint", "--every", "--at", "--priority", "--max-attempts", "--remove", "--pause", "--resume"};

// The options of creating a schedule, refused with --list and the others.
constexpr std::array<std::string_view, 5> kCreateOptions = {"every", "at", "priority", "max-attempts", "paused"};

// cxxopts takes a negative number ("-1") for a cluster of short options. No
// option name starts with a digit, so such a word is a payload (a leading
// space keeps it positional and is the same JSON), unless it is the value
// of the option before it.
std::vector<std::string> protect_negative_numbers(int argc, char** argv) {
  std::vector<std::string> words(argv, argv + argc);
  for (std::size_t i = 1; i < words.size(); ++i) {
    auto& w = words[i];
    const bool is_number = w.size() > 1 && w[0] == '-' && (std::isdigit(static_cast<unsigned char>(w[1])) || w[1] == '.');
    const bool is_value = std::find(kValueOptions.begin(), kValueOptions.end(), words[i - 1]) != kValueOptions.end();
    if (is_number && !is_value) w.insert(0, " ");
  }
  return words;
}

[[noreturn]] void usage_error(const std::string& what) {
  throw UsageError(what + " (see mw schedule --help)");
}

// The stored schedule, or null when there is none of that name.
Json stored_schedule(Client& client, const std::string& endpoint, const std::string& name) {
  try {
    return client.call(endpoint, "get", name);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::NotFound) return nullptr;
    throw;
  }
}

// Creates, or replaces keeping the broker's counters. A create that loses a
// race with another creator replaces what that one wrote.
void write_schedule(Client& client, const std::string& endpoint, const Schedule& schedule) {
  const Json existing = stored_schedule(client, endpoint, schedule.name);
  if (existing.is_null()) {
    try {
      client.call(endpoint, "create", std::nullopt, schedule_document(schedule, nullptr));
      return;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::Conflict) throw;
    }
    client.call(endpoint, "update", schedule.name,
                schedule_document(schedule, stored_schedule(client, endpoint, schedule.name)));
    return;
  }
  client.call(endpoint, "update", schedule.name, schedule_document(schedule, existing));
}

// Every document of the endpoint, by id, page after page.
std::vector<Json> all_schedules(Client& client, const std::string& endpoint) {
  std::vector<Json> found;
  for (;;) {
    const Json query = {{"$limit", kListPageSize}, {"$skip", found.size()}};
    const Json page = client.call(endpoint, "find", std::nullopt, nullptr, query);
    const Json& data = page.at("data");
    for (const auto& doc : data) found.push_back(doc);
    if (data.empty() || found.size() >= page.value("total", std::uint64_t{0})) break;
  }
  return found;
}

void print_table(const std::vector<Json>& schedules) {
  std::vector<ScheduleRow> rows;
  std::size_t name_width = 4, type_width = 4, every_width = 5;
  for (const auto& doc : schedules) {
    rows.push_back(schedule_row(doc));
    name_width = std::max(name_width, display_width(rows.back().name));
    type_width = std::max(type_width, display_width(rows.back().type));
    every_width = std::max(every_width, rows.back().every.size());
  }
  auto print = [&](const ScheduleRow& r) {
    std::cout << std::left << pad_right(r.name, name_width) << "  " << pad_right(r.type, type_width) << "  " << std::right
              << std::setw(static_cast<int>(every_width)) << r.every << "  " << std::left << std::setw(24) << r.next_run
              << "  " << std::right << std::setw(6) << r.runs << "  " << std::setw(7) << r.skipped << "  " << r.paused
              << '\n';
  };
  print({"NAME", "TYPE", "EVERY", "NEXT RUN (UTC)", "RUNS", "SKIPPED", "PAUSED"});
  for (const auto& r : rows) print(r);
  std::cout.flush();
}

int list_schedules(Client& client, const std::string& endpoint, bool as_json) {
  const auto schedules = all_schedules(client, endpoint);
  if (as_json) {
    for (const auto& doc : schedules)
      std::cout << json_text(doc) << '\n';
    std::cout.flush();
  } else if (schedules.empty()) {
    std::fputs("no schedules\n", stderr);
  } else {
    print_table(schedules);
  }
  return 0;
}

// remove, or patch `paused`; an unknown name is one line and exit 1.
int change_schedule(Client& client, const std::string& endpoint, const std::string& action, const std::string& name) {
  check_schedule_name(name);
  try {
    if (action == "remove") client.call(endpoint, "remove", name);
    else client.call(endpoint, "patch", name, Json{{"paused", action == "pause"}});
  } catch (const Error& e) {
    if (e.code() == ErrorCode::NotFound) throw Error("no schedule named '" + name + "'", ErrorCode::NotFound);
    throw;
  }
  const char* done = action == "remove" ? "removed" : action == "pause" ? "paused" : "resumed";
  std::cout << "schedule " << name << ' ' << done << std::endl;
  return 0;
}

}  // namespace

int schedule(int argc, char** argv) {
  cxxopts::Options options("mw schedule", "Run a job periodically: create or replace a schedule, or list, pause, "
                                          "resume or remove schedules.");
  options.positional_help("NAME TYPE [JSON | -] --every SECONDS | --list | --remove NAME | --pause NAME | --resume NAME");
  add_common_options(options);
  options.add_options()
      ("every", "run every SECONDS (decimals allowed; at least 0.1)", cxxopts::value<std::string>())
      ("at", "first run at TIME (2026-12-01T10:00:00Z, an offset like +02:00, or @UNIXSECONDS); a past time "
             "keeps its place on the grid TIME + k x every (default: now)", cxxopts::value<std::string>())
      ("priority", "-1000..1000 for each run's job; higher runs first", cxxopts::value<std::int64_t>())
      ("max-attempts", "deliveries per stage before a run's job is dead (default: the broker's)",
       cxxopts::value<std::int64_t>())
      ("paused", "create it paused (mw schedule --resume NAME starts it)")
      ("list", "list the schedules: NAME, TYPE, EVERY, NEXT RUN, RUNS, SKIPPED, PAUSED")
      ("json", "with --list: one JSON object per line, the whole document")
      ("remove", "remove the schedule NAME", cxxopts::value<std::string>())
      ("pause", "pause the schedule NAME (its runs stop until --resume)", cxxopts::value<std::string>())
      ("resume", "resume the schedule NAME", cxxopts::value<std::string>())
      ("schedule-endpoint", "the entity endpoint holding the schedules (the broker's)",
       cxxopts::value<std::string>()->default_value(std::string(kDefaultScheduleEndpoint)))
      ("name", "schedule name", cxxopts::value<std::string>())
      ("type", "job type", cxxopts::value<std::string>())
      ("payload", "payload as JSON, or - to read it from stdin (default null)", cxxopts::value<std::string>());
  options.parse_positional({"name", "type", "payload"});
  std::vector<std::string> words = protect_negative_numbers(argc, argv);
  std::vector<char*> word_ptrs;
  for (auto& w : words) word_ptrs.push_back(w.data());
  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, word_ptrs.data(), args)) return 0;
  if (!args.unmatched().empty()) usage_error("unexpected argument '" + args.unmatched().front() + "'");

  std::string action;
  for (const char* a : {"list", "remove", "pause", "resume"}) {
    if (!args.count(a)) continue;
    if (!action.empty()) usage_error("--" + action + " and --" + a + " do not go together: give one");
    action = a;
  }
  if (args.count("json") && action != "list") usage_error("--json goes with --list");
  const std::string endpoint = args["schedule-endpoint"].as<std::string>();
  if (endpoint.empty()) usage_error("--schedule-endpoint must not be empty");

  if (!action.empty()) {
    if (args.count("name")) usage_error("unexpected argument '" + args["name"].as<std::string>() + "' with --" + action);
    for (const auto option : kCreateOptions)
      if (args.count(std::string(option)))
        usage_error("--" + std::string(option) + " is for creating a schedule, not for --" + action);
    Client client({args["broker"].as<std::string>()});
    if (action == "list") return list_schedules(client, endpoint, args.count("json") > 0);
    return change_schedule(client, endpoint, action, args[action].as<std::string>());
  }

  if (!args.count("name")) usage_error("missing NAME and TYPE");
  if (!args.count("type")) usage_error("missing TYPE after NAME '" + args["name"].as<std::string>() + "'");
  ScheduleArgs request;
  request.name = args["name"].as<std::string>();
  check_schedule_name(request.name);  // before reading stdin
  request.type = args["type"].as<std::string>();
  if (!args.count("every")) usage_error("missing --every SECONDS");
  request.every = args["every"].as<std::string>();
  if (args.count("at")) request.at = args["at"].as<std::string>();
  if (args.count("priority")) request.priority = args["priority"].as<std::int64_t>();
  if (args.count("max-attempts")) request.max_attempts = args["max-attempts"].as<std::int64_t>();
  request.paused = args.count("paused") > 0;
  if (args.count("payload")) request.payload_json = args["payload"].as<std::string>();
  if (request.payload_json == "-") request.payload_json = read_stdin();
  const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  const Schedule checked = check_schedule(request, now);

  Client client({args["broker"].as<std::string>()});
  write_schedule(client, endpoint, checked);
  std::cout << schedule_summary(checked) << std::endl;
  // A schedule is often written before its workers are started; a typo in
  // TYPE would otherwise show only as runs that never end.
  if (const auto note = unserved_type_note(client, checked.type))
    std::fprintf(stderr, "mw schedule: note: %s\n", note->c_str());
  return 0;
}

}  // namespace mw::cli
