#include "actors/window_limiter.hpp"

#include <algorithm>
#include <deque>
#include <unordered_map>

namespace karvon::actors {

struct window_limiter::impl {
  struct key_state {
    // Times of recent calls, oldest first. Only the last `keep` are needed,
    // and only those within `horizon` of now.
    std::deque<time_point> calls;
    // The largest limit this key has been given: a key whose limit changes
    // from 20/min to 1/s and back must still remember the minute.
    std::uint32_t keep = 0;
    std::chrono::nanoseconds horizon{0};
    time_point blocked_until{};
  };

  const clock* clk;
  std::unordered_map<std::string, key_state> keys;
  // Keys after the last sweep; the next sweep runs at twice as many, so its
  // cost is paid by the inserts in between (amortised O(1)).
  std::size_t swept_size = 0;

  static void remember(key_state& k, window_limit limit) {
    k.keep = std::max(k.keep, limit.calls);
    k.horizon = std::max(k.horizon, limit.per);
  }

  static void trim(key_state& k, time_point now) {
    while (!k.calls.empty()
           && (k.calls.size() > k.keep || k.calls.front() + k.horizon <= now))
      k.calls.pop_front();
  }

  static bool idle(const key_state& k, time_point now) {
    return now >= k.blocked_until
           && (k.calls.empty() || k.calls.back() + k.horizon <= now);
  }

  // The earliest time the limit and the block allow a call; a time long
  // past (time_point{}) when nothing holds the key back. No clock read, so
  // the answer compares with any "now" of the caller's.
  static time_point earliest(const key_state& k, window_limit limit) {
    auto at = k.blocked_until;
    if (!limit.limited() || k.calls.size() < limit.calls)
      return at;
    // The call `calls` places back must have left the window.
    auto oldest = k.calls[k.calls.size() - limit.calls];
    return std::max(at, oldest + limit.per);
  }

  void maybe_sweep(time_point now) {
    if (keys.size() < std::max<std::size_t>(64, 2 * swept_size))
      return;
    sweep(now);
  }

  void sweep(time_point now) {
    for (auto it = keys.begin(); it != keys.end();) {
      if (idle(it->second, now))
        it = keys.erase(it);
      else
        ++it;
    }
    swept_size = keys.size();
  }
};

window_limiter::window_limiter(const clock& c)
    : impl_(std::make_unique<impl>()) {
  impl_->clk = &c;
}

window_limiter::~window_limiter() = default;

window_limiter::time_point
window_limiter::next_allowed(const std::string& key, window_limit limit) const {
  auto it = impl_->keys.find(key);
  if (it == impl_->keys.end())
    return time_point{};
  return impl::earliest(it->second, limit);
}

bool window_limiter::try_acquire(const std::string& key, window_limit limit) {
  auto& d = *impl_;
  auto now = d.clk->now();
  auto it = d.keys.find(key);
  if (it != d.keys.end()) {
    auto& k = it->second;
    impl::trim(k, now);
    if (impl::earliest(k, limit) > now)
      return false;
    if (!limit.limited())
      return true;
    impl::remember(k, limit);
    k.calls.push_back(now);
    impl::trim(k, now);
    return true;
  }
  if (!limit.limited())
    return true; // nothing to remember about an unlimited call
  d.maybe_sweep(now);
  auto& k = d.keys[key];
  impl::remember(k, limit);
  k.calls.push_back(now);
  return true;
}

void window_limiter::block(const std::string& key, time_point until) {
  auto& d = *impl_;
  auto now = d.clk->now();
  if (until <= now)
    return;
  auto it = d.keys.find(key);
  if (it == d.keys.end()) {
    d.maybe_sweep(now);
    it = d.keys.try_emplace(key).first;
  }
  it->second.blocked_until = std::max(it->second.blocked_until, until);
}

std::size_t window_limiter::size() const {
  return impl_->keys.size();
}

void window_limiter::forget_idle() {
  impl_->sweep(impl_->clk->now());
}

} // namespace karvon::actors
