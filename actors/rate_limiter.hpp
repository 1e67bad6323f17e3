// Rate limits per key (an API key, a client IP, a client key's end user):
// every key has one token bucket per band, and a request passes only if
// every band has a token for it. Two bands give the usual "100 per minute
// with bursts of at most 10 per second".
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actors/clock.hpp"

namespace karvon::actors {

struct rate_band {
  double capacity;   //!< tokens a key may spend at once
  double per_second; //!< tokens regained per second
};

/// "N per minute, at most B per second": two bands.
std::vector<rate_band> per_minute_with_burst(double per_minute,
                                             double burst_per_second);

struct rate_decision {
  bool allowed = true;
  /// When refused: whole seconds until a retry can pass (at least 1).
  std::chrono::seconds retry_after{0};
};

class rate_limiter {
public:
  /// `max_keys` bounds memory: beyond it, keys whose buckets are full again
  /// (idle keys, which behave as new ones) are forgotten first, then the
  /// least recently seen.
  rate_limiter(std::vector<rate_band> bands, const clock& c,
               std::size_t max_keys = 200000);
  ~rate_limiter();

  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  /// Takes one token from every band of `key`, or none. Thread-safe and
  /// never blocks for long (one of 32 shard locks, no I/O).
  rate_decision take(std::string_view key);

  /// Keys remembered now.
  std::size_t size() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::actors
