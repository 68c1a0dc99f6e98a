#include "mw/broker/type_rates.hpp"

#include <algorithm>

namespace mw::broker {

TypeRates::TypeRates(const std::map<std::string, TypeRate, std::less<>>& limits) {
  for (auto [type, rate] : limits) {
    if (rate.max == 0 || rate.period_ms == 0) continue;
    rate.max = std::min(rate.max, TypeRate::kMaxPerPeriod);
    windows_.emplace(type, Window{rate, {}});
  }
}

void TypeRates::expire(Window& w, std::int64_t now_ms) {
  const auto period = static_cast<std::int64_t>(w.rate.period_ms);
  while (!w.starts.empty() && w.starts.front() + period <= now_ms) w.starts.pop_front();
}

bool TypeRates::try_take(std::string_view type, std::int64_t now_ms) {
  const auto it = windows_.find(type);
  if (it == windows_.end()) return true;
  Window& w = it->second;
  expire(w, now_ms);
  if (w.starts.size() >= w.rate.max) return false;
  w.starts.push_back(now_ms);
  return true;
}

void TypeRates::refund(std::string_view type) {
  const auto it = windows_.find(type);
  if (it != windows_.end() && !it->second.starts.empty()) it->second.starts.pop_back();
}

std::optional<std::int64_t> TypeRates::next_room_ms(std::string_view type, std::int64_t now_ms) {
  const auto it = windows_.find(type);
  if (it == windows_.end()) return std::nullopt;
  Window& w = it->second;
  expire(w, now_ms);
  if (w.starts.size() < w.rate.max) return now_ms;
  return w.starts.front() + static_cast<std::int64_t>(w.rate.period_ms);
}

const TypeRate* TypeRates::limit(std::string_view type) const {
  const auto it = windows_.find(type);
  return it == windows_.end() ? nullptr : &it->second.rate;
}

void TypeRates::for_each(const std::function<void(const std::string&, const TypeRate&)>& visit) const {
  for (const auto& [type, w] : windows_) visit(type, w.rate);
}

}  // namespace mw::broker
