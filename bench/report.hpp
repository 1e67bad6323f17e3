// How results are printed: the JSON line of API.md ("Benchmark output"),
// the human table, and the --list lines.
#pragma once

#include <string>
#include <vector>

#include "bench/scenario.hpp"

namespace karvon::bench {

/// `v` rounded to `digits` significant digits (JSON stays readable).
double round_significant(double v, int digits);

/// The API.md JSON object of one figure, on one line, no newline.
std::string json_line(const std::string& scenario, const figure_result& r);

/// `scenario figure unit ceiling`, no newline.
std::string list_line(const std::string& scenario, const figure& f);

/// The header of the human table, no newline.
std::string table_header();

/// One aligned row of the human table; `flagged` marks a figure whose runs
/// had errors. No newline.
std::string table_row(const std::string& scenario, const figure_result& r,
                      bool flagged);

/// A number for people: fewer decimals as it grows.
std::string human_number(double v);

/// One line about a run with errors, no newline.
std::string describe_problem(const std::string& scenario, const run_problem& p);

} // namespace karvon::bench
