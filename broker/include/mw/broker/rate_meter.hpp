// mw/broker/rate_meter.hpp — events per second over the last few seconds.
#pragma once

#include <array>
#include <cstdint>

namespace mw::broker {

// Counts events into one-second buckets and reports the mean of the last
// kWindowSeconds complete seconds. O(1) per event, no allocation.
class RateMeter {
 public:
  static constexpr int kWindowSeconds = 5;

  void add(std::int64_t now_ms, std::uint64_t n = 1) noexcept {
    advance(now_ms);
    buckets_[static_cast<std::size_t>(current_second_ % kBuckets)] += n;
  }

  double per_second(std::int64_t now_ms) noexcept {
    advance(now_ms);
    std::uint64_t sum = 0;
    for (int k = 1; k <= kWindowSeconds; ++k)
      sum += buckets_[static_cast<std::size_t>((current_second_ - k + kBuckets) % kBuckets)];
    return static_cast<double>(sum) / kWindowSeconds;
  }

 private:
  static constexpr std::int64_t kBuckets = kWindowSeconds + 1;

  void advance(std::int64_t now_ms) noexcept {
    const std::int64_t second = now_ms / 1000;
    if (second <= current_second_) return;
    const std::int64_t gap = second - current_second_;
    for (std::int64_t s = 1; s <= gap && s <= kBuckets; ++s)
      buckets_[static_cast<std::size_t>((current_second_ + s) % kBuckets)] = 0;
    current_second_ = second;
  }

  std::array<std::uint64_t, kBuckets> buckets_{};
  std::int64_t current_second_ = 0;
};

}  // namespace mw::broker
