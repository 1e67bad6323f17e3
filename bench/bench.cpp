#include "bench/bench.hpp"

#include <algorithm>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "bench/report.hpp"
#include "bench/scenario.hpp"

namespace karvon::bench {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1; // a scenario failed or had errors
constexpr int exit_usage = 2;   // unknown scenario

// The scenarios named on the command line, in that order; all when none is.
// Prints the unknown names and returns false when there are any.
bool select(const options& o, std::vector<const scenario*>& out) {
  auto& all = all_scenarios();
  if (o.scenarios.empty()) {
    for (auto& s : all)
      out.push_back(&s);
    return true;
  }
  bool ok = true;
  for (auto& name : o.scenarios) {
    auto it = std::find_if(all.begin(), all.end(),
                           [&](const scenario& s) { return s.name == name; });
    if (it == all.end()) {
      std::cerr << "karvon bench: no scenario '" << name
                << "' (see karvon bench --list)\n";
      ok = false;
    } else {
      out.push_back(&*it);
    }
  }
  return ok;
}

} // namespace

void add_cli_options(CLI::App* cmd, options& o) {
  cmd->add_option("SCENARIO", o.scenarios,
                  "Scenarios to run, all when none is named (see --list)");
  cmd->add_flag("--json", o.json, "One JSON object a line, one a figure");
  cmd->add_flag("--list", o.list,
                "Print 'scenario figure unit ceiling' lines and exit");
  cmd->add_option("--runs", o.runs, "Measured runs of each side")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--duration-ms", o.duration_ms, "Length of one run")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  cmd->add_option("--warmup-ms", o.warmup_ms,
                  "Warm-up of each side before the measured runs")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  cmd->add_option("--connections", o.connections,
                  "Keep-alive connections of the load client")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_option("--threads", o.threads,
                  "Server I/O threads, the same on both sides")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
}

int run(const options& o) {
  std::vector<const scenario*> chosen;
  if (!select(o, chosen))
    return exit_usage;

  if (o.list) {
    for (auto* s : chosen)
      for (auto& f : s->figures)
        std::cout << list_line(s->name, f) << "\n";
    return exit_ok;
  }

  int code = exit_ok;
  bool header_printed = false;
  bool any_flagged = false;
  for (auto* s : chosen) {
    // Progress goes to stderr so that stdout stays the figures alone.
    std::cerr << "karvon bench: " << s->name << ": " << s->description << " ("
              << o.runs << " runs of " << o.duration_ms << " ms per side, "
              << o.connections << " connections, " << o.threads
              << " server thread(s))" << std::endl;
    scenario_result result;
    try {
      result = s->run(o);
    } catch (const std::exception& e) {
      std::cerr << "karvon bench: " << s->name << " failed: " << e.what()
                << "\n";
      code = exit_failure;
      continue;
    }
    // Errors in a run make its figures suspect: each is listed, the table
    // marks the figures, and the exit code says so.
    for (auto& p : result.problems)
      std::cerr << "karvon bench: " << describe_problem(s->name, p) << "\n";
    bool flagged = !result.problems.empty();
    if (flagged) {
      code = exit_failure;
      any_flagged = !o.json;
    }
    for (auto& f : result.figures) {
      if (o.json) {
        std::cout << json_line(s->name, f) << "\n";
        continue;
      }
      if (!header_printed) {
        std::cout << table_header() << "\n";
        header_printed = true;
      }
      std::cout << table_row(s->name, f, flagged) << "\n";
    }
    std::cout << std::flush;
  }
  if (any_flagged)
    std::cout << "! a run of this scenario had errors (listed on stderr)\n";
  return code;
}

} // namespace karvon::bench
