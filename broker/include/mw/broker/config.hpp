// mw/broker/config.hpp — everything that tunes a broker, with its default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "mw/broker/type_rates.hpp"
#include "mw/protocol.hpp"

namespace mw::broker {

struct BrokerConfig {
  // Interval of heartbeats in both directions. A peer silent for
  // heartbeat_ms × liveness is dropped and its jobs in flight are requeued.
  std::uint32_t heartbeat_ms = kDefaultHeartbeatMs;
  std::uint32_t liveness = kHeartbeatLiveness;

  // Largest message accepted (sets ZMQ_MAXMSGSIZE too: bigger ones never
  // reach the core, zmq drops the connection).
  std::size_t max_message_bytes = kDefaultMaxMessageBytes;

  // Retries of a FAILed job wait retry_base_ms × 2^(attempt−1), capped at
  // retry_max_ms, with ±25 % jitter so a burst of failures does not retry in
  // lockstep.
  std::uint32_t retry_base_ms = 200;
  std::uint32_t retry_max_ms = 60'000;
  std::uint32_t default_max_attempts = kDefaultMaxAttempts;
  // Per job type, overriding default_max_attempts (a SUBMIT's own value
  // still wins).
  std::map<std::string, std::uint32_t, std::less<>> type_max_attempts;

  // How long a worker may hold one job before the broker takes it back and
  // requeues it (the worker is presumed stuck); a late DONE is then ignored.
  // Per type below; a SUBMIT's own lease wins over both.
  // One hour by default, like Celery's visibility timeout: longer than
  // most jobs, short enough that a stuck one is retried the same day.
  std::uint64_t lease_ms = 3'600'000;
  std::map<std::string, std::uint64_t, std::less<>> type_lease_ms;

  // How much may wait, so that a producer faster than its workers for
  // long enough fills neither memory nor disk: jobs queued for a worker or
  // delayed (retries, delayed SUBMITs), and their payload bytes. A SUBMIT
  // that would go beyond either is refused with ERROR 507; jobs already
  // in the broker (the next stage of a flow, a retry, a job handed back, a
  // recovered one) are never refused. 0: no limit. Ten million jobs of 100
  // bytes take about 3 GB; the bytes cap the case of large payloads.
  std::uint64_t max_waiting_jobs = 10'000'000;
  std::uint64_t max_waiting_bytes = std::uint64_t{4} << 30;
  // The same per job type: at most this many jobs of one type may wait, so
  // that a type whose workers fell behind (or were never started) cannot
  // take the whole of max_waiting_jobs from the others. type_max_waiting
  // overrides the default for the types it names; 0: no limit.
  std::uint64_t max_waiting_per_type = 0;
  std::map<std::string, std::uint64_t, std::less<>> type_max_waiting;

  // Per job type: at most `max` jobs given to workers per `period_ms`
  // (TypeRates); the others wait in their queue. Unlisted types: no limit.
  std::map<std::string, TypeRate, std::less<>> type_rates;

  // How many stages one flow may pass through. A DONE whose next stage
  // would be beyond it ends the flow dead instead: a worker whose --next
  // (or nextWorkerType) leads back to an earlier stage would otherwise loop
  // forever. 1..kMaxStagesLimit.
  std::uint32_t max_stages = 100;
  static constexpr std::uint32_t kMaxStagesLimit = 10'000;

  // How many ended flows' outcomes are kept, newest first, for WAIT and
  // $flows get (mw result) to find after the RESULT went out, and how many
  // bytes of results they may hold between them (FinishedFlows). 0 for
  // either keeps none. A durable store keeps them too, across restarts.
  std::uint64_t keep_results = 10'000;
  std::uint64_t keep_results_bytes = std::uint64_t{64} << 20;

  // The entity endpoint that receives dead-job records (mw dead, mw::Sync).
  std::string sync_endpoint = "sync";
  // The entity endpoint whose documents are periodic jobs (mw schedule).
  std::string schedule_endpoint = "schedules";

  // Told to peers in WELCOME; the address listeners SUBscribe to.
  std::string pub_address = std::string(kDefaultPubAddress);

  // Shown in status: ":memory:" or the store's path.
  std::string store = ":memory:";
};

}  // namespace mw::broker
