#include "mw/dead_jobs.hpp"

#include <chrono>
#include <optional>
#include <type_traits>

#include "mw/error.hpp"
#include "mw/payload.hpp"
#include "mw/protocol.hpp"

namespace mw {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kDeadKind = "dead";
// A replay's idempotency key: a second replay of the same record while the
// first one's flow runs (two operators racing) gets that flow back instead
// of a duplicate job.
constexpr std::string_view kReplayKeyPrefix = "mw-replay/";

[[noreturn]] void not_a_record(const std::string& why) {
  throw Error("not a dead-job record: " + why, ErrorCode::BadRequest);
}

// The record's `field` when present and not null.
const Json* field_of(const Json& record, const char* field) {
  auto it = record.find(field);
  return it == record.end() || it->is_null() ? nullptr : &*it;
}

std::string string_field(const Json& record, const char* field, bool required) {
  const Json* v = field_of(record, field);
  if (!v) {
    if (required) not_a_record(std::string("no '") + field + "'");
    return {};
  }
  if (!v->is_string()) not_a_record(std::string("'") + field + "' is not a string");
  return v->get<std::string>();
}

// Numbers the broker wrote; a missing one reads as 0.
template <typename Int>
Int integer_field(const Json& record, const char* field) {
  const Json* v = field_of(record, field);
  if (!v) return 0;
  if (!v->is_number_integer()) not_a_record(std::string("'") + field + "' is not an integer");
  if constexpr (std::is_unsigned_v<Int>) {
    if (v->is_number_unsigned()) return v->get<Int>();
    if (v->get<std::int64_t>() < 0) not_a_record(std::string("'") + field + "' is negative");
  }
  return v->get<Int>();
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

DeadJob DeadJob::from_record(const nlohmann::ordered_json& record) {
  if (!record.is_object()) not_a_record("not a JSON object");
  DeadJob dead;
  dead.id = string_field(record, "id", true);
  if (const std::string kind = string_field(record, "kind", true); kind != kDeadKind)
    not_a_record("'" + dead.id + "' has kind '" + kind + "', not 'dead'");
  dead.type = string_field(record, "type", true);
  if (dead.type.empty()) not_a_record("'" + dead.id + "' has an empty type");
  dead.flow_id = integer_field<std::uint64_t>(record, "flow");
  dead.job_id = integer_field<std::uint64_t>(record, "job");
  if (auto it = record.find("payload"); it != record.end()) dead.payload = *it;
  dead.error = string_field(record, "error", false);
  dead.attempts = integer_field<std::uint32_t>(record, "attempts");
  dead.entity = string_field(record, "entity", false);
  dead.died_at_ms = integer_field<std::int64_t>(record, "died_at");
  if (const Json* retried = field_of(record, "retried")) {
    if (!retried->is_boolean()) not_a_record("'" + dead.id + "': 'retried' is not a boolean");
    dead.retried = retried->get<bool>();
  }
  dead.retried_as = integer_field<std::uint64_t>(record, "retried_as");
  return dead;
}

std::vector<DeadJob> find_dead_jobs(Client& client, std::string_view sync_endpoint, std::string_view type,
                                    std::size_t limit) {
  Json query = {{"kind", kDeadKind}, {"retried", false}};
  if (!type.empty()) query["type"] = type;
  query["$sort"] = {{"died_at", 1}};

  // The broker caps a page at its --page-max: ask for the rest until there
  // is no more or we have `limit`.
  std::vector<DeadJob> found;
  while (found.size() < limit) {
    query["$limit"] = limit - found.size();
    query["$skip"] = found.size();
    const Json page = client.call(sync_endpoint, "find", std::nullopt, nullptr, query);
    const Json& data = page.at("data");
    for (const auto& record : data) {
      if (found.size() == limit) break;
      found.push_back(DeadJob::from_record(record));
    }
    const auto total = page.value("total", std::uint64_t{0});
    if (data.empty() || found.size() >= total) break;
  }
  return found;
}

std::uint64_t retry_dead_job(Client& client, std::string_view sync_endpoint, const std::string& record_id) {
  return retry_dead_job(client, sync_endpoint, DeadJob::from_record(client.call(sync_endpoint, "get", record_id)));
}

std::uint64_t retry_dead_job(Client& client, std::string_view sync_endpoint, const DeadJob& dead) {
  const std::string& record_id = dead.id;
  if (dead.retried)
    throw Error("dead job '" + record_id + "' was replayed already as flow " + std::to_string(dead.retried_as),
                ErrorCode::Conflict);

  SubmitOptions options;
  options.entity = dead.entity;
  std::string key = std::string(kReplayKeyPrefix) + record_id;
  if (key.size() <= kMaxKeyBytes) options.key = std::move(key);
  const std::uint64_t flow = client.submit(dead.type, Payload::from_json(dead.payload), options);

  // Marked only after the submit succeeded: a failed submit leaves the
  // record to be replayed again, never a job that is neither dead nor queued.
  client.call(sync_endpoint, "patch", record_id, Json{{"retried", true}, {"retried_as", flow}, {"retried_at", now_ms()}});
  return flow;
}

}  // namespace mw
