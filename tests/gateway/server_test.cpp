// The HTTP server's own behaviour with routes made for the test: stopping
// with requests in flight, handlers that answer late or never.
#include <atomic>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "actors/clock.hpp"
#include "gateway/dispatcher.hpp"
#include "gateway/server.hpp"
#include "metrics/registry.hpp"
#include "tests/support/http_client.hpp"

namespace karvon::gateway {
namespace {

using namespace std::chrono_literals;
using testing::http_connection;
using testing::http_request;

// A server whose /slow answers from another thread after `delay`, and whose
// /never does not answer at all.
class SlowServer : public ::testing::Test {
protected:
  void start(std::chrono::milliseconds handler_timeout = 60s) {
    router r;
    r.add({"GET", "/slow", access::none(), false, false,
           [this](const request&, responder done) {
             ++started_;
             workers_.emplace_back([done, delay = delay_] {
               std::this_thread::sleep_for(delay);
               done(json_response(200, R"({"slow":true})"));
             });
           }});
    r.add({"GET", "/never", access::none(), false, false,
           [this](const request&, responder done) {
             ++started_;
             parked_.push_back(std::move(done)); // keeps it unanswered
           }});
    config::http_settings http;
    d_ = std::make_unique<dispatcher>(std::move(r), http, nullptr, metrics_,
                                      actors::system_clock());
    server_options o;
    o.threads = 2;
    o.handler_timeout = handler_timeout;
    server_ = std::make_unique<http_server>(o, metrics_);
    server_->start(*d_);
  }

  void TearDown() override {
    if (server_)
      server_->stop(0ms);
    for (auto& t : workers_)
      t.join();
  }

  std::chrono::milliseconds delay_{400};
  std::atomic<int> started_{0};
  std::vector<std::thread> workers_;
  std::vector<responder> parked_;
  metrics::registry metrics_;
  std::unique_ptr<dispatcher> d_;
  std::unique_ptr<http_server> server_;
};

TEST_F(SlowServer, stopping_lets_the_request_in_flight_finish) {
  start();
  auto port = server_->port();
  auto reply = std::async(std::launch::async, [port] {
    return http_request(port, "GET", "/slow");
  });
  while (started_.load() == 0)
    std::this_thread::sleep_for(1ms);
  auto stopping = std::chrono::steady_clock::now();
  server_->stop(5s);
  auto took = std::chrono::steady_clock::now() - stopping;
  auto r = reply.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"slow":true})");
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_LT(took, 3s); // it waited for the answer, not the whole grace
}

TEST_F(SlowServer, stopping_closes_idle_connections_at_once) {
  start();
  http_connection idle{server_->port()};
  ASSERT_EQ(idle.request("GET", "/slow").status, 200);
  auto stopping = std::chrono::steady_clock::now();
  server_->stop(5s);
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 1s);
  EXPECT_TRUE(idle.closed_by_server(1s));
}

TEST_F(SlowServer, a_request_past_the_grace_is_cut_off) {
  delay_ = 3000ms;
  start();
  auto port = server_->port();
  auto reply = std::async(std::launch::async, [port] {
    return http_request(port, "GET", "/slow");
  });
  while (started_.load() == 0)
    std::this_thread::sleep_for(1ms);
  auto stopping = std::chrono::steady_clock::now();
  server_->stop(300ms);
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 2s);
  EXPECT_EQ(reply.get().status, 0); // closed without an answer
}

TEST_F(SlowServer, a_handler_that_never_answers_gets_503_at_its_deadline) {
  start(/*handler_timeout=*/300ms);
  auto started = std::chrono::steady_clock::now();
  auto r = http_request(server_->port(), "GET", "/never");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.header("Retry-After"), "1");
  EXPECT_GE(std::chrono::steady_clock::now() - started, 250ms);
  // A late answer after the deadline is dropped, not sent twice.
  parked_.front()(json_response(200, "{}"));
}

TEST_F(SlowServer, a_late_answer_goes_to_its_own_request_only) {
  delay_ = 100ms;
  start();
  http_connection c{server_->port()};
  for (int i = 0; i < 5; ++i) {
    auto r = c.request("GET", "/slow");
    ASSERT_EQ(r.status, 200) << i;
    ASSERT_EQ(r.body, R"({"slow":true})");
  }
}

} // namespace
} // namespace karvon::gateway
