// Process metrics read from Linux /proc at scrape time, named as the
// Prometheus client libraries name them so that stock dashboards work.
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include <dirent.h>
#include <unistd.h>

#include "metrics/registry.hpp"

namespace karvon::metrics {

namespace {

// Fields of /proc/self/stat after the command name, which may hold spaces.
std::vector<std::string> stat_fields() {
  std::ifstream in{"/proc/self/stat"};
  std::string line;
  std::getline(in, line);
  auto close = line.rfind(')');
  std::vector<std::string> out;
  if (close == std::string::npos)
    return out;
  std::istringstream rest{line.substr(close + 2)};
  std::string field;
  while (rest >> field)
    out.push_back(field);
  return out;
}

double resident_bytes() {
  std::ifstream in{"/proc/self/statm"};
  long pages_total = 0;
  long pages_resident = 0;
  in >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * sysconf(_SC_PAGESIZE);
}

double open_fds() {
  auto dir = opendir("/proc/self/fd");
  if (!dir)
    return 0;
  double n = 0;
  while (auto entry = readdir(dir))
    if (entry->d_name[0] != '.')
      ++n;
  closedir(dir);
  return n - 1; // the directory stream itself
}

double cpu_seconds() {
  auto f = stat_fields();
  // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
  if (f.size() < 13)
    return 0;
  auto ticks = std::stod(f[11]) + std::stod(f[12]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

} // namespace

void register_process_metrics(registry& r) {
  auto start = std::chrono::duration<double>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  r.callback_gauge("process_resident_memory_bytes",
                   "Resident memory size in bytes.", resident_bytes);
  r.callback_gauge("process_open_fds", "Number of open file descriptors.",
                   open_fds);
  r.callback_gauge("process_start_time_seconds",
                   "Start time of the process since the Unix epoch.",
                   [start] { return start; });
  r.callback_gauge("process_cpu_seconds_total",
                   "Total user and system CPU time spent in seconds.",
                   cpu_seconds);
}

} // namespace karvon::metrics
