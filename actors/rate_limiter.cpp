#include "actors/rate_limiter.hpp"

#include <algorithm>
#include <array>
#include <mutex>
#include <unordered_map>

#include "actors/token_bucket.hpp"

namespace karvon::actors {

std::vector<rate_band> per_minute_with_burst(double per_minute,
                                             double burst_per_second) {
  return {{per_minute, per_minute / 60.0},
          {burst_per_second, burst_per_second}};
}

namespace {

constexpr std::size_t shard_count = 32;

struct entry {
  std::vector<token_bucket> buckets;
  clock::time_point last_seen;
};

struct shard {
  std::mutex mutex;
  std::unordered_map<std::string, entry> entries;
};

} // namespace

struct rate_limiter::impl {
  std::vector<rate_band> bands;
  const clock* clk;
  std::size_t max_per_shard;
  std::array<shard, shard_count> shards;

  // Called with the shard locked when it is over its share of max_keys.
  void evict(shard& s) {
    for (auto it = s.entries.begin(); it != s.entries.end();) {
      bool idle
          = std::all_of(it->second.buckets.begin(), it->second.buckets.end(),
                        [](const token_bucket& b) { return b.full(); });
      it = idle ? s.entries.erase(it) : std::next(it);
    }
    if (s.entries.size() < max_per_shard)
      return;
    // Every key is busy: forget the least recently seen half. Those keys
    // start again with full buckets, the price of bounded memory.
    std::vector<std::pair<clock::time_point, std::string>> by_age;
    by_age.reserve(s.entries.size());
    for (auto& [k, e] : s.entries)
      by_age.emplace_back(e.last_seen, k);
    auto half = by_age.begin() + static_cast<std::ptrdiff_t>(by_age.size() / 2);
    std::nth_element(by_age.begin(), half, by_age.end());
    for (auto it = by_age.begin(); it != half; ++it)
      s.entries.erase(it->second);
  }
};

rate_limiter::rate_limiter(std::vector<rate_band> bands, const clock& c,
                           std::size_t max_keys)
    : impl_(std::make_unique<impl>()) {
  impl_->bands = std::move(bands);
  impl_->clk = &c;
  impl_->max_per_shard = std::max<std::size_t>(1, max_keys / shard_count);
}

rate_limiter::~rate_limiter() = default;

rate_decision rate_limiter::take(std::string_view key) {
  auto& s = impl_->shards[std::hash<std::string_view>{}(key) % shard_count];
  std::lock_guard lock{s.mutex};
  auto it = s.entries.find(std::string{key});
  if (it == s.entries.end()) {
    if (s.entries.size() >= impl_->max_per_shard)
      impl_->evict(s);
    entry e;
    for (auto& band : impl_->bands)
      e.buckets.emplace_back(band.capacity, band.per_second, *impl_->clk);
    it = s.entries.emplace(std::string{key}, std::move(e)).first;
  }
  auto& e = it->second;
  e.last_seen = impl_->clk->now();
  std::chrono::nanoseconds wait{0};
  for (auto& b : e.buckets)
    wait = std::max(wait, b.time_until(1));
  if (wait.count() > 0) {
    auto seconds = std::chrono::ceil<std::chrono::seconds>(wait);
    return {false, std::max(seconds, std::chrono::seconds{1})};
  }
  for (auto& b : e.buckets)
    b.try_take(1);
  return {};
}

std::size_t rate_limiter::size() const {
  std::size_t n = 0;
  for (auto& s : impl_->shards) {
    std::lock_guard lock{s.mutex};
    n += s.entries.size();
  }
  return n;
}

} // namespace karvon::actors
