// mw/broker/job_journal.hpp — the broker's unfinished jobs, kept in the store.
//
// With a durable store every flow's current job is journaled before its
// ACCEPTED leaves (the core sends ACCEPTED after the turn's commit): one row
// per unfinished flow, replaced when the flow moves to its next stage or
// waits for a retry, deleted when the flow is done, dead or cancelled. A broker restarted on the same store reads the
// journal back (BrokerCore::recover) and serves every job again, including
// the ones that were in flight: at-least-once.
//
// The outcome of each flow that ends (as FinishedFlows keeps it) is written
// with the turn's commit, so `mw result` still answers after a restart.
// (A RESULT is sent even when that commit fails, PROTOCOL §6.1; the outcome
// is then written with the next one, unless the broker dies first.)
//
// Writes are buffered for the loop turn and handed to the store in flush(),
// just before the turn's commit: one transaction per turn (group commit),
// and a job added and finished in the same turn never reaches the store.
//
// Thread safety: none; the broker thread owns it.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "mw/broker/finished_flows.hpp"
#include "mw/broker/job.hpp"
#include "mw/broker/store.hpp"

namespace mw::broker {

class JobJournal {
 public:
  // `store` must outlive the journal. A store that is not durable
  // (":memory:") makes every call here a no-op.
  // At most `max_outcomes` outcomes holding `max_outcome_bytes` of results
  // and errors wait for a commit (the newest: what FinishedFlows keeps
  // too), however long commits fail.
  explicit JobJournal(Store& store, std::uint64_t max_outcomes = UINT64_MAX,
                      std::uint64_t max_outcome_bytes = UINT64_MAX)
      : store_(store), enabled_(store.durable()), max_outcomes_(max_outcomes), max_outcome_bytes_(max_outcome_bytes) {}

  bool enabled() const noexcept { return enabled_; }

  // A new flow's first job. `due_at`: wall clock ms before which it must
  // not run, 0 for now.
  void add(const Job& job, std::int64_t due_at);
  // The flow's job changed: its next stage, or a retry's attempts and due time.
  void update(const Job& job, std::int64_t due_at);
  // The flow is over (done, dead or cancelled).
  void remove(std::uint64_t flow_id);
  // Its outcome, as kept (copied: the kept entry may be reused this turn).
  void finished(const FinishedFlow& outcome);
  // A flow whose SUBMIT was undone: its outcome, if it ended this turn, is not written.
  void forget_outcome(std::uint64_t flow_id);

  // Writes what the turn buffered into the store's open transaction. On
  // success call committed(); after a failed commit the buffer is kept and
  // written again next turn (every write is idempotent).
  void flush();
  void committed() noexcept {
    if (!outcomes_.empty()) outcomes_since_trim_ = true;
    ops_.clear();
    outcomes_.clear();
    outcome_bytes_ = 0;
  }

  // Whether outcomes were committed since the last call (true at first, for
  // rows an earlier run left beyond today's limits): the store's outcomes
  // need trimming only then, and a quiet broker skips the scan.
  bool take_outcomes_since_trim() noexcept { return std::exchange(outcomes_since_trim_, false); }
  // The trim failed or its commit did: it is tried again with the next.
  void trim_again() noexcept { outcomes_since_trim_ = true; }

  std::size_t pending() const noexcept { return ops_.size() + outcomes_.size(); }

 private:
  struct Op {
    bool is_delete = false;
    bool fresh = false;  // added this turn: no row exists yet, so a remove cancels it
    StoredJob job;       // without payload
    zmq::message_t payload;  // shares the job's frame (reference-counted)
  };
  void put(const Job& job, std::int64_t due_at, bool fresh);

  Store& store_;
  bool enabled_;
  std::unordered_map<std::uint64_t, Op> ops_;  // by flow id
  std::uint64_t max_outcomes_, max_outcome_bytes_;
  std::vector<FinishedFlow> outcomes_;  // in the order the flows ended
  std::uint64_t outcome_bytes_ = 0;     // their results and errors
  bool outcomes_since_trim_ = true;
};

}  // namespace mw::broker
