#include "actors/backoff.hpp"

#include <algorithm>
#include <stdexcept>

namespace karvon::actors {

namespace {

void check(const backoff_options& o) {
  if (o.base.count() <= 0 || o.cap.count() <= 0)
    throw std::invalid_argument("backoff: base and cap must be positive");
  if (o.max_retry_after.count() < 0)
    throw std::invalid_argument("backoff: max_retry_after must not be "
                                "negative");
}

} // namespace

backoff::backoff(backoff_options options, std::uint64_t seed)
    : options_(options), rng_(seed) {
  check(options_);
}

backoff::backoff(backoff_options options)
    : backoff(options, (std::uint64_t{std::random_device{}()} << 32)
                           ^ std::random_device{}()) {}

std::chrono::nanoseconds backoff::ceiling(int retry) const {
  auto base = options_.base.count();
  auto cap = options_.cap.count();
  if (retry <= 0)
    return std::chrono::nanoseconds{std::min(base, cap)};
  // Doubling past the cap would overflow for large retry counts; stop as
  // soon as the cap is reached.
  auto v = base;
  for (int i = 0; i < retry && v < cap; ++i)
    v = v > cap / 2 ? cap : v * 2;
  return std::chrono::nanoseconds{std::min(v, cap)};
}

std::chrono::nanoseconds
backoff::delay(int retry, std::optional<std::chrono::nanoseconds> retry_after) {
  std::uniform_int_distribution<std::int64_t> pick(0, ceiling(retry).count());
  std::chrono::nanoseconds d{pick(rng_)};
  if (retry_after) {
    auto asked = std::clamp(*retry_after, std::chrono::nanoseconds{0},
                            options_.max_retry_after);
    d = std::max(d, asked);
  }
  return d;
}

} // namespace karvon::actors
