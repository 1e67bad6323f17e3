// Delays between attempts of a failed call: exponential backoff with "full
// jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015):
// the n-th retry sleeps a uniform random time in [0, min(cap, base * 2^n)].
// Spreading retries over the whole interval keeps clients that failed
// together from retrying together.
//
// A service that says how long to wait (HTTP Retry-After, Telegram's
// retry_after) is obeyed: the delay is then at least that long, but never
// more than max_retry_after, so a service asking for hours cannot park a
// job for hours.
//
// Not thread-safe: owned by one actor.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>

namespace karvon::actors {

struct backoff_options {
  std::chrono::nanoseconds base{std::chrono::milliseconds{100}};
  std::chrono::nanoseconds cap{std::chrono::seconds{30}};
  std::chrono::nanoseconds max_retry_after{std::chrono::minutes{5}};
};

class backoff {
public:
  /// Throws std::invalid_argument when base or cap is not positive or
  /// max_retry_after is negative. The same seed gives the same delays.
  backoff(backoff_options options, std::uint64_t seed);

  /// Seeded from std::random_device, for production.
  explicit backoff(backoff_options options);

  /// min(cap, base * 2^retry): the longest delay of retry `retry` (0 for
  /// the first retry, after the first failure). Never overflows.
  std::chrono::nanoseconds ceiling(int retry) const;

  /// The delay before retry `retry`: uniform in [0, ceiling(retry)], and at
  /// least min(retry_after, max_retry_after) when the service gave one.
  std::chrono::nanoseconds
  delay(int retry, std::optional<std::chrono::nanoseconds> retry_after = {});

  const backoff_options& options() const { return options_; }

private:
  backoff_options options_;
  std::mt19937_64 rng_;
};

} // namespace karvon::actors
