#include "metrics/registry.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <variant>

namespace karvon::metrics {

namespace {

void atomic_add(std::atomic<double>& target, double v) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + v, std::memory_order_relaxed))
    ;
}

std::string format_number(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Integers print without an exponent up to 2^53; the rest in the fewest
  // digits that read back as the same double ("0.1", not
  // "0.10000000000000001").
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  return buf;
}

std::string label_set(const std::vector<std::string>& names,
                      const std::vector<std::string>& values,
                      const std::string& extra_name = {},
                      const std::string& extra_value = {}) {
  std::string out;
  size_t n = std::min(names.size(), values.size());
  for (size_t i = 0; i < n; ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "{" : ",";
    out += extra_name + "=\"" + extra_value + "\"";
  }
  if (!out.empty())
    out += "}";
  return out;
}

std::string escape_help(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

} // namespace

void gauge::add(double v) {
  atomic_add(value_, v);
}

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (size_t i = 0; i <= bounds_.size(); ++i)
    buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  auto index = static_cast<size_t>(it - bounds_.begin());
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, v);
}

std::uint64_t histogram::bucket(size_t i) const {
  return buckets_[i].load(std::memory_order_relaxed);
}

std::vector<double> latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
}

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

struct registry::impl {
  struct entry {
    std::string help;
    std::string type; // counter, gauge, histogram
    std::variant<std::unique_ptr<family<counter>>,
                 std::unique_ptr<family<gauge>>,
                 std::unique_ptr<family<histogram>>, std::function<double()>>
        metric;
  };
  mutable std::mutex mutex;
  std::map<std::string, entry> entries;
};

registry::registry() : impl_(std::make_unique<impl>()) {}

registry::~registry() = default;

namespace {

// The family registered under `name`, created on first use. Registering a
// name again with another type is a programming error.
template <class Metric, class Entries, class Make>
family<Metric>& find_or_add(Entries& entries, const std::string& name,
                            const std::string& help, const char* type,
                            std::vector<std::string> label_names, Make make) {
  auto& e = entries[name];
  if (auto f = std::get_if<std::unique_ptr<family<Metric>>>(&e.metric); f && *f)
    return **f;
  e.help = help;
  e.type = type;
  auto f = std::make_unique<family<Metric>>(std::move(label_names),
                                            std::move(make));
  auto& ref = *f;
  e.metric = std::move(f);
  return ref;
}

} // namespace

family<counter>& registry::counters(const std::string& name,
                                    const std::string& help,
                                    std::vector<std::string> label_names) {
  std::lock_guard lock{impl_->mutex};
  return find_or_add<counter>(impl_->entries, name, help, "counter",
                              std::move(label_names),
                              [] { return std::make_unique<counter>(); });
}

family<gauge>& registry::gauges(const std::string& name,
                                const std::string& help,
                                std::vector<std::string> label_names) {
  std::lock_guard lock{impl_->mutex};
  return find_or_add<gauge>(impl_->entries, name, help, "gauge",
                            std::move(label_names),
                            [] { return std::make_unique<gauge>(); });
}

family<histogram>& registry::histograms(const std::string& name,
                                        const std::string& help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> bounds) {
  std::lock_guard lock{impl_->mutex};
  return find_or_add<histogram>(
      impl_->entries, name, help, "histogram", std::move(label_names),
      [bounds] { return std::make_unique<histogram>(bounds); });
}

void registry::callback_gauge(const std::string& name, const std::string& help,
                              std::function<double()> read) {
  std::lock_guard lock{impl_->mutex};
  auto& e = impl_->entries[name];
  e.help = help;
  e.type = "gauge";
  e.metric = std::move(read);
}

std::string registry::render() const {
  std::string out;
  std::lock_guard lock{impl_->mutex};
  for (auto& [name, e] : impl_->entries) {
    out += "# HELP " + name + " " + escape_help(e.help) + "\n";
    out += "# TYPE " + name + " " + e.type + "\n";
    if (auto c = std::get_if<std::unique_ptr<family<counter>>>(&e.metric)) {
      (*c)->for_each([&](auto& labels, const counter& m) {
        out += name + label_set((*c)->label_names(), labels) + " "
               + std::to_string(m.value()) + "\n";
      });
    } else if (auto g
               = std::get_if<std::unique_ptr<family<gauge>>>(&e.metric)) {
      (*g)->for_each([&](auto& labels, const gauge& m) {
        out += name + label_set((*g)->label_names(), labels) + " "
               + format_number(m.value()) + "\n";
      });
    } else if (auto h
               = std::get_if<std::unique_ptr<family<histogram>>>(&e.metric)) {
      (*h)->for_each([&](auto& labels, const histogram& m) {
        auto& names = (*h)->label_names();
        std::uint64_t cumulative = 0;
        for (size_t i = 0; i <= m.bounds().size(); ++i) {
          cumulative += m.bucket(i);
          auto le = i < m.bounds().size() ? format_number(m.bounds()[i])
                                          : std::string{"+Inf"};
          out += name + "_bucket" + label_set(names, labels, "le", le) + " "
                 + std::to_string(cumulative) + "\n";
        }
        out += name + "_sum" + label_set(names, labels) + " "
               + format_number(m.sum()) + "\n";
        out += name + "_count" + label_set(names, labels) + " "
               + std::to_string(cumulative) + "\n";
      });
    } else if (auto f = std::get_if<std::function<double()>>(&e.metric)) {
      out += name + " " + format_number((*f)()) + "\n";
    }
  }
  return out;
}

} // namespace karvon::metrics
