// mw create | get | find | update | patch | remove — entity endpoints.
//
//   mw create ENDPOINT JSON|-            mw get ENDPOINT ID
//   mw find ENDPOINT [QUERY_JSON]        mw remove ENDPOINT ID | --query Q
//   mw patch ENDPOINT ID JSON|-          mw patch ENDPOINT --query Q JSON|-
//   mw update ENDPOINT ID JSON|-         mw update ENDPOINT --query Q JSON|-
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "json_text.hpp"
#include "mw/client.hpp"
#include "mw/json_objects.hpp"

namespace mw::cli {
namespace {

nlohmann::ordered_json parse_json_argument(std::string text, const char* what) {
  if (text == "-") text = read_stdin();
  try {
    return parse_ordered_json(text);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(std::string(what) + " is not valid JSON: " + json_error_text(e));
  }
}

// True when `query` narrows what it matches: a field, or $or (not only
// $sort, $limit, $skip or $select).
bool has_condition(const nlohmann::ordered_json& query) {
  if (!query.is_object()) return true;  // not a query: the broker says what is wrong with it
  for (const auto& [key, value] : query.items())
    if (key.empty() || key[0] != '$' || key == "$or") return true;
  return false;
}

}  // namespace

int entity(std::string_view method, int argc, char** argv) {
  const std::string name = "mw " + std::string(method);
  const bool takes_id = method == "get" || method == "update" || method == "patch" || method == "remove";
  const bool takes_data = method == "create" || method == "update" || method == "patch";
  const bool takes_query = method == "find" || method == "update" || method == "patch" || method == "remove";
  cxxopts::Options options(name, "Call the " + std::string(method) + " method of an entity endpoint; prints the result as JSON.");
  std::vector<std::string> positional = {"endpoint"};
  std::string help = "ENDPOINT";
  if (takes_id) help += " ID", positional.push_back("id");
  if (takes_data) help += " JSON|-", positional.push_back("data");
  if (method == "find") help += " [QUERY_JSON]", positional.push_back("query_arg");
  options.positional_help(help);
  add_common_options(options);
  options.add_options()("pretty", "indent the JSON output");
  if (takes_query && method != "find")
    options.add_options()
        ("query", "act on every entity matching this query instead of one id", cxxopts::value<std::string>())
        ("all", "with --query: allow a query with no condition, which matches every entity");

  // With --query there is no ID: the data follows the endpoint directly.
  bool by_query = false;
  if (takes_query && method != "find")
    for (int i = 1; i < argc && std::string_view(argv[i]) != "--"; ++i) {
      const std::string_view arg = argv[i];
      by_query = by_query || arg == "--query" || arg.starts_with("--query=");
    }
  if (by_query) positional.erase(std::remove(positional.begin(), positional.end(), "id"), positional.end());
  // The words of this method only, so that a flag of another one (--id on
  // create, --data on get) is refused rather than ignored; not in --help,
  // whose usage line names them.
  for (const auto& word : positional) options.add_options(kPositionalGroup)(word, word, cxxopts::value<std::string>());
  options.parse_positional(positional);

  cxxopts::ParseResult args;
  if (parse_or_help(options, argc, argv, args)) return 0;
  if (!args.unmatched().empty()) {
    // With --query the ID is gone, so an ID given anyway pushes the data one word on.
    if (by_query && takes_data)
      throw UsageError("unexpected argument '" + args.unmatched().front() + "': with --query, give no ID (usage: " +
                       name + " ENDPOINT --query QUERY_JSON JSON|-)");
    throw UsageError("unexpected argument '" + args.unmatched().front() + "' (usage: " + name + " " + help + ")");
  }
  if (!args.count("endpoint")) throw UsageError("missing ENDPOINT (usage: " + name + " " + help + ")");
  std::optional<std::string> id;
  nlohmann::ordered_json data, query;
  if (takes_id && !by_query) {
    if (!args.count("id")) throw UsageError("missing ID (usage: " + name + " " + help + ")");
    id = args["id"].as<std::string>();
  }
  if (takes_data) {
    if (!args.count("data")) throw UsageError("missing JSON data (usage: " + name + " " + help + ")");
    data = parse_json_argument(args["data"].as<std::string>(), "data");
  }
  if (method == "find" && args.count("query_arg")) query = parse_json_argument(args["query_arg"].as<std::string>(), "query");
  if (by_query) query = parse_json_argument(args["query"].as<std::string>(), "--query");
  // As Feathers refuses a multi remove/patch/update unless asked for, a
  // query that would touch every entity of the endpoint needs --all.
  if (by_query && !args.count("all") && !has_condition(query))
    throw UsageError("--query " + query.dump() + " has no condition, so it matches every entity of " +
                         args["endpoint"].as<std::string>() + ": add --all if you mean to " + std::string(method) +
                         " them all");

  Client client({args["broker"].as<std::string>()});
  const auto result = client.call(args["endpoint"].as<std::string>(), method, id, data, query);
  std::cout << json_text(result, args.count("pretty") > 0) << std::endl;
  return 0;
}

}  // namespace mw::cli
