#include <chrono>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "actors/backoff.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

backoff_options options(nanoseconds base, nanoseconds cap,
                        nanoseconds max_retry_after = 60s) {
  backoff_options o;
  o.base = base;
  o.cap = cap;
  o.max_retry_after = max_retry_after;
  return o;
}

TEST(Backoff, doubles_its_ceiling_from_the_base_up_to_the_cap) {
  backoff b{options(100ms, 1s), 1};
  EXPECT_EQ(b.ceiling(0), 100ms);
  EXPECT_EQ(b.ceiling(1), 200ms);
  EXPECT_EQ(b.ceiling(2), 400ms);
  EXPECT_EQ(b.ceiling(3), 800ms);
  EXPECT_EQ(b.ceiling(4), 1s);
  EXPECT_EQ(b.ceiling(5), 1s);
}

TEST(Backoff, never_overflows_for_huge_retry_counts) {
  backoff b{options(1ns, nanoseconds::max()), 1};
  EXPECT_EQ(b.ceiling(62), nanoseconds{std::int64_t{1} << 62});
  EXPECT_EQ(b.ceiling(63), nanoseconds::max());
  EXPECT_EQ(b.ceiling(1000000), nanoseconds::max());
  EXPECT_GE(b.delay(1000000).count(), 0);
}

// Full jitter: uniform over [0, ceiling], so about a quarter of the delays
// fall in the lowest quarter (equal jitter would never go below half).
TEST(Backoff, draws_full_jitter_between_zero_and_the_ceiling) {
  backoff b{options(10ms, 10s), 12345};
  for (int retry = 0; retry < 6; ++retry) {
    auto ceiling = b.ceiling(retry);
    int low = 0, high = 0;
    const int n = 4000;
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      auto d = b.delay(retry);
      ASSERT_GE(d.count(), 0);
      ASSERT_LE(d, ceiling);
      low += d < ceiling / 4;
      high += d > ceiling * 3 / 4;
      sum += static_cast<double>(d.count());
    }
    EXPECT_NEAR(low, n / 4, n / 20) << retry;
    EXPECT_NEAR(high, n / 4, n / 20) << retry;
    EXPECT_NEAR(sum / n / static_cast<double>(ceiling.count()), 0.5, 0.03);
  }
}

TEST(Backoff, repeats_its_delays_for_the_same_seed) {
  backoff a{options(10ms, 10s), 99}, b{options(10ms, 10s), 99},
      c{options(10ms, 10s), 100};
  std::vector<nanoseconds> da, db, dc;
  for (int retry = 0; retry < 8; ++retry) {
    da.push_back(a.delay(retry));
    db.push_back(b.delay(retry));
    dc.push_back(c.delay(retry));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Backoff, waits_at_least_the_retry_after_a_service_asked) {
  backoff b{options(10ms, 100ms), 3};
  for (int i = 0; i < 1000; ++i) {
    EXPECT_GE(b.delay(0, 2s), 2s);
    EXPECT_LE(b.delay(0, 2s), 2s) << "the jitter is below the retry-after";
  }
  // A short retry-after still gets the jitter when that is longer.
  bool longer = false;
  for (int i = 0; i < 1000; ++i) {
    auto d = b.delay(3, 1ms);
    EXPECT_GE(d, 1ms);
    longer = longer || d > 1ms;
  }
  EXPECT_TRUE(longer);
}

TEST(Backoff, caps_a_retry_after_at_its_maximum) {
  backoff b{options(10ms, 100ms, 5s), 3};
  EXPECT_EQ(b.delay(0, 24h), 5s);
  EXPECT_LE(b.delay(0, -1s), 10ms) << "a negative retry-after counts as none";
}

TEST(Backoff, refuses_options_that_cannot_work) {
  EXPECT_THROW((backoff{options(0ns, 1s), 1}), std::invalid_argument);
  EXPECT_THROW((backoff{options(1ms, 0ns), 1}), std::invalid_argument);
  EXPECT_THROW((backoff{options(1ms, 1s, -1ns), 1}), std::invalid_argument);
}

} // namespace
} // namespace karvon::actors
