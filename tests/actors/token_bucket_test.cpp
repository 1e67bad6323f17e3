#include <gtest/gtest.h>

#include "actors/token_bucket.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

TEST(TokenBucket, refuses_a_burst_beyond_its_capacity) {
  manual_clock clock;
  token_bucket bucket{/*capacity=*/3, /*per_second=*/1.0, clock};
  EXPECT_TRUE(bucket.try_take(3));
  EXPECT_FALSE(bucket.try_take(1));
  clock.advance(1s);
  EXPECT_TRUE(bucket.try_take(1));
  EXPECT_FALSE(bucket.try_take(1));
}

TEST(TokenBucket, refills_at_its_rate_but_never_past_capacity) {
  manual_clock clock;
  token_bucket bucket{10, 2.0, clock};
  ASSERT_TRUE(bucket.try_take(10));
  clock.advance(2500ms);
  EXPECT_NEAR(bucket.available(), 5.0, 1e-9);
  clock.advance(1h);
  EXPECT_NEAR(bucket.available(), 10.0, 1e-9);
  EXPECT_TRUE(bucket.full());
}

TEST(TokenBucket, a_refused_take_takes_nothing) {
  manual_clock clock;
  token_bucket bucket{5, 1.0, clock};
  ASSERT_TRUE(bucket.try_take(4));
  EXPECT_FALSE(bucket.try_take(2));
  EXPECT_NEAR(bucket.available(), 1.0, 1e-9);
}

TEST(TokenBucket, says_how_long_until_tokens_are_there) {
  manual_clock clock;
  token_bucket bucket{100, 100.0 / 60.0, clock}; // 100 per minute
  ASSERT_TRUE(bucket.try_take(100));
  EXPECT_EQ(std::chrono::ceil<std::chrono::milliseconds>(bucket.time_until(1)),
            600ms);
  clock.advance(600ms);
  EXPECT_EQ(bucket.time_until(1).count(), 0);
  EXPECT_EQ(bucket.time_until(101), std::chrono::nanoseconds::max());
}

} // namespace
} // namespace karvon::actors
