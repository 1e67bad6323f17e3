#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "actors/clock.hpp"
#include "actors/timer_service.hpp"
#include "bench/load_client.hpp"
#include "bench/raw_server.hpp"
#include "gateway/dispatcher.hpp"
#include "gateway/health.hpp"
#include "gateway/server.hpp"
#include "metrics/registry.hpp"

namespace karvon::bench {
namespace {

using namespace std::chrono_literals;
namespace net = boost::asio;

load_options quick(std::uint16_t port) {
  load_options o;
  o.port = port;
  o.connections = 4;
  o.duration = 200ms;
  o.drain = 200ms;
  return o;
}

TEST(RunLoad, counts_the_200_responses_of_the_raw_server) {
  raw_http_server server{1};
  server.start();
  auto r = run_load(quick(server.port()));
  EXPECT_GT(r.ok, 0u);
  EXPECT_EQ(r.errors, 0u) << r.first_error;
  EXPECT_EQ(r.non_200, 0u);
  EXPECT_EQ(r.latency.count(), r.ok);
  EXPECT_EQ(r.window, std::chrono::nanoseconds{200ms});
  EXPECT_GT(r.req_per_s(), 0.0);
}

TEST(RunLoad, counts_other_statuses_apart_from_200) {
  metrics::registry registry;
  actors::timer_service timers;
  gateway::health_checks checks;
  gateway::router routes;
  gateway::add_health_routes(routes, checks, registry, timers, {});
  config::http_settings http;
  gateway::dispatcher d{std::move(routes), http, nullptr, registry,
                        actors::system_clock()};
  gateway::http_server server{{}, registry};
  server.start(d);
  auto o = quick(server.port());
  o.target = "/no/such/path";
  auto r = run_load(o);
  server.stop(1s);
  EXPECT_EQ(r.ok, 0u);
  EXPECT_GT(r.non_200, 0u);
  EXPECT_EQ(r.first_error.rfind("HTTP 404", 0), 0u) << r.first_error;
}

TEST(RunLoad, counts_connections_that_cannot_connect_as_errors) {
  std::uint16_t closed_port = 0;
  {
    // A port that was free a moment ago and has nobody listening now.
    net::io_context ioc;
    net::ip::tcp::acceptor a{ioc, {net::ip::make_address("127.0.0.1"), 0}};
    closed_port = a.local_endpoint().port();
  }
  auto r = run_load(quick(closed_port));
  EXPECT_EQ(r.ok, 0u);
  EXPECT_EQ(r.errors, 4u);
  EXPECT_EQ(r.first_error.rfind("connect: ", 0), 0u) << r.first_error;
}

TEST(RunLoad, cuts_off_a_server_that_never_answers) {
  // Listening but never accepting: the kernel completes the handshake and
  // takes the request, and no answer ever comes.
  net::io_context ioc;
  net::ip::tcp::acceptor silent{ioc, {net::ip::make_address("127.0.0.1"), 0}};
  auto started = std::chrono::steady_clock::now();
  auto r = run_load(quick(silent.local_endpoint().port()));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_EQ(r.ok, 0u);
  EXPECT_EQ(r.errors, 4u) << r.first_error;
}

} // namespace
} // namespace karvon::bench
