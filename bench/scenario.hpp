// What a benchmark scenario is, and the measuring loop they share: each
// side (karvon, then its ceiling) is warmed up, then measured alternately
// `runs` times, so that both see the same machine noise (API.md,
// "Benchmark output").
//
// Adding a scenario: write `scenario my_scenario()` in its own .cpp here,
// declare it below, and add it to the list in scenario.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench.hpp"

namespace karvon::bench {

enum class better { higher, lower };

/// One number a scenario prints, and the ceiling it is compared with.
struct figure {
  std::string name;    //!< "req_per_s"
  std::string unit;    //!< "1/s", "ms"
  std::string ceiling; //!< what the other side is: "raw_beast"
  better direction = better::higher;
};

/// Median, min and max of the runs of one side.
struct summary {
  double median = 0.0;
  double min = 0.0;
  double max = 0.0;
};

/// Median (the mean of the middle two for an even count), min and max;
/// all zero for no values.
summary summarize(std::vector<double> values);

struct figure_result {
  figure fig;
  int runs = 0;    //!< measured runs of each side
  summary value;   //!< karvon's side
  summary ceiling; //!< the ceiling's side
  /// 1.0 is "as good as the ceiling" whichever way the figure points;
  /// NaN when the divisor is zero.
  double ratio() const;
};

/// One run of one side: a value per figure, in the scenario's order.
struct sample {
  std::vector<double> values;
  std::uint64_t errors = 0; //!< failed operations: errors, non-200 answers
  std::string first_error;  //!< what the first of them was
};

/// Runs one side for about `duration` and measures it. Called on the
/// thread that runs the scenario.
using side = std::function<sample(std::chrono::milliseconds duration)>;

/// A run that had errors: reported, never silently folded in.
struct run_problem {
  std::string side; //!< "karvon" or the ceiling's name
  int run = 0;      //!< 1-based; 0 is the warm-up
  std::uint64_t errors = 0;
  std::string first_error;
};

struct scenario_result {
  std::vector<figure_result> figures; //!< in the scenario's order
  std::vector<run_problem> problems;
};

struct scenario {
  std::string name;        //!< "http_health"
  std::string description; //!< one line, printed as it starts
  std::vector<figure> figures;
  /// Sets both sides up, measures them (with measure_interleaved) and tears
  /// them down. Throws std::exception when a side cannot be set up.
  std::function<scenario_result(const options&)> run;
};

/// Warms each side up for `o.warmup_ms`, then runs karvon and the ceiling
/// alternately, `o.runs` times each for `o.duration_ms`. Throws
/// std::logic_error when a side returns the wrong number of values.
scenario_result measure_interleaved(const std::vector<figure>& figures,
                                    const options& o, const side& karvon,
                                    const side& ceiling);

/// Every scenario, in the order `karvon bench` runs them.
const std::vector<scenario>& all_scenarios();

// One factory per scenario, each in its own .cpp.
scenario http_health_scenario();
scenario group_commit_scenario();
scenario entity_request_scenario();
scenario activation_scenario();
scenario entity_memory_scenario();
scenario cluster_request_scenario();
scenario rebalance_scenario();
scenario chat_cached_scenario();
scenario chat_overhead_scenario();

} // namespace karvon::bench
