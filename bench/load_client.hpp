// The HTTP load client of the benchmarks: keep-alive connections over
// loopback, each sending the same GET back to back with one request in
// flight, for a fixed time. Both sides of a scenario are measured with it,
// so its own cost is the same on both.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "bench/latency_histogram.hpp"

namespace karvon::bench {

struct load_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string target = "/health";
  int connections = 32;
  /// Client I/O threads. One by default: the client shares the machine's
  /// cores with the server it measures, and every thread it adds is taken
  /// from the server.
  int threads = 1;
  std::chrono::milliseconds duration{2000};
  /// After the end, how long requests in flight may take before they are
  /// cut off and counted as errors.
  std::chrono::milliseconds drain{2000};
};

struct load_result {
  std::uint64_t ok = 0;      //!< 200 responses completed in the window
  std::uint64_t non_200 = 0; //!< other statuses completed in the window
  std::uint64_t errors = 0;  //!< connect, write and read failures
  std::string first_error;   //!< the first failure or non-200, for the report
  std::chrono::nanoseconds window{0}; //!< how long requests were counted
  latency_histogram latency;          //!< of the 200 responses

  /// 200 responses a second over the window.
  double req_per_s() const;
};

/// Opens the connections, sends requests for `o.duration`, closes them.
/// Blocks the calling thread; failures are counted, never thrown.
load_result run_load(const load_options& o);

} // namespace karvon::bench
