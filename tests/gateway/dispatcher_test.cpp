#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/clock.hpp"
#include "gateway/dispatcher.hpp"
#include "metrics/registry.hpp"

namespace karvon::gateway {
namespace {

using nlohmann::json;

// A dispatcher over a few routes, with no key directory: routes that need a
// key answer 401, which is what these tests look at.
class DispatcherTest : public ::testing::Test {
protected:
  DispatcherTest() {
    router r;
    r.add({"GET", "/health", access::none(), false, false,
           [](const request&, responder done) {
             done(json_response(200, R"({"status":"ok"})"));
           }});
    r.add({"GET", "/open/{name}", access::none(), false, true,
           [](const request& req, responder done) {
             done(json_response(200, json{{"name", req.param("name")}}.dump()));
           }});
    r.add({"POST", "/open/echo", access::none(), true, true,
           [this](const request& req, responder done) {
             ++echo_calls;
             done(json_response(200, req.json->dump()));
           }});
    r.add({"GET", "/keyed", access::only({actors::role::operator_}), false,
           true, [](const request&, responder done) {
             done(json_response(200, "{}"));
           }});
    r.add({"GET", "/throws", access::none(), false, true,
           [](const request&, responder) -> void {
             throw std::runtime_error("boom");
           }});
    r.add({"GET", "/twice", access::none(), false, true,
           [](const request&, responder done) {
             done(json_response(200, "{\"n\":1}"));
             done(json_response(500, "{\"n\":2}"));
           }});
    config::http_settings http;
    d = std::make_unique<dispatcher>(std::move(r), http, nullptr, metrics,
                                     clock);
  }

  response call(std::string method, std::string target, std::string body = {},
                header_list headers = {}, std::string ip = "10.0.0.1") {
    request req;
    req.method = std::move(method);
    req.target = target;
    auto q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos)
      req.query_string = target.substr(q + 1);
    req.body = std::move(body);
    req.headers = std::move(headers);
    req.client_ip = std::move(ip);
    std::optional<response> got;
    int calls = 0;
    d->dispatch(std::move(req), [&](response r) {
      ++calls;
      got = std::move(r);
    });
    EXPECT_EQ(calls, 1);
    return got.value_or(response{});
  }

  static std::string code_of(const response& r) {
    auto j = json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("error"))
      return {};
    return j["error"]["code"].get<std::string>();
  }

  static std::string header(const response& r, const std::string& name) {
    for (auto& [k, v] : r.headers)
      if (k == name)
        return v;
    return {};
  }

  metrics::registry metrics;
  actors::manual_clock clock;
  std::unique_ptr<dispatcher> d;
  int echo_calls = 0;
};

TEST_F(DispatcherTest, an_unknown_path_is_404_in_the_error_shape) {
  auto r = call("GET", "/nowhere");
  EXPECT_EQ(r.status, 404);
  auto j = json::parse(r.body);
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_TRUE(j["error"]["message"].is_string());
}

TEST_F(DispatcherTest, a_wrong_method_is_405_with_allow) {
  auto r = call("DELETE", "/health");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(header(r, "Allow"), "GET");
  EXPECT_EQ(code_of(r), "method_not_allowed");
}

TEST_F(DispatcherTest, a_keyed_route_without_a_key_is_401) {
  auto r = call("GET", "/keyed");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(header(r, "WWW-Authenticate"), "Bearer");
}

TEST_F(DispatcherTest, a_malformed_authorization_header_is_401) {
  for (auto value : {"Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "kv_123"}) {
    auto r = call("GET", "/keyed", {}, {{"authorization", value}},
                  std::string{"10.1.0."} + std::to_string(value[0]));
    EXPECT_EQ(r.status, 401) << value;
  }
}

TEST_F(DispatcherTest, a_presented_key_is_checked_even_on_open_routes) {
  auto r = call("GET", "/open/x", {}, {{"authorization", "Bearer nonsense"}});
  EXPECT_EQ(r.status, 401);
}

TEST_F(DispatcherTest, guessing_keys_is_limited_by_the_anonymous_rate) {
  int unauthorized = 0;
  int limited = 0;
  for (int i = 0; i < 30; ++i) {
    auto r = call("GET", "/keyed", {}, {}, "10.9.9.9");
    unauthorized += r.status == 401;
    limited += r.status == 429;
  }
  EXPECT_EQ(unauthorized, 10); // the burst band: 10 at once
  EXPECT_EQ(limited, 20);
}

TEST_F(DispatcherTest, anonymous_requests_are_limited_per_ip) {
  int ok = 0;
  response last;
  for (int i = 0; i < 25; ++i) {
    last = call("GET", "/open/a", {}, {}, "192.0.2.1");
    ok += last.status == 200;
    clock.advance(std::chrono::milliseconds{200}); // 5/s, under the burst
  }
  EXPECT_GE(ok, 20);
  EXPECT_LE(ok, 22);
  EXPECT_EQ(last.status, 429);
  EXPECT_EQ(code_of(last), "rate_limited");
  auto retry = std::stoi(header(last, "Retry-After"));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 3);
  // Another client is not affected.
  EXPECT_EQ(call("GET", "/open/a", {}, {}, "192.0.2.2").status, 200);
}

TEST_F(DispatcherTest, liveness_is_never_rate_limited) {
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(call("GET", "/health").status, 200) << i;
}

TEST_F(DispatcherTest, a_json_route_refuses_another_content_type_with_415) {
  auto r = call("POST", "/open/echo", "{}", {{"content-type", "text/plain"}});
  EXPECT_EQ(r.status, 415);
  r = call("POST", "/open/echo", "{}");
  EXPECT_EQ(r.status, 415);
  EXPECT_EQ(echo_calls, 0);
}

TEST_F(DispatcherTest, malformed_json_is_400_and_reaches_no_handler) {
  header_list json_type{{"content-type", "application/json"}};
  for (std::string body : {"{", "{\"a\":}", "", "nul", "{\"a\":1}x"}) {
    auto r = call("POST", "/open/echo", body, json_type);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(code_of(r), "malformed_json") << body;
    clock.advance(std::chrono::seconds{10});
  }
  EXPECT_EQ(echo_calls, 0);
}

TEST_F(DispatcherTest, json_that_is_not_an_object_is_400) {
  header_list json_type{{"content-type", "application/json"}};
  for (std::string body : {"[]", "1", "\"s\"", "null"}) {
    auto r = call("POST", "/open/echo", body, json_type);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_EQ(code_of(r), "invalid_body") << body;
    clock.advance(std::chrono::seconds{10});
  }
  EXPECT_EQ(echo_calls, 0);
}

TEST_F(DispatcherTest, invalid_utf8_in_a_json_string_is_400) {
  header_list json_type{{"content-type", "application/json"}};
  auto r = call("POST", "/open/echo", "{\"name\":\"\xff\xfe\"}", json_type);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(code_of(r), "malformed_json");
  r = call("POST", "/open/echo", "{\"name\":\"\xc3\x28\"}", json_type);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(echo_calls, 0);
}

TEST_F(DispatcherTest, a_valid_object_reaches_the_handler_parsed) {
  auto r = call("POST", "/open/echo", R"({"name":"o'zbek ўзбек"})",
                {{"content-type", "application/json; charset=utf-8"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["name"], "o'zbek ўзбек");
}

TEST_F(DispatcherTest, a_throwing_handler_is_a_500_not_a_crash) {
  auto r = call("GET", "/throws");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(code_of(r), "internal_error");
}

TEST_F(DispatcherTest, a_handler_answering_twice_sends_one_response) {
  auto r = call("GET", "/twice"); // call() checks the responder ran once
  EXPECT_EQ(r.status, 200);
}

TEST_F(DispatcherTest, metrics_label_the_route_template_not_the_path) {
  call("GET", "/open/alice");
  call("GET", "/open/bob");
  call("GET", "/nowhere/at/all");
  auto text = metrics.render();
  EXPECT_NE(
      text.find(
          "karvon_http_requests_total{route=\"/open/{name}\",code=\"200\"} 2"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          "karvon_http_requests_total{route=\"unmatched\",code=\"404\"} 1"),
      std::string::npos);
  EXPECT_EQ(text.find("alice"), std::string::npos);
  EXPECT_NE(text.find("karvon_http_request_duration_seconds_count{route=\"/"
                      "open/{name}\"} 2"),
            std::string::npos);
}

TEST_F(DispatcherTest, rate_limited_responses_are_counted) {
  for (int i = 0; i < 30; ++i)
    call("GET", "/open/a", {}, {}, "198.51.100.7");
  auto text = metrics.render();
  EXPECT_NE(text.find("karvon_http_rate_limited_total{limit=\"ip\"} 20"),
            std::string::npos)
      << text;
}

} // namespace
} // namespace karvon::gateway
