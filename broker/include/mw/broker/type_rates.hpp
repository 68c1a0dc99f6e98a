// mw/broker/type_rates.hpp — at most N jobs of a type started per period.
//
// Workers that call a rate-limited service (an API that allows 10 calls a
// second) need the broker to hand out that type's jobs no faster, however
// many workers are free. Each limited type keeps the times of its last N
// starts: a job of the type is given to a worker only if fewer than N
// started within the last period (a sliding window: no period of that
// length, wherever it begins, sees more than N starts), else it waits in
// its queue until the oldest of those starts is a period old.
//
//   TypeRates rates({{"fetch", {10, 1000}}});  // 10 in any second
//   if (rates.try_take("fetch", now_ms)) give(...); else wake at rates.next_room_ms("fetch", now_ms)
//
// A start is a JOB handed to a worker, deliveries again included (a retry
// or a requeued job counts again); one that never left (the send failed)
// is given back with refund(). A restart starts every window afresh.
//
// Thread safety: none; the broker thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mw::broker {

struct TypeRate {
  std::uint32_t max = 0;       // starts per period, at most kMaxPerPeriod
  std::uint64_t period_ms = 0;
  // The window keeps one time per start: this bounds its memory (800 KB).
  static constexpr std::uint32_t kMaxPerPeriod = 100'000;
};

class TypeRates {
 public:
  TypeRates() = default;
  // Limits with max or period 0 are ignored; max is capped at kMaxPerPeriod.
  explicit TypeRates(const std::map<std::string, TypeRate, std::less<>>& limits);

  // Whether any type is limited: the hot path asks this first.
  bool any() const noexcept { return !windows_.empty(); }

  // Counts a start of `type` now if its window has room (an unlimited type
  // always has).
  bool try_take(std::string_view type, std::int64_t now_ms);

  // Gives back the newest start of `type`: its job never reached a worker.
  void refund(std::string_view type);

  // When `type` next has room; nullopt when it is not limited.
  std::optional<std::int64_t> next_room_ms(std::string_view type, std::int64_t now_ms);

  // The limit of `type`, or nullptr.
  const TypeRate* limit(std::string_view type) const;

  // Every limited type and its limit, for status.
  void for_each(const std::function<void(const std::string&, const TypeRate&)>& visit) const;

 private:
  struct Window {
    TypeRate rate;
    std::deque<std::int64_t> starts;  // oldest first; at most rate.max
  };
  static void expire(Window& w, std::int64_t now_ms);

  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Window, Hash, std::equal_to<>> windows_;
};

}  // namespace mw::broker
