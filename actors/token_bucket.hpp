// A token bucket: holds at most `capacity` tokens and gains `per_second`
// tokens each second. Not thread-safe: it is owned by one actor, or guarded
// by its owner (rate_limiter).
#pragma once

#include <chrono>

#include "actors/clock.hpp"

namespace karvon::actors {

class token_bucket {
public:
  /// Starts full. `capacity` > 0, `per_second` > 0.
  token_bucket(double capacity, double per_second, const clock& c);

  /// Takes `n` tokens if they are all there; false (and takes none) if not.
  bool try_take(double n = 1);

  /// How long until `n` tokens are there; zero when they are now.
  std::chrono::nanoseconds time_until(double n = 1) const;

  /// Tokens there now.
  double available() const;

  /// True when the bucket is full again, i.e. indistinguishable from new.
  bool full() const { return available() >= capacity_; }

  double capacity() const { return capacity_; }
  double per_second() const { return per_second_; }

private:
  void refill() const;

  double capacity_;
  double per_second_;
  const clock* clock_;
  mutable double tokens_;
  mutable clock::time_point last_;
};

} // namespace karvon::actors
