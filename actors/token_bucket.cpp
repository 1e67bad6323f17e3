#include "actors/token_bucket.hpp"

#include <algorithm>
#include <cmath>

namespace karvon::actors {

const clock& system_clock() {
  static const steady_clock instance;
  return instance;
}

token_bucket::token_bucket(double capacity, double per_second, const clock& c)
    : capacity_(capacity), per_second_(per_second), clock_(&c),
      tokens_(capacity), last_(c.now()) {}

void token_bucket::refill() const {
  auto now = clock_->now();
  if (now <= last_)
    return;
  std::chrono::duration<double> elapsed = now - last_;
  tokens_ = std::min(capacity_, tokens_ + elapsed.count() * per_second_);
  last_ = now;
}

bool token_bucket::try_take(double n) {
  refill();
  if (tokens_ + 1e-9 < n)
    return false;
  tokens_ = std::max(0.0, tokens_ - n);
  return true;
}

std::chrono::nanoseconds token_bucket::time_until(double n) const {
  refill();
  if (tokens_ + 1e-9 >= n)
    return std::chrono::nanoseconds{0};
  if (n > capacity_)
    return std::chrono::nanoseconds::max();
  double seconds = (n - tokens_) / per_second_;
  return std::chrono::nanoseconds{
      static_cast<std::int64_t>(std::ceil(seconds * 1e9))};
}

double token_bucket::available() const {
  refill();
  return tokens_;
}

} // namespace karvon::actors
