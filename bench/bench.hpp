// `karvon bench`: benchmark scenarios that print each figure next to the
// ceiling it is measured against in the same run (API.md, "Benchmark
// output").
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace karvon::bench {

struct options {
  std::vector<std::string> scenarios; //!< empty: all
  bool json = false;                  //!< one JSON object a line
  bool list = false;                  //!< print scenario and figure names
  int runs = 5;                       //!< measured runs of each side
  int duration_ms = 2000;             //!< length of one run
  int warmup_ms = 500;                //!< before the first measured run
  int connections = 32;               //!< load client connections
  int threads = 1;                    //!< server I/O threads (both sides)
};

/// Adds the bench options and the SCENARIO arguments to `cmd`.
void add_cli_options(CLI::App* cmd, options& o);

/// Runs the scenarios; returns the exit code: 1 when a scenario failed or a
/// run had errors, 2 for an unknown scenario.
int run(const options& o);

} // namespace karvon::bench
