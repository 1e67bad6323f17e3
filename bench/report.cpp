#include "bench/report.hpp"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace karvon::bench {

namespace {

// Columns of the human table: scenario, figure, value, unit, ceiling,
// ceiling value, ratio, runs; the two ranges follow, unpadded.
constexpr int widths[] = {14, 12, 11, 5, 11, 13, 6, 5};
constexpr int range_width = 20;

// Characters as a terminal shows them: UTF-8 continuation bytes take no
// column (the en dash of the ranges).
std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80)
      ++n;
  return n;
}

std::string pad(std::string s, int width, bool right) {
  auto used = columns(s);
  if (used >= static_cast<std::size_t>(width))
    return s + " ";
  std::string fill(static_cast<std::size_t>(width) - used, ' ');
  return (right ? fill + s : s + fill) + " ";
}

std::string range(const summary& s) {
  return human_number(s.min) + "\u2013" + human_number(s.max);
}

nlohmann::ordered_json number_or_null(double v, int digits) {
  if (!std::isfinite(v))
    return nullptr;
  return round_significant(v, digits);
}

} // namespace

double round_significant(double v, int digits) {
  if (v == 0.0 || !std::isfinite(v))
    return v;
  auto magnitude = static_cast<int>(std::floor(std::log10(std::fabs(v))));
  auto scale = std::pow(10.0, digits - 1 - magnitude);
  return std::round(v * scale) / scale;
}

std::string json_line(const std::string& scenario, const figure_result& r) {
  // ordered_json keeps the key order of API.md.
  nlohmann::ordered_json j;
  j["scenario"] = scenario;
  j["figure"] = r.fig.name;
  j["value"] = number_or_null(r.value.median, 6);
  j["unit"] = r.fig.unit;
  j["ceiling"] = r.fig.ceiling;
  j["ceiling_value"] = number_or_null(r.ceiling.median, 6);
  j["ratio"] = number_or_null(r.ratio(), 3);
  j["runs"] = r.runs;
  j["min"] = number_or_null(r.value.min, 6);
  j["max"] = number_or_null(r.value.max, 6);
  return j.dump();
}

std::string list_line(const std::string& scenario, const figure& f) {
  return scenario + " " + f.name + " " + f.unit + " " + f.ceiling;
}

std::string table_header() {
  const char* names[] = {"SCENARIO", "FIGURE",        "VALUE", "UNIT",
                         "CEILING",  "CEILING VALUE", "RATIO", "RUNS"};
  bool right[] = {false, false, true, false, false, true, true, true};
  std::string out;
  for (int i = 0; i < 8; ++i)
    out += pad(names[i], widths[i], right[i]);
  return out + pad("VALUE MIN\u2013MAX", range_width, false)
         + "CEILING MIN\u2013MAX";
}

std::string table_row(const std::string& scenario, const figure_result& r,
                      bool flagged) {
  char ratio[32];
  auto q = r.ratio();
  if (std::isfinite(q))
    std::snprintf(ratio, sizeof ratio, "%.2f", q);
  else
    std::snprintf(ratio, sizeof ratio, "-");
  std::string out;
  out += pad(scenario, widths[0], false);
  out += pad(r.fig.name, widths[1], false);
  out += pad(human_number(r.value.median) + (flagged ? "!" : ""), widths[2],
             true);
  out += pad(r.fig.unit, widths[3], false);
  out += pad(r.fig.ceiling, widths[4], false);
  out += pad(human_number(r.ceiling.median), widths[5], true);
  out += pad(ratio, widths[6], true);
  out += pad(std::to_string(r.runs), widths[7], true);
  out += pad(range(r.value), range_width, false);
  out += range(r.ceiling);
  return out;
}

std::string human_number(double v) {
  if (!std::isfinite(v))
    return "-";
  auto a = std::fabs(v);
  const char* format = a >= 1000 ? "%.0f"
                       : a >= 10 ? "%.1f"
                       : a >= 1  ? "%.2f"
                                 : "%.3f";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string describe_problem(const std::string& scenario,
                             const run_problem& p) {
  auto when
      = p.run == 0 ? std::string{"warm-up"} : "run " + std::to_string(p.run);
  auto out = scenario + ": " + p.side + " " + when + ": "
             + std::to_string(p.errors) + " error(s)";
  if (!p.first_error.empty())
    out += ", first: " + p.first_error;
  return out;
}

} // namespace karvon::bench
