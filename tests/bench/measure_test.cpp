#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "bench/scenario.hpp"

namespace karvon::bench {
namespace {

using std::chrono::milliseconds;

const std::vector<figure> two_figures = {
    {"req_per_s", "1/s", "raw_beast", better::higher},
    {"p99_ms", "ms", "raw_beast", better::lower},
};

options quick(int runs, int warmup_ms) {
  options o;
  o.runs = runs;
  o.warmup_ms = warmup_ms;
  o.duration_ms = 100;
  return o;
}

TEST(MeasureInterleaved, warms_each_side_up_then_alternates) {
  std::vector<std::string> calls;
  auto record = [&](std::string name) {
    return [&calls, name](milliseconds d) {
      calls.push_back(name + std::to_string(d.count()));
      return sample{{1.0, 2.0}, 0, {}};
    };
  };
  measure_interleaved(two_figures, quick(2, 50), record("k"), record("c"));
  EXPECT_EQ(calls, (std::vector<std::string>{"k50", "c50", "k100", "c100",
                                             "k100", "c100"}));
}

TEST(MeasureInterleaved, skips_the_warm_up_when_it_is_zero) {
  int calls = 0;
  auto s = [&](milliseconds) {
    ++calls;
    return sample{{1.0, 2.0}, 0, {}};
  };
  measure_interleaved(two_figures, quick(3, 0), s, s);
  EXPECT_EQ(calls, 6);
}

TEST(MeasureInterleaved, summarizes_each_side_and_figure_apart) {
  int run = 0;
  auto karvon = [&](milliseconds) {
    ++run;
    return sample{{100.0 * run, 1.0 * run}, 0, {}};
  };
  auto ceiling = [](milliseconds) { return sample{{400.0, 0.5}, 0, {}}; };
  auto r = measure_interleaved(two_figures, quick(3, 0), karvon, ceiling);
  ASSERT_EQ(r.figures.size(), 2u);
  EXPECT_EQ(r.figures[0].fig.name, "req_per_s");
  EXPECT_EQ(r.figures[0].runs, 3);
  EXPECT_EQ(r.figures[0].value.median, 200.0);
  EXPECT_EQ(r.figures[0].value.min, 100.0);
  EXPECT_EQ(r.figures[0].value.max, 300.0);
  EXPECT_EQ(r.figures[0].ceiling.median, 400.0);
  EXPECT_DOUBLE_EQ(r.figures[0].ratio(), 0.5);
  EXPECT_EQ(r.figures[1].value.median, 2.0);
  EXPECT_DOUBLE_EQ(r.figures[1].ratio(), 0.25);
  EXPECT_TRUE(r.problems.empty());
}

TEST(MeasureInterleaved, reports_every_run_that_had_errors) {
  int run = 0;
  auto karvon = [&](milliseconds) {
    ++run;
    return run == 2 ? sample{{1.0, 1.0}, 7, "read: reset"}
                    : sample{{1.0, 1.0}, 0, {}};
  };
  auto ceiling = [](milliseconds) { return sample{{1.0, 1.0}, 1, "HTTP 503"}; };
  auto r = measure_interleaved(two_figures, quick(2, 0), karvon, ceiling);
  ASSERT_EQ(r.problems.size(), 3u);
  EXPECT_EQ(r.problems[0].side, "raw_beast");
  EXPECT_EQ(r.problems[0].run, 1);
  EXPECT_EQ(r.problems[1].side, "karvon");
  EXPECT_EQ(r.problems[1].run, 2);
  EXPECT_EQ(r.problems[1].errors, 7u);
  EXPECT_EQ(r.problems[1].first_error, "read: reset");
}

TEST(MeasureInterleaved, refuses_a_side_with_the_wrong_number_of_values) {
  auto bad = [](milliseconds) { return sample{{1.0}, 0, {}}; };
  EXPECT_THROW(measure_interleaved(two_figures, quick(1, 0), bad, bad),
               std::logic_error);
}

TEST(AllScenarios, have_unique_names_and_at_least_one_figure) {
  auto& all = all_scenarios();
  ASSERT_FALSE(all.empty());
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_FALSE(all[i].figures.empty()) << all[i].name;
    EXPECT_TRUE(all[i].run) << all[i].name;
    for (std::size_t j = i + 1; j < all.size(); ++j)
      EXPECT_NE(all[i].name, all[j].name);
  }
}

} // namespace
} // namespace karvon::bench
