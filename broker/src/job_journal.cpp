#include "mw/broker/job_journal.hpp"

namespace mw::broker {

void JobJournal::add(const Job& job, std::int64_t due_at) {
  if (enabled_) put(job, due_at, /*fresh=*/true);
}

void JobJournal::update(const Job& job, std::int64_t due_at) {
  if (enabled_) put(job, due_at, /*fresh=*/false);
}

void JobJournal::put(const Job& job, std::int64_t due_at, bool fresh) {
  auto [it, inserted] = ops_.try_emplace(job.flow_id);
  Op& op = it->second;
  // An update of a job added this turn is still an insert of a new row.
  op.fresh = inserted ? fresh : (op.fresh && !op.is_delete);
  op.is_delete = false;
  StoredJob& s = op.job;
  s.id = job.id;
  s.flow_id = job.flow_id;
  s.type = job.type;
  s.attempts = job.attempts;
  s.max_attempts = job.max_attempts;
  s.priority = job.priority;
  s.stage = job.stage;
  s.lease_ms = job.lease_ms;
  s.due_at = due_at;
  s.submitted_at = job.submitted_at;
  s.key = job.key;
  s.entity = job.entity;
  op.payload.copy(const_cast<zmq::message_t&>(job.payload));
}

void JobJournal::remove(std::uint64_t flow_id) {
  if (!enabled_) return;
  auto [it, inserted] = ops_.try_emplace(flow_id);
  if (!inserted && it->second.fresh) {
    ops_.erase(it);  // never written: nothing to delete
    return;
  }
  it->second.is_delete = true;
  it->second.fresh = false;
  it->second.job.flow_id = flow_id;
  it->second.payload.rebuild();
}

void JobJournal::finished(const FinishedFlow& outcome) {
  if (!enabled_) return;
  outcomes_.push_back(outcome);
  outcome_bytes_ += outcome.bytes();
  // Commits failing for long: the oldest go, as they would from the ring.
  std::size_t drop = 0;
  while (drop < outcomes_.size() && (outcomes_.size() - drop > max_outcomes_ || outcome_bytes_ > max_outcome_bytes_))
    outcome_bytes_ -= outcomes_[drop++].bytes();
  if (drop) outcomes_.erase(outcomes_.begin(), outcomes_.begin() + static_cast<std::ptrdiff_t>(drop));
}

void JobJournal::forget_outcome(std::uint64_t flow_id) {
  std::erase_if(outcomes_, [&](const FinishedFlow& f) {
    if (f.flow_id != flow_id) return false;
    outcome_bytes_ -= f.bytes();
    return true;
  });
}

void JobJournal::flush() {
  if (ops_.empty() && outcomes_.empty()) return;
  store_.begin();
  if (!outcomes_.empty()) store_.put_outcomes(outcomes_);
  for (const auto& [flow_id, op] : ops_) {
    if (op.is_delete) {
      store_.delete_job(flow_id);
    } else {
      store_.put_job(op.job, std::string_view(op.payload.data<char>(), op.payload.size()));
    }
  }
}

}  // namespace mw::broker
