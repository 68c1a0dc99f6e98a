#include "mw/sync.hpp"

#include <poll.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <utility>

#include "mw/error.hpp"
#include "mw/options.hpp"
#include "mw/log.hpp"

namespace mw {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kLogComponent = "sync";
constexpr std::string_view kRecordKind = "sync";
constexpr std::string_view kLastSyncField = "last_sync_at";
// The broker cuts larger $limit values to its own maximum (1000 by default);
// paging by what it returns copes with a smaller one.
constexpr std::size_t kFindPageSize = 1000;

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The entity's id as the endpoint knows it, when it has one.
std::optional<std::string> id_of(const Json& entity) {
  if (!entity.is_object()) return std::nullopt;
  const auto it = entity.find("id");
  if (it == entity.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  return std::nullopt;
}

// Why the checks fail for `entity`; empty when it passes them all.
std::vector<std::string> failures_of(const std::vector<SyncCheck>& checks, const Json& entity) {
  std::vector<std::string> failed;
  for (const auto& check : checks) {
    try {
      if (auto why = check(entity)) failed.push_back(std::move(*why));
    } catch (const std::exception& e) {
      failed.emplace_back(e.what());
    }
  }
  return failed;
}

bool lost_broker(const Error& e) { return e.code() == ErrorCode::Unavailable; }

}  // namespace

class Sync::Impl {
 public:
  explicit Impl(SyncOptions o) : options(std::move(o)) {
    if (options.interval <= std::chrono::milliseconds::zero())
      throw Error("sync: the interval must be positive", ErrorCode::BadRequest);
    if (options.sync_endpoint.empty()) throw Error("sync: the sync endpoint must not be empty", ErrorCode::BadRequest);
    // Now, not at the first pass: a pass counts a refused connection per
    // entity, and would go on refusing it every interval.
    check_broker_address(options.broker);
    if (options.name.empty()) options.name = options.entity_endpoint.empty() ? "sync" : options.entity_endpoint;
    if (!options.now_ms) options.now_ms = system_now_ms;
  }

  Client& client() {
    if (!client_) client_ = std::make_unique<Client>(ClientOptions{options.broker, options.timeout, stop()});
    return *client_;
  }

  // What ends a wait for the broker: run()'s stop while it runs, else the options'.
  const StopSignal* stop() const noexcept { return run_stop ? run_stop : options.stop; }
  void watch(const StopSignal* stop) {
    const StopSignal* before = this->stop();
    run_stop = stop;
    if (this->stop() != before) forget_client();  // made with the other stop
  }

  // A timed-out request may still sit in the socket's queue and reach a
  // broker that comes back: drop the connection so nothing stale is sent.
  void forget_client() { client_.reset(); }

  SyncOptions options;
  FindEntities find;
  FixEntity fix;
  const StopSignal* run_stop = nullptr;  // run()'s, while it runs

 private:
  std::unique_ptr<Client> client_;
};

Sync::Sync(SyncOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Sync::~Sync() = default;
Sync::Sync(Sync&&) noexcept = default;
Sync& Sync::operator=(Sync&&) noexcept = default;

Client& Sync::client() { return impl_->client(); }
const SyncOptions& Sync::options() const noexcept { return impl_->options; }

Sync& Sync::find_with(FindEntities find) {
  impl_->find = std::move(find);
  return *this;
}

Sync& Sync::fix_with(FixEntity fix) {
  impl_->fix = std::move(fix);
  return *this;
}

std::vector<Json> Sync::find_entities_to_sync() {
  if (impl_->find) return impl_->find();
  const auto& o = impl_->options;
  if (o.entity_endpoint.empty())
    throw Error("sync " + o.name + ": no entity endpoint to find entities in; override find_entities_to_sync()",
                ErrorCode::BadRequest);
  const std::int64_t overdue_before = o.now_ms() - o.interval.count();
  // "Never synced or synced too long ago": a missing field reads as null.
  Json query = {{"$or", Json::array({{{kLastSyncField, nullptr}}, {{kLastSyncField, {{"$lt", overdue_before}}}}})}};
  std::vector<Json> entities;
  while (entities.size() < o.max_entities) {
    query["$limit"] = std::min(kFindPageSize, o.max_entities - entities.size());
    query["$skip"] = entities.size();
    const Json page = client().call(o.entity_endpoint, "find", std::nullopt, nullptr, query);
    const auto data = page.find("data");
    if (data == page.end() || !data->is_array() || data->empty()) break;
    for (const auto& entity : *data) entities.push_back(entity);
    const auto total = page.find("total");
    if (total != page.end() && total->is_number_integer() && static_cast<std::int64_t>(entities.size()) >= total->get<std::int64_t>())
      break;
  }
  return entities;
}

Json Sync::fix_entity(const Json& entity) {
  if (impl_->fix) return impl_->fix(entity);
  throw Error("fix_errors is on but fix_entity() is neither overridden nor registered with fix_with()",
              ErrorCode::BadRequest);
}

SyncReport Sync::run_once() {
  auto& o = impl_->options;
  SyncReport report;
  try {
    const std::int64_t now = o.now_ms();
    const auto entities = find_entities_to_sync();
    for (const auto& entity : entities) {
      ++report.checked;
      const auto id = id_of(entity);
      const std::string where = id ? o.entity_endpoint + "/" + *id : entity.dump();
      auto failed = failures_of(o.checks, entity);

      Json stamp = {{kLastSyncField, now}};
      if (!failed.empty()) {
        ++report.failed;
        log(LogLevel::info, kLogComponent, o.name + ": " + where + " failed " + std::to_string(failed.size()) + " check(s): " + failed.front());
        Json record = {{"kind", kRecordKind}, {"name", o.name}};
        if (id) record["entity"] = where;
        else record["value"] = entity;
        record["failed"] = failed;
        record["fixed"] = false;
        if (o.fix_errors) {
          try {
            const Json repaired = fix_entity(entity);
            record["fixed"] = true;
            ++report.fixed;
            if (repaired.is_object())
              for (const auto& [key, value] : repaired.items())
                if (key != "id" && key != "created_at" && key != "updated_at" && key != kLastSyncField) stamp[key] = value;
          } catch (const std::exception& e) {
            record["fix_error"] = e.what();
            report.errors.push_back(where + ": fix failed: " + e.what());
          }
        }
        record["at"] = now;
        // Recorded before the stamp: if the record cannot be written, the
        // entity stays overdue and the next run tries again.
        try {
          client().call(o.sync_endpoint, "create", std::nullopt, record);
        } catch (const Error& e) {
          if (lost_broker(e)) throw;
          report.errors.push_back(where + ": cannot record: " + e.what());
          continue;
        }
      }
      if (id && !o.entity_endpoint.empty()) {
        try {
          client().call(o.entity_endpoint, "patch", *id, stamp);
        } catch (const Error& e) {
          if (lost_broker(e)) throw;
          report.errors.push_back(where + ": cannot stamp " + std::string(kLastSyncField) + ": " + e.what());
        }
      }
    }

    for (const auto& type : o.replay_types) {
      for (const auto& dead : find_dead_jobs(client(), o.sync_endpoint, type, o.replay_limit)) {
        const auto still = failures_of(o.checks, dead.payload);
        if (!still.empty()) continue;  // the cause is still there: replaying would only die again
        try {
          const auto flow = retry_dead_job(client(), o.sync_endpoint, dead.id);
          ++report.replayed;
          log(LogLevel::info, kLogComponent, o.name + ": replayed dead job " + dead.id + " of " + type + " as flow " + std::to_string(flow));
        } catch (const Error& e) {
          if (lost_broker(e)) throw;
          // Conflict: another sync replayed it first; NotFound: removed meanwhile.
          if (e.code() != ErrorCode::Conflict && e.code() != ErrorCode::NotFound)
            report.errors.push_back("dead job " + dead.id + ": cannot replay: " + e.what());
        }
      }
    }
  } catch (const Error& e) {
    if (lost_broker(e)) impl_->forget_client();
    throw;
  }
  log(LogLevel::info, kLogComponent,
      o.name + ": checked " + std::to_string(report.checked) + ", failed " + std::to_string(report.failed) + ", fixed " +
          std::to_string(report.fixed) + ", replayed " + std::to_string(report.replayed) +
          (report.errors.empty() ? "" : ", " + std::to_string(report.errors.size()) + " error(s)"));
  return report;
}

void Sync::run(const StopSignal& stop) {
  const auto interval = impl_->options.interval;
  impl_->watch(&stop);
  struct Unwatch {
    Impl& impl;
    ~Unwatch() { impl.watch(nullptr); }
  } unwatch{*impl_};
  while (!stop.fired()) {
    const auto started = std::chrono::steady_clock::now();
    try {
      const auto report = run_once();
      for (const auto& line : report.errors) log(LogLevel::warn, kLogComponent, impl_->options.name + ": " + line);
    } catch (const Interrupted&) {
      if (stop.fired()) return;  // the stop, in the middle of a call
      throw;
    } catch (const std::exception& e) {
      log(LogLevel::warn, kLogComponent,
          impl_->options.name + ": run failed (tried again every " + std::to_string(interval.count()) + " ms): " + e.what());
    }
    // Until the next run is due; poll() may return early (EINTR), so re-check.
    const auto due = started + interval;
    for (auto now = std::chrono::steady_clock::now(); now < due && !stop.fired(); now = std::chrono::steady_clock::now()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - now).count();
      pollfd item{stop.fd(), POLLIN, 0};
      (void)::poll(&item, 1, static_cast<int>(std::min<std::int64_t>(left, std::numeric_limits<int>::max())));
    }
  }
}

}  // namespace mw
