#include <cmath>

#include <gtest/gtest.h>

#include "bench/report.hpp"
#include "bench/scenario.hpp"

namespace karvon::bench {
namespace {

figure_result result(better direction, double value, double ceiling) {
  figure_result r;
  r.fig = {"req_per_s", "1/s", "raw_beast", direction};
  r.runs = 5;
  r.value = {value, value - 1, value + 1};
  r.ceiling = {ceiling, ceiling - 1, ceiling + 1};
  return r;
}

TEST(Summarize, takes_the_middle_value_of_an_odd_count) {
  auto s = summarize({5.0, 1.0, 3.0});
  EXPECT_EQ(s.median, 3.0);
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 5.0);
}

TEST(Summarize, averages_the_middle_two_of_an_even_count) {
  EXPECT_EQ(summarize({4.0, 1.0, 2.0, 10.0}).median, 3.0);
}

TEST(Summarize, gives_zeros_for_no_values) {
  auto s = summarize({});
  EXPECT_EQ(s.median, 0.0);
  EXPECT_EQ(s.min, 0.0);
  EXPECT_EQ(s.max, 0.0);
}

TEST(FigureResult, divides_by_the_ceiling_when_higher_is_better) {
  EXPECT_DOUBLE_EQ(result(better::higher, 80, 100).ratio(), 0.8);
}

TEST(FigureResult, divides_the_ceiling_when_lower_is_better) {
  EXPECT_DOUBLE_EQ(result(better::lower, 2.0, 1.0).ratio(), 0.5);
}

TEST(FigureResult, has_no_ratio_when_the_divisor_is_zero) {
  EXPECT_TRUE(std::isnan(result(better::higher, 80, 0).ratio()));
  EXPECT_TRUE(std::isnan(result(better::lower, 0, 1).ratio()));
}

TEST(RoundSignificant, keeps_the_given_number_of_digits) {
  EXPECT_DOUBLE_EQ(round_significant(41234.5123, 6), 41234.5);
  EXPECT_DOUBLE_EQ(round_significant(0.0012345678, 3), 0.00123);
  EXPECT_DOUBLE_EQ(round_significant(0.0, 6), 0.0);
}

TEST(JsonLine, has_the_keys_of_api_md_in_order) {
  auto r = result(better::higher, 41234.5, 52011.0);
  r.value.min = 39000.1;
  r.value.max = 42010.7;
  EXPECT_EQ(json_line("http_health", r),
            R"({"scenario":"http_health","figure":"req_per_s",)"
            R"("value":41234.5,"unit":"1/s","ceiling":"raw_beast",)"
            R"("ceiling_value":52011.0,"ratio":0.793,"runs":5,)"
            R"("min":39000.1,"max":42010.7})");
}

TEST(JsonLine, writes_null_for_a_ratio_that_does_not_exist) {
  auto line = json_line("s", result(better::higher, 1.0, 0.0));
  EXPECT_NE(line.find(R"("ratio":null)"), std::string::npos) << line;
}

TEST(ListLine, names_scenario_figure_unit_and_ceiling) {
  EXPECT_EQ(
      list_line("http_health", {"p99_ms", "ms", "raw_beast", better::lower}),
      "http_health p99_ms ms raw_beast");
}

TEST(TableRow, lines_up_with_the_header_and_marks_runs_with_errors) {
  auto header = table_header();
  auto row
      = table_row("http_health", result(better::higher, 41234.6, 52011), true);
  // Right-aligned: the column ends at the same place.
  EXPECT_EQ(header.find("RATIO") + 5, row.find("0.79") + 4) << header << "\n"
                                                            << row;
  EXPECT_NE(row.find("41235!"), std::string::npos) << row;
}

TEST(HumanNumber, shows_fewer_decimals_as_numbers_grow) {
  EXPECT_EQ(human_number(41234.6), "41235");
  EXPECT_EQ(human_number(12.345), "12.3");
  EXPECT_EQ(human_number(1.2345), "1.23");
  EXPECT_EQ(human_number(0.5934), "0.593");
}

TEST(DescribeProblem, names_the_side_the_run_and_the_first_error) {
  EXPECT_EQ(describe_problem("http_health",
                             {"karvon", 2, 3, "read: connection reset"}),
            "http_health: karvon run 2: 3 error(s), first: read: "
            "connection reset");
  EXPECT_EQ(describe_problem("x", {"raw_beast", 0, 1, ""}),
            "x: raw_beast warm-up: 1 error(s)");
}

} // namespace
} // namespace karvon::bench
