// mw/broker/type_rates.hpp — at most N jobs of a type started per period.
//
// Workers that call a rate-limited service (an API that allows 10 calls a
// second) need the broker to hand out that type's jobs no faster, however
// many workers are free: BullMQ's limiter {max, duration}. Each limited
// type has a token bucket holding up to `max` tokens, refilled at
// max / period; a job of the type is given to a worker only with a token,
// else it waits in its queue until one is due.
//
//   TypeRates rates({{"fetch", {10, 1000}}});  // 10 per second, bursts of 10
//   if (rates.try_take("fetch", now_ms)) give(...); else wake at rates.next_token_ms("fetch")
//
// Tokens count jobs given to workers, deliveries again included (a retry or
// a requeued job takes one more).
//
// Thread safety: none; the broker thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mw::broker {

struct TypeRate {
  std::uint32_t max = 0;       // jobs per period (and the largest burst)
  std::uint64_t period_ms = 0;
};

class TypeRates {
 public:
  TypeRates() = default;
  explicit TypeRates(const std::map<std::string, TypeRate, std::less<>>& limits);

  // Whether any type is limited: the hot path asks this first.
  bool any() const noexcept { return !buckets_.empty(); }

  // Takes a token of `type` if it has one (an unlimited type always does).
  // A bucket starts full.
  bool try_take(std::string_view type, std::int64_t now_ms);

  // When `type` next has a token; nullopt when it is not limited.
  std::optional<std::int64_t> next_token_ms(std::string_view type, std::int64_t now_ms) const;

  // The limit of `type`, or nullptr.
  const TypeRate* limit(std::string_view type) const;

 private:
  struct Bucket {
    TypeRate rate;
    double tokens = 0;
    std::int64_t refilled_ms = -1;  // -1: never used, full
  };
  static void refill(Bucket& b, std::int64_t now_ms);

  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Bucket, Hash, std::equal_to<>> buckets_;
};

}  // namespace mw::broker
