#include <thread>

#include <gtest/gtest.h>

#include "metrics/registry.hpp"

namespace karvon::metrics {
namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(MetricsRegistry, renders_counters_with_labels_in_text_format) {
  registry r;
  auto& f = r.counters("karvon_http_requests_total", "HTTP responses.",
                       {"route", "code"});
  f.with({"/health", "200"}).inc(3);
  f.with({"/api/v1/kb/documents/{id}", "404"}).inc();
  auto text = r.render();
  EXPECT_TRUE(contains(text, "# HELP karvon_http_requests_total HTTP "
                             "responses.\n"));
  EXPECT_TRUE(contains(text, "# TYPE karvon_http_requests_total counter\n"));
  EXPECT_TRUE(contains(
      text, "karvon_http_requests_total{route=\"/health\",code=\"200\"} 3\n"));
  EXPECT_TRUE(contains(text, "karvon_http_requests_total{route=\"/api/v1/kb/"
                             "documents/{id}\",code=\"404\"} 1\n"));
}

TEST(MetricsRegistry, escapes_label_values) {
  registry r;
  r.counters("c_total", "c", {"l"}).with({"a\"b\\c\nd"}).inc();
  EXPECT_TRUE(contains(r.render(), "c_total{l=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(MetricsRegistry, histograms_have_cumulative_buckets_sum_and_count) {
  registry r;
  auto& h = r.histograms("d_seconds", "d", {}, {0.1, 1.0}).with({});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  auto text = r.render();
  EXPECT_TRUE(contains(text, "# TYPE d_seconds histogram\n"));
  EXPECT_TRUE(contains(text, "d_seconds_bucket{le=\"0.1\"} 1\n"));
  EXPECT_TRUE(contains(text, "d_seconds_bucket{le=\"1\"} 2\n"));
  EXPECT_TRUE(contains(text, "d_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_TRUE(contains(text, "d_seconds_count 3\n"));
  EXPECT_TRUE(contains(text, "d_seconds_sum 5.55\n"));
}

TEST(MetricsRegistry, registering_a_name_twice_returns_the_same_family) {
  registry r;
  auto& a = r.counters("x_total", "x", {"k"});
  auto& b = r.counters("x_total", "x", {"k"});
  EXPECT_EQ(&a, &b);
}

TEST(MetricsRegistry, counts_exactly_from_many_threads) {
  registry r;
  auto& c = r.counters("n_total", "n", {}).with({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i)
        c.inc();
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(c.value(), 400000u);
}

TEST(MetricsRegistry, process_metrics_read_real_values) {
  registry r;
  register_process_metrics(r);
  auto text = r.render();
  auto pos = text.find("\nprocess_resident_memory_bytes ");
  ASSERT_NE(pos, std::string::npos);
  auto value = std::stod(text.substr(pos + 31));
  EXPECT_GT(value, 1e6); // a test process holds more than a megabyte
  EXPECT_TRUE(contains(text, "process_open_fds "));
}

} // namespace
} // namespace karvon::metrics
