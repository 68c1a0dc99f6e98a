// mw/broker/job.hpp — one dispatchable unit of work as the broker holds it.
#pragma once

#include <cstdint>
#include <string>

#include <zmq.hpp>

namespace mw::broker {

// A flow is what a client submitted; each pipeline stage of it is a Job with
// its own id and the flow's id. The payload is the frame as it arrived,
// moved from socket to queue to socket without being copied or decoded.
struct Job {
  std::uint64_t id = 0;
  std::uint64_t flow_id = 0;
  std::string type;
  std::uint32_t attempts = 0;  // deliveries so far of this stage
  std::uint32_t max_attempts = 0;
  zmq::message_t payload;
  std::string reply_to;         // routing id of a submitter that waits; empty if none
  std::int64_t enqueued_ms = 0;  // when it last entered a queue (for oldest-age in status)
  std::string entity;           // "endpoint/id" or empty
};

}  // namespace mw::broker
