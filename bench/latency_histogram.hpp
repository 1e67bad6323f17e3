// Latencies of one load run in a fixed log-linear histogram: recording is
// one array increment, so the load client spends the CPU it shares with the
// server on requests, and percentiles stay within 1% of the exact value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace karvon::bench {

class latency_histogram {
public:
  latency_histogram();

  /// Counts one latency; a negative duration counts as zero.
  void record(std::chrono::nanoseconds d);

  /// Adds the counts of `other` (histograms of several client threads).
  void merge(const latency_histogram& other);

  std::uint64_t count() const { return count_; }

  /// The latency that a fraction `q` (0..1] of the samples do not exceed,
  /// within 1%; zero when nothing was recorded.
  std::chrono::nanoseconds percentile(double q) const;

  /// The bucket of a value in nanoseconds; exact below 128 ns, then 64
  /// buckets per power of two.
  static std::size_t bucket_of(std::uint64_t ns);
  /// The smallest value of bucket `b`.
  static std::uint64_t bucket_low(std::size_t b);
  /// How many consecutive values bucket `b` holds.
  static std::uint64_t bucket_width(std::size_t b);

private:
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
};

} // namespace karvon::bench
