#include "mw/broker/worker_registry.hpp"

#include <algorithm>

namespace mw::broker {

WorkerEntry& WorkerRegistry::upsert(WorkerEntry entry) {
  forget_recent();
  auto it = by_id_.find(entry.id);
  if (it != by_id_.end()) {
    unindex(*it->second);
    entry.jobs = std::move(it->second->jobs);
    entry.progress = std::move(it->second->progress);
    entry.done = it->second->done;
    entry.expired = std::move(it->second->expired);
    *it->second = std::move(entry);
  } else {
    auto id = entry.id;
    it = by_id_.emplace(std::move(id), std::make_unique<WorkerEntry>(std::move(entry))).first;
  }
  WorkerEntry* stored = it->second.get();
  for (const auto& type : stored->types) {
    auto t = by_type_.find(type);
    if (t == by_type_.end()) t = by_type_.emplace(type, TypeIndex{}).first;
    t->second.workers.push_back(stored);
  }
  return *stored;
}

void WorkerRegistry::unindex(WorkerEntry& entry) {
  for (const auto& type : entry.types) {
    auto t = by_type_.find(type);
    if (t == by_type_.end()) continue;
    auto& list = t->second.workers;
    list.erase(std::remove(list.begin(), list.end(), &entry), list.end());
    if (list.empty()) by_type_.erase(t);
  }
}

std::optional<WorkerEntry> WorkerRegistry::remove(std::string_view id) {
  forget_recent();
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  unindex(*it->second);
  WorkerEntry entry = std::move(*it->second);
  by_id_.erase(it);
  return entry;
}

WorkerEntry* WorkerRegistry::find(std::string_view id) noexcept {
  if (recent_worker_ && recent_worker_->id == id) return recent_worker_;
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  return recent_worker_ = it->second.get();
}

WorkerEntry* WorkerRegistry::least_loaded(std::string_view type) noexcept {
  if (!recent_type_ || recent_type_->first != type) {
    auto t = by_type_.find(type);
    if (t == by_type_.end()) return nullptr;
    recent_type_ = &*t;
  }
  auto& index = recent_type_->second;
  const std::size_t n = index.workers.size();
  WorkerEntry* best = nullptr;
  std::size_t best_at = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (index.cursor + k) % n;
    WorkerEntry* w = index.workers[i];
    if (!w->has_free_credit()) continue;
    // Compare load ratios jobs/credit without division.
    if (!best || w->load() * best->credit < best->load() * w->credit) {
      best = w;
      best_at = i;
    }
  }
  if (best) index.cursor = (best_at + 1) % n;
  return best;
}

std::size_t WorkerRegistry::count(std::string_view type) const noexcept {
  auto t = by_type_.find(type);
  return t == by_type_.end() ? 0 : t->second.workers.size();
}

std::vector<const WorkerEntry*> WorkerRegistry::all() const {
  std::vector<const WorkerEntry*> out;
  out.reserve(by_id_.size());
  for (const auto& [id, w] : by_id_) out.push_back(w.get());
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->id < b->id; });
  return out;
}

std::vector<std::string> WorkerRegistry::types() const {
  std::vector<std::string> out;
  for (const auto& [type, index] : by_type_) out.push_back(type);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace mw::broker
