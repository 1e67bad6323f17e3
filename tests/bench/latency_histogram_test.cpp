#include <cmath>

#include <gtest/gtest.h>

#include "bench/latency_histogram.hpp"

namespace karvon::bench {
namespace {

using std::chrono::nanoseconds;

TEST(LatencyHistogram, keeps_small_values_exact) {
  for (std::uint64_t v = 0; v < 128; ++v) {
    EXPECT_EQ(latency_histogram::bucket_low(latency_histogram::bucket_of(v)),
              v);
    EXPECT_EQ(latency_histogram::bucket_width(v), 1u);
  }
}

TEST(LatencyHistogram, puts_every_value_inside_its_bucket) {
  for (std::uint64_t v = 1; v < (std::uint64_t{1} << 62); v = v * 3 + 1) {
    auto b = latency_histogram::bucket_of(v);
    auto low = latency_histogram::bucket_low(b);
    auto width = latency_histogram::bucket_width(b);
    EXPECT_LE(low, v);
    EXPECT_LT(v - low, width);
    if (v < 128)
      continue;
    // A bucket's midpoint is within 1% of anything in it.
    EXPECT_LE(static_cast<double>(width) / 2, 0.01 * static_cast<double>(v))
        << v;
    EXPECT_EQ(latency_histogram::bucket_of(low + width), b + 1) << v;
  }
}

TEST(LatencyHistogram, finds_percentiles_within_one_percent) {
  latency_histogram h;
  for (int us = 1; us <= 1000; ++us)
    h.record(std::chrono::microseconds{us});
  EXPECT_EQ(h.count(), 1000u);
  auto near = [](nanoseconds got, double want_ns) {
    return std::fabs(static_cast<double>(got.count()) - want_ns)
           <= 0.01 * want_ns;
  };
  EXPECT_TRUE(near(h.percentile(0.5), 500e3)) << h.percentile(0.5).count();
  EXPECT_TRUE(near(h.percentile(0.99), 990e3)) << h.percentile(0.99).count();
  EXPECT_TRUE(near(h.percentile(1.0), 1000e3)) << h.percentile(1.0).count();
}

TEST(LatencyHistogram, answers_zero_when_empty_and_counts_negatives_as_zero) {
  latency_histogram h;
  EXPECT_EQ(h.percentile(0.99), nanoseconds{0});
  h.record(nanoseconds{-5});
  EXPECT_EQ(h.percentile(0.99), nanoseconds{0});
}

TEST(LatencyHistogram, merges_the_counts_of_another) {
  latency_histogram a, b;
  a.record(nanoseconds{10});
  b.record(nanoseconds{20});
  b.record(nanoseconds{30});
  a.merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.percentile(1.0), nanoseconds{30});
  EXPECT_EQ(a.percentile(0.34), nanoseconds{20});
}

} // namespace
} // namespace karvon::bench
