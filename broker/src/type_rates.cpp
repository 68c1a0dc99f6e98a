#include "mw/broker/type_rates.hpp"

#include <algorithm>
#include <cmath>

namespace mw::broker {

TypeRates::TypeRates(const std::map<std::string, TypeRate, std::less<>>& limits) {
  for (const auto& [type, rate] : limits)
    if (rate.max > 0 && rate.period_ms > 0) buckets_.emplace(type, Bucket{rate, static_cast<double>(rate.max), -1});
}

void TypeRates::refill(Bucket& b, std::int64_t now_ms) {
  if (b.refilled_ms < 0 || now_ms <= b.refilled_ms) {
    if (b.refilled_ms < 0) b.refilled_ms = now_ms;
    return;
  }
  const double per_ms = static_cast<double>(b.rate.max) / static_cast<double>(b.rate.period_ms);
  b.tokens = std::min<double>(b.rate.max, b.tokens + static_cast<double>(now_ms - b.refilled_ms) * per_ms);
  b.refilled_ms = now_ms;
}

bool TypeRates::try_take(std::string_view type, std::int64_t now_ms) {
  const auto it = buckets_.find(type);
  if (it == buckets_.end()) return true;
  Bucket& b = it->second;
  refill(b, now_ms);
  // A hair below 1 counts as 1: the clock is in whole ms, and the refill
  // of a token due at this very ms may come out as 0.9999….
  if (b.tokens < 1 - 1e-9) return false;
  b.tokens = std::max(0.0, b.tokens - 1);
  return true;
}

std::optional<std::int64_t> TypeRates::next_token_ms(std::string_view type, std::int64_t now_ms) const {
  const auto it = buckets_.find(type);
  if (it == buckets_.end()) return std::nullopt;
  Bucket b = it->second;
  refill(b, now_ms);
  if (b.tokens >= 1 - 1e-9) return now_ms;
  const double per_ms = static_cast<double>(b.rate.max) / static_cast<double>(b.rate.period_ms);
  return now_ms + static_cast<std::int64_t>(std::ceil((1 - b.tokens) / per_ms));
}

const TypeRate* TypeRates::limit(std::string_view type) const {
  const auto it = buckets_.find(type);
  return it == buckets_.end() ? nullptr : &it->second.rate;
}

}  // namespace mw::broker
