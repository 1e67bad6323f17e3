// The HTTP load client of the benchmarks: keep-alive connections over
// loopback, each sending requests back to back with one in flight, for a
// fixed time. Both sides of a scenario are measured with it, so its own
// cost is the same on both.
//
// By default every request is the same GET, built once, and every 200
// counts. A scenario that needs more gives a body per request (a POST with
// its own question) and a check of each answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/latency_histogram.hpp"

namespace karvon::bench {

struct load_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string method = "GET";
  std::string target = "/health";
  /// Header lines sent with every request after Host and User-Agent, each
  /// ending in "\r\n"; empty for none.
  std::string headers;
  /// The body of request `i`: each i once per run, 0, 1, ... in the order
  /// sent with one client thread. Called on the client thread that sends it
  /// (several at once when threads > 1). Unset: no body, and every request
  /// is the same bytes, built once before the run.
  std::function<std::string(std::uint64_t i)> body;
  /// Whether the body of a 200 is the answer the scenario expects; one it
  /// does not accept counts in `rejected`. Unset: every 200 is ok.
  std::function<bool(const std::string& body)> accept;
  /// Keep each latency of an ok response in load_result::latencies as well:
  /// exact, for differences finer than the histogram's 1%, at the cost of a
  /// vector that grows with the responses.
  bool keep_latencies = false;
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
  std::uint64_t ok = 0;       //!< accepted 200 responses in the window
  std::uint64_t non_200 = 0;  //!< other statuses completed in the window
  std::uint64_t rejected = 0; //!< 200 responses `accept` turned down
  std::uint64_t errors = 0;   //!< connect, write and read failures
  std::string first_error;    //!< the first failure, non-200 or rejected answer
  std::chrono::nanoseconds window{0}; //!< how long requests were counted
  latency_histogram latency;          //!< of the ok responses
  /// With keep_latencies, each latency of the ok responses, exact (the
  /// histogram is within 1%), in no particular order.
  std::vector<std::chrono::nanoseconds> latencies;

  /// Ok responses a second over the window.
  double req_per_s() const;
  /// Requests that did not end in an ok response.
  std::uint64_t failures() const { return non_200 + rejected + errors; }
};

/// The bytes the client sends for `o` with `body`: Content-Length is sent
/// unless the method is GET with no body. Set-up requests outside a run
/// use it to look like the measured ones.
std::string request_bytes(const load_options& o, std::string_view body = {});

/// Opens the connections, sends requests for `o.duration`, closes them.
/// Blocks the calling thread; failures are counted, never thrown.
load_result run_load(const load_options& o);

} // namespace karvon::bench
