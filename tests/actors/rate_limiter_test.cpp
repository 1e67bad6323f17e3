#include <thread>

#include <gtest/gtest.h>

#include "actors/rate_limiter.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

TEST(RateLimiter, allows_the_burst_then_refuses_with_retry_after) {
  manual_clock clock;
  rate_limiter limiter{per_minute_with_burst(100, 10), clock};
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(limiter.take("key").allowed) << i;
  auto refused = limiter.take("key");
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 1s);
}

TEST(RateLimiter, holds_the_per_minute_rate_across_bursts) {
  manual_clock clock;
  rate_limiter limiter{per_minute_with_burst(100, 10), clock};
  int allowed = 0;
  // Ten requests every second for a minute: the minute's 100 tokens plus
  // what refills meanwhile (100/min), then no more.
  for (int second = 0; second < 60; ++second) {
    for (int i = 0; i < 10; ++i)
      allowed += limiter.take("key").allowed;
    clock.advance(1s);
  }
  EXPECT_GE(allowed, 195);
  EXPECT_LE(allowed, 200);
}

TEST(RateLimiter, anonymous_rate_is_twenty_a_minute) {
  manual_clock clock;
  rate_limiter limiter{per_minute_with_burst(20, 10), clock};
  int allowed = 0;
  for (int i = 0; i < 100; ++i) {
    allowed += limiter.take("10.0.0.1").allowed;
    clock.advance(100ms); // 10/s: the burst band alone would allow it all
  }
  // 20 at once, then one every 3 s for the 10 s that passed.
  EXPECT_GE(allowed, 20);
  EXPECT_LE(allowed, 24);
  auto d = limiter.take("10.0.0.1");
  EXPECT_FALSE(d.allowed);
  EXPECT_GE(d.retry_after, 1s);
  EXPECT_LE(d.retry_after, 3s);
}

TEST(RateLimiter, keys_do_not_share_buckets) {
  manual_clock clock;
  rate_limiter limiter{{{1, 1.0}}, clock};
  EXPECT_TRUE(limiter.take("a").allowed);
  EXPECT_FALSE(limiter.take("a").allowed);
  EXPECT_TRUE(limiter.take("b").allowed);
}

TEST(RateLimiter, a_refusal_by_one_band_takes_no_token_from_another) {
  manual_clock clock;
  rate_limiter limiter{{{2, 0.001}, {1, 1.0}}, clock};
  EXPECT_TRUE(limiter.take("k").allowed);  // both bands: 1 left, 0 left
  EXPECT_FALSE(limiter.take("k").allowed); // refused by the second band
  clock.advance(1s);
  EXPECT_TRUE(limiter.take("k").allowed); // the first band still had 1
}

TEST(RateLimiter, memory_stays_bounded_under_many_keys) {
  manual_clock clock;
  rate_limiter limiter{{{5, 1.0}}, clock, /*max_keys=*/1000};
  for (int i = 0; i < 100000; ++i)
    limiter.take("ip-" + std::to_string(i));
  EXPECT_LE(limiter.size(), 1100u);
}

TEST(RateLimiter, recently_seen_keys_keep_their_state_under_churn) {
  manual_clock clock;
  rate_limiter limiter{{{3, 0.001}}, clock, /*max_keys=*/32 * 4};
  // A busy key with an empty bucket must not get a fresh one because
  // thousands of other keys come and go.
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(limiter.take("busy").allowed);
  for (int i = 0; i < 5000; ++i) {
    limiter.take("other-" + std::to_string(i));
    EXPECT_FALSE(limiter.take("busy").allowed) << i;
    clock.advance(std::chrono::milliseconds{1});
  }
}

TEST(RateLimiter, is_exact_under_concurrent_callers) {
  manual_clock clock; // frozen: no refill while threads race
  rate_limiter limiter{{{1000, 1.0}}, clock};
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i)
        allowed += limiter.take("shared").allowed;
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(allowed.load(), 1000);
}

} // namespace
} // namespace karvon::actors
