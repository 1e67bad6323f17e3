// Time as domain classes see it: injected, so tests move it by hand instead
// of sleeping.
#pragma once

#include <atomic>
#include <chrono>

namespace karvon::actors {

class clock {
public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~clock() = default;
  virtual time_point now() const = 0;
};

/// The process's monotonic clock.
class steady_clock final : public clock {
public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};

/// A clock that moves only when told to; safe to read from any thread.
class manual_clock final : public clock {
public:
  time_point now() const override {
    return time_point{std::chrono::nanoseconds{ns_.load()}};
  }
  void advance(std::chrono::nanoseconds d) { ns_.fetch_add(d.count()); }

private:
  // Starts well after the epoch so that "now minus a window" never underflows.
  std::atomic<std::int64_t> ns_{std::int64_t{1} << 40};
};

/// The process-wide steady clock, for production wiring.
const clock& system_clock();

} // namespace karvon::actors
