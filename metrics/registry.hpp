// Prometheus metrics: counters, gauges and histograms with labels, rendered
// in the text exposition format 0.0.4. Every type here is safe to use from
// any thread; updating a metric is a few atomic operations, so hot paths
// look a child up once and keep the reference (children are never freed
// before their registry).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace karvon::metrics {

class counter {
public:
  void inc(std::uint64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> value_{0};
};

class gauge {
public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0.0};
};

class histogram {
public:
  /// `bounds` are the upper bounds of the buckets, ascending; +Inf is added.
  explicit histogram(std::vector<double> bounds);
  void observe(double v);
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return bounds_; }
  /// Observations in bucket i alone (not cumulative); i == bounds().size()
  /// is the +Inf bucket.
  std::uint64_t bucket(size_t i) const;

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
};

/// Latency buckets in seconds, from 100 µs to 10 s.
std::vector<double> latency_buckets();

/// A metric name with label names; children by label values.
template <class Metric>
class family {
public:
  family(std::vector<std::string> label_names,
         std::function<std::unique_ptr<Metric>()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}

  /// The child for these label values (as many as there are label names),
  /// created on first use. The reference stays valid as long as the family.
  Metric& with(const std::vector<std::string>& label_values) {
    {
      std::shared_lock lock{mutex_};
      auto it = children_.find(label_values);
      if (it != children_.end())
        return *it->second;
    }
    std::unique_lock lock{mutex_};
    auto& slot = children_[label_values];
    if (!slot)
      slot = make_();
    return *slot;
  }

  const std::vector<std::string>& label_names() const { return label_names_; }

  /// Calls f(label_values, metric) for every child, in label order.
  template <class F>
  void for_each(F&& f) const {
    std::shared_lock lock{mutex_};
    for (auto& [labels, metric] : children_)
      f(labels, *metric);
  }

private:
  std::vector<std::string> label_names_;
  std::function<std::unique_ptr<Metric>()> make_;
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

class registry {
public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Registering a name twice returns the first registration, so modules
  // may each ask for the metrics they update.
  family<counter>& counters(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names);
  family<gauge>& gauges(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names);
  family<histogram>& histograms(const std::string& name,
                                const std::string& help,
                                std::vector<std::string> label_names,
                                std::vector<double> bounds);

  /// A gauge whose value is read when metrics are rendered.
  void callback_gauge(const std::string& name, const std::string& help,
                      std::function<double()> read);

  /// The text exposition format 0.0.4, metrics sorted by name.
  std::string render() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Escapes a label value for the text format (backslash, quote, newline).
std::string escape_label_value(const std::string& v);

/// Registers process_resident_memory_bytes, process_open_fds,
/// process_start_time_seconds and process_cpu_seconds_total (Linux /proc).
void register_process_metrics(registry& r);

} // namespace karvon::metrics
