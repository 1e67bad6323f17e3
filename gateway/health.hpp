// GET /health (liveness), GET /health/detailed (a check per dependency) and
// GET /metrics (Prometheus text format 0.0.4). Later modules add their
// dependencies to the same check list.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gateway/router.hpp"

namespace karvon::metrics {
class registry;
}
namespace karvon::actors {
class timer_service;
}

namespace karvon::gateway {

struct check_result {
  bool ok = false;
  std::chrono::microseconds latency{0};
  std::string error; //!< why it failed; empty when ok
};

/// Starts a check and calls back once, from any thread.
using health_check = std::function<void(std::function<void(check_result)>)>;

struct health_options {
  std::string node_id;
  std::string version;
  bool metrics_public = false; //!< metrics.public: /metrics without a key
  std::chrono::milliseconds check_timeout{2000};
};

class health_checks {
public:
  /// A critical check that fails makes the node "down" (503); any other
  /// that fails makes it "degraded" (200).
  void add(std::string name, bool critical, health_check check);

  struct entry {
    std::string name;
    bool critical;
    health_check check;
  };
  const std::vector<entry>& entries() const { return entries_; }

private:
  std::vector<entry> entries_;
};

/// Adds the three routes to `r`. `checks`, `metrics` and `timers` must
/// outlive the router.
void add_health_routes(router& r, const health_checks& checks,
                       metrics::registry& metrics,
                       actors::timer_service& timers, health_options options);

} // namespace karvon::gateway
