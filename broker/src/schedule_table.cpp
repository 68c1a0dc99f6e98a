#include "mw/broker/schedule_table.hpp"

#include "mw/payload.hpp"
#include "mw/protocol.hpp"

namespace mw::broker {
namespace {

bool is_integer(const Json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

}  // namespace

std::optional<Schedule> Schedule::from_document(const Json& doc, std::string& why) {
  Schedule s;
  if (!doc.is_object() || !doc.contains("id") || !doc["id"].is_string()) {
    why = "has no string id";
    return std::nullopt;
  }
  s.name = doc["id"].get<std::string>();
  const auto type = doc.find("type");
  if (type == doc.end() || !type->is_string()) {
    why = "needs a type, a string";
    return std::nullopt;
  }
  if (auto problem = type_name_problem(type->get<std::string>()); !problem.empty()) {
    why = "has a bad type: " + problem;
    return std::nullopt;
  }
  s.type = type->get<std::string>();
  const auto every = doc.find("every_ms");
  if (every == doc.end() || !is_integer(*every) || every->get<std::int64_t>() < kMinScheduleEveryMs ||
      every->get<std::int64_t>() > static_cast<std::int64_t>(kMaxSubmitDelayMs)) {
    why = "needs every_ms, a whole number from 100";
    return std::nullopt;
  }
  s.every_ms = every->get<std::int64_t>();
  const auto next = doc.find("next_at");
  s.next_at = next != doc.end() && is_integer(*next) ? next->get<std::int64_t>() : 0;
  if (const auto p = doc.find("priority"); p != doc.end() && !p->is_null()) {
    if (!is_integer(*p) || p->get<std::int64_t>() < -kMaxPriority || p->get<std::int64_t>() > kMaxPriority) {
      why = "priority must be a whole number in -1000..1000";
      return std::nullopt;
    }
    s.priority = p->get<std::int32_t>();
  }
  if (const auto m = doc.find("max_attempts"); m != doc.end() && !m->is_null()) {
    if (!is_integer(*m) || m->get<std::int64_t>() < 1 || m->get<std::int64_t>() > 1'000'000) {
      why = "max_attempts must be a whole number from 1";
      return std::nullopt;
    }
    s.max_attempts = m->get<std::uint32_t>();
  }
  s.paused = doc.value("paused", false) == true;
  if (const auto r = doc.find("runs"); r != doc.end() && is_integer(*r)) s.runs = r->get<std::uint64_t>();
  if (const auto k = doc.find("skipped"); k != doc.end() && is_integer(*k)) s.skipped = k->get<std::uint64_t>();
  const auto payload = doc.find("payload");
  s.payload = Payload::from_json(payload == doc.end() ? Json(nullptr) : *payload).bytes();
  return s;
}

std::vector<std::string> ScheduleTable::load(const std::vector<Json>& docs) {
  std::vector<std::string> problems;
  by_name_.clear();
  for (const auto& doc : docs) {
    std::string why;
    auto s = Schedule::from_document(doc, why);
    if (!s) {
      problems.push_back("schedule " + (doc.is_object() ? doc.value("id", Json("?")).dump() : std::string("?")) +
                         " ignored: it " + why);
      continue;
    }
    by_name_.insert_or_assign(s->name, std::move(*s));
  }
  return problems;
}

std::vector<Schedule*> ScheduleTable::due(std::int64_t wall_now) {
  std::vector<Schedule*> out;
  for (auto& [name, s] : by_name_) {
    if (s.paused || s.next_at > wall_now) continue;
    // One run now; runs missed while the broker was down are not made up.
    s.next_at += s.every_ms;
    if (s.next_at <= wall_now) s.next_at = wall_now + s.every_ms;
    out.push_back(&s);
  }
  return out;
}

std::optional<std::int64_t> ScheduleTable::next_due() const {
  std::optional<std::int64_t> next;
  for (const auto& [name, s] : by_name_)
    if (!s.paused && (!next || s.next_at < *next)) next = s.next_at;
  return next;
}

}  // namespace mw::broker
