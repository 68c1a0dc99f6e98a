// mw/broker/job.hpp — one dispatchable unit of work as the broker holds it.
#pragma once

#include <cstdint>
#include <string>

#include <zmq.hpp>

namespace mw::broker {

// A flow is what a client submitted; each pipeline stage of it is a Job with
// its own id and the flow's id. The payload is the frame as it arrived,
// moved from socket to queue to socket without being copied or decoded.
// Later stages inherit the flow's options (max attempts, priority, lease,
// key, entity).
struct Job {
  std::uint64_t id = 0;
  std::uint64_t flow_id = 0;
  std::string type;
  std::uint32_t attempts = 0;  // deliveries so far of this stage
  std::uint32_t max_attempts = 0;
  std::int32_t priority = 0;   // higher first within a type
  std::uint32_t stage = 0;     // this job's place in its flow: 0 for the first stage (bounded by max_stages)
  std::uint64_t lease_ms = 0;  // 0: the type's or the broker's default
  zmq::message_t payload;
  std::string reply_to;         // routing id of a submitter that waits; empty if none
  std::int64_t enqueued_ms = 0;  // when it last entered a queue (for oldest-age in status)
  std::int64_t dispatched_ms = 0;  // when its current holder got it (lease clock)
  std::int64_t due_ms = 0;         // while delayed: when it is due (steady clock)
  std::int64_t submitted_at = 0;   // wall clock ms of the flow's SUBMIT (dead records)
  std::string entity;           // "endpoint/id" or empty
  std::string key;              // the flow's idempotency key, or empty
};

}  // namespace mw::broker
