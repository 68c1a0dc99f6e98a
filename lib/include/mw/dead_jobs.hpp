// mw/dead_jobs.hpp — read and replay the jobs the broker gave up on.
//
// A job that exhausts its attempts, or fails with a non-retryable error, is
// dead: the broker writes a record of it to the sync endpoint (default
// "sync", broker option --sync-endpoint) and publishes `sync.created`.
// The record is an ordinary entity:
//
//   {"id": "dead-<job id>", "kind": "dead", "type": "resize", "flow": 17,
//    "job": 18, "payload": <the stage's input, as JSON>, "error": "…",
//    "attempts": 5, "entity": "orders/o1" (only when the job had one),
//    "died_at": <ms since epoch>, "retried": false,
//    "created_at": …, "updated_at": …}
//
// Replaying submits a new flow of the same type, payload and entity, then
// patches the record {"retried": true, "retried_as": <new flow id>,
// "retried_at": <ms>}, so a record is replayed once.
//
//   mw::Client client;
//   for (const auto& dead : mw::find_dead_jobs(client, "sync", "resize", 100))
//     mw::retry_dead_job(client, "sync", dead.id);
//
// The payload goes through JSON on its way into the record: msgpack bin and
// ext values come back as what JSON made of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mw/client.hpp"

namespace mw {

inline constexpr std::string_view kDefaultSyncEndpoint = "sync";

struct DeadJob {
  std::string id;  // the record's id in the sync endpoint
  std::string type;
  std::uint64_t flow_id = 0;
  std::uint64_t job_id = 0;
  nlohmann::ordered_json payload;
  std::string error;
  std::uint32_t attempts = 0;
  std::string entity;  // "endpoint/id" or empty
  std::int64_t died_at_ms = 0;
  bool retried = false;
  std::uint64_t retried_as = 0;  // the replay's flow id, when retried

  // Reads a record as stored; throws mw::Error(BadRequest) when `record`
  // is not a dead-job record.
  static DeadJob from_record(const nlohmann::ordered_json& record);
};

// Dead records of `type` (every type when empty) that were not replayed yet,
// oldest first, at most `limit`. Throws mw::Error as Client::call does.
std::vector<DeadJob> find_dead_jobs(Client& client, std::string_view sync_endpoint, std::string_view type,
                                    std::size_t limit);

// Submits the dead job again (same type, payload and entity) and marks its
// record replayed. Returns the new flow id. Throws mw::Error: NotFound for
// no such record, Conflict when it was replayed already, BadRequest when
// the record is not a dead job.
std::uint64_t retry_dead_job(Client& client, std::string_view sync_endpoint, const std::string& record_id);

// The same for a record read a moment ago (one round trip fewer). What it
// says is trusted: Conflict only if `dead.retried`.
std::uint64_t retry_dead_job(Client& client, std::string_view sync_endpoint, const DeadJob& dead);

}  // namespace mw
