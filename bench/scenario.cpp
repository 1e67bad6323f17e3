#include "bench/scenario.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace karvon::bench {

const std::vector<scenario>& all_scenarios() {
  static const std::vector<scenario> all = {
      http_health_scenario(),    group_commit_scenario(),
      entity_request_scenario(), activation_scenario(),
      entity_memory_scenario(),  cluster_request_scenario(),
      rebalance_scenario(),      chat_cached_scenario(),
      chat_overhead_scenario(),
  };
  return all;
}

summary summarize(std::vector<double> values) {
  summary s;
  if (values.empty())
    return s;
  std::sort(values.begin(), values.end());
  auto n = values.size();
  s.median
      = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2.0;
  s.min = values.front();
  s.max = values.back();
  return s;
}

double figure_result::ratio() const {
  auto num = fig.direction == better::higher ? value.median : ceiling.median;
  auto den = fig.direction == better::higher ? ceiling.median : value.median;
  if (den == 0.0)
    return std::numeric_limits<double>::quiet_NaN();
  return num / den;
}

namespace {

// Runs one side once; a run with errors is kept (the figure is still what
// was measured) but listed, so the report can say so.
sample run_side(const side& s, const std::string& side_name, int run,
                std::chrono::milliseconds duration, std::size_t figures,
                std::vector<run_problem>& problems) {
  auto result = s(duration);
  if (result.values.size() != figures)
    throw std::logic_error("a side of the scenario returned "
                           + std::to_string(result.values.size())
                           + " values for " + std::to_string(figures)
                           + " figures");
  if (result.errors > 0)
    problems.push_back({side_name, run, result.errors, result.first_error});
  return result;
}

} // namespace

scenario_result measure_interleaved(const std::vector<figure>& figures,
                                    const options& o, const side& karvon,
                                    const side& ceiling) {
  // Figures against another ceiling are another call, with their own
  // ceiling side: this one names its side after the first figure's.
  const std::string ceiling_name
      = figures.empty() ? std::string{"ceiling"} : figures.front().ceiling;
  scenario_result out;
  auto n = figures.size();
  std::chrono::milliseconds warmup{o.warmup_ms};
  std::chrono::milliseconds duration{o.duration_ms};
  if (warmup.count() > 0) {
    run_side(karvon, "karvon", 0, warmup, n, out.problems);
    run_side(ceiling, ceiling_name, 0, warmup, n, out.problems);
  }
  std::vector<std::vector<double>> ours(n), theirs(n);
  for (int run = 1; run <= o.runs; ++run) {
    auto a = run_side(karvon, "karvon", run, duration, n, out.problems);
    auto b = run_side(ceiling, ceiling_name, run, duration, n, out.problems);
    for (std::size_t f = 0; f < n; ++f) {
      ours[f].push_back(a.values[f]);
      theirs[f].push_back(b.values[f]);
    }
  }
  for (std::size_t f = 0; f < n; ++f) {
    figure_result r;
    r.fig = figures[f];
    r.runs = o.runs;
    r.value = summarize(ours[f]);
    r.ceiling = summarize(theirs[f]);
    out.figures.push_back(std::move(r));
  }
  return out;
}

} // namespace karvon::bench
