// Sliding-window limits per sub-key: "at most 1 call per second to this
// private chat, 20 per minute to that group". Each key keeps the times of
// its recent calls (a sliding log, exact: no call is ever let through that
// would make `calls` + 1 calls within any `per` interval), and may be
// blocked until a time (a service's retry_after for that key).
//
// The caller chooses each key's limit on every call, so keys of one limiter
// may have different limits. A key whose calls have all left its window and
// whose block is over behaves exactly as a new key, so it is forgotten:
// memory follows the keys that called within their window, not all keys
// ever seen.
//
// Fair turns between keys are the queue's job (job_queue lanes); this class
// answers "when may this key go next" so the queue can park a key until
// then and the sink can sleep exactly that long.
//
// Not thread-safe: owned by one actor.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "actors/clock.hpp"

namespace karvon::actors {

struct window_limit {
  std::uint32_t calls = 0;         //!< calls allowed per window; 0: no limit
  std::chrono::nanoseconds per{0}; //!< the window's length

  bool limited() const { return calls > 0 && per.count() > 0; }
};

class window_limiter {
public:
  using time_point = clock::time_point;

  /// `c` must outlive the limiter.
  explicit window_limiter(const clock& c);
  ~window_limiter();

  window_limiter(const window_limiter&) = delete;
  window_limiter& operator=(const window_limiter&) = delete;

  /// The earliest time `key` may call under `limit`: a time not after now
  /// when it may call now (time_point{} when nothing holds it back; the
  /// limiter reads no clock here). Never fails; the owner's thread.
  time_point next_allowed(const std::string& key, window_limit limit) const;

  /// Records a call of `key` now if `limit` and any block allow it; false,
  /// recording nothing, when they do not.
  bool try_acquire(const std::string& key, window_limit limit);

  /// No call of `key` before `until` (a service asked to wait). A later
  /// block extends an earlier one; an earlier one changes nothing.
  void block(const std::string& key, time_point until);

  /// Keys remembered now (forgetting is lazy: see forget_idle).
  std::size_t size() const;

  /// Forgets every key that behaves as new (no call in its window, no block
  /// ahead). Runs by itself whenever the number of keys has doubled since
  /// the last sweep, so calling it is never needed for bounded memory.
  void forget_idle();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::actors
