// http_health: GET /health through karvon's whole HTTP gateway (server,
// dispatcher, router, metrics) against the raw Beast server, with the same
// load client and the same number of server threads. /health does no work
// of its own, so the gap is what the gateway costs per request.
#include <chrono>
#include <memory>

#include "actors/clock.hpp"
#include "actors/timer_service.hpp"
#include "bench/load_client.hpp"
#include "bench/raw_server.hpp"
#include "bench/scenario.hpp"
#include "gateway/dispatcher.hpp"
#include "gateway/health.hpp"
#include "gateway/router.hpp"
#include "gateway/server.hpp"
#include "metrics/registry.hpp"

namespace karvon::bench {

namespace {

// The gateway as app/node.cpp builds it, minus what /health never touches
// (database, API keys, partner routes).
class karvon_gateway {
public:
  explicit karvon_gateway(int threads) {
    metrics::register_process_metrics(metrics_);
    gateway::router routes;
    gateway::add_health_routes(routes, checks_, metrics_, timers_,
                               {"bench", "bench", false});
    config::http_settings http;
    dispatcher_ = std::make_unique<gateway::dispatcher>(
        std::move(routes), http, /*keys=*/nullptr, metrics_,
        actors::system_clock());
    gateway::server_options so;
    so.host = "127.0.0.1";
    so.port = 0;
    so.threads = threads;
    so.http = http;
    server_ = std::make_unique<gateway::http_server>(so, metrics_);
    server_->start(*dispatcher_);
  }

  ~karvon_gateway() { server_->stop(std::chrono::milliseconds{1000}); }

  std::uint16_t port() const { return server_->port(); }

private:
  // Declared in start order, destroyed in reverse (as in the node).
  metrics::registry metrics_;
  actors::timer_service timers_;
  gateway::health_checks checks_;
  std::unique_ptr<gateway::dispatcher> dispatcher_;
  std::unique_ptr<gateway::http_server> server_;
};

side load_side(std::uint16_t port, const options& o) {
  return [port, connections = o.connections](std::chrono::milliseconds d) {
    load_options lo;
    lo.port = port;
    lo.target = "/health";
    lo.connections = connections;
    lo.duration = d;
    auto r = run_load(lo);
    sample s;
    // Whole microseconds: the histogram is no finer than 1% anyway.
    auto p99_us = std::chrono::round<std::chrono::microseconds>(
        r.latency.percentile(0.99));
    s.values = {r.req_per_s(), static_cast<double>(p99_us.count()) / 1000.0};
    s.errors = r.failures();
    s.first_error = r.first_error;
    return s;
  };
}

} // namespace

scenario http_health_scenario() {
  std::vector<figure> figures = {
      {"req_per_s", "1/s", "raw_beast", better::higher},
      {"p99_ms", "ms", "raw_beast", better::lower},
  };
  return {"http_health",
          "GET /health through the gateway vs a raw Beast server", figures,
          [figures](const options& o) {
            karvon_gateway ours{o.threads};
            raw_http_server raw{o.threads};
            raw.start();
            return measure_interleaved(figures, o, load_side(ours.port(), o),
                                       load_side(raw.port(), o));
          }};
}

} // namespace karvon::bench
