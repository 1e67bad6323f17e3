#include "bench/latency_histogram.hpp"

#include <algorithm>
#include <cmath>

namespace karvon::bench {

namespace {

// Significant bits kept of each value: 2^-(bits-1) = 1/64 relative bucket
// width, so a bucket's midpoint is within 0.8% of anything in it.
constexpr int bits = 7;
constexpr std::uint64_t exact_below = std::uint64_t{1} << bits; // 128
constexpr std::uint64_t half = exact_below / 2;                 // 64
// The highest bit of a 64-bit value is 63: (63 - bits + 3) groups of `half`.
constexpr std::size_t total_buckets = (63 - bits + 3) * half;

int highest_bit(std::uint64_t v) {
  return 63 - __builtin_clzll(v);
}

} // namespace

latency_histogram::latency_histogram() : buckets_(total_buckets, 0) {}

std::size_t latency_histogram::bucket_of(std::uint64_t ns) {
  if (ns < exact_below)
    return static_cast<std::size_t>(ns);
  int shift = highest_bit(ns) - bits + 1;
  auto mantissa = ns >> shift; // in [half, exact_below)
  return static_cast<std::size_t>((shift + 1) * half + (mantissa - half));
}

std::uint64_t latency_histogram::bucket_low(std::size_t b) {
  if (b < exact_below)
    return b;
  auto shift = b / half - 1;
  auto mantissa = b % half + half;
  return mantissa << shift;
}

std::uint64_t latency_histogram::bucket_width(std::size_t b) {
  return b < exact_below ? 1 : std::uint64_t{1} << (b / half - 1);
}

void latency_histogram::record(std::chrono::nanoseconds d) {
  auto ns = d.count() < 0 ? std::uint64_t{0}
                          : static_cast<std::uint64_t>(d.count());
  ++buckets_[bucket_of(ns)];
  ++count_;
}

void latency_histogram::merge(const latency_histogram& other) {
  for (std::size_t b = 0; b < buckets_.size(); ++b)
    buckets_[b] += other.buckets_[b];
  count_ += other.count_;
}

std::chrono::nanoseconds latency_histogram::percentile(double q) const {
  if (count_ == 0)
    return std::chrono::nanoseconds{0};
  q = std::clamp(q, 0.0, 1.0);
  auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(
                                             q * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    seen += buckets_[b];
    if (seen >= rank)
      return std::chrono::nanoseconds{
          static_cast<std::int64_t>(bucket_low(b) + bucket_width(b) / 2)};
  }
  return std::chrono::nanoseconds{0}; // unreachable: seen ends at count_
}

} // namespace karvon::bench
