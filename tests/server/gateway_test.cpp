// The HTTP gateway end to end: a real node, real sockets, real PostgreSQL.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "persistence/api_key_store.hpp"
#include "tests/server/node_fixture.hpp"

namespace karvon::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string error_code(const http_reply& r) {
  auto j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("error"))
    return "<no error body: " + r.body + ">";
  return j["error"]["code"].get<std::string>();
}

using Gateway = NodeTest;

TEST_F(Gateway, health_answers_ok_without_a_key) {
  auto r = http_request(port(), "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["status"], "ok");
  EXPECT_EQ(r.header("Content-Type"), "application/json");
}

TEST_F(Gateway, head_of_health_has_no_body) {
  http_connection c{port()};
  auto r = c.raw("HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  // A second request on the same connection proves no stray body was sent.
  auto again = c.request("GET", "/health");
  EXPECT_EQ(again.status, 200);
}

TEST_F(Gateway, one_connection_serves_many_requests) {
  http_connection c{port()};
  for (int i = 0; i < 50; ++i) {
    auto r = c.request("GET", "/health");
    ASSERT_EQ(r.status, 200) << i;
    ASSERT_FALSE(r.closed);
  }
}

TEST_F(Gateway, detailed_health_reports_the_database_with_its_latency) {
  auto r
      = http_request(port(), "GET", "/health/detailed", {}, bearer(admin_key_));
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["checks"]["database"]["status"], "ok");
  EXPECT_GE(j["checks"]["database"]["latency_ms"].get<double>(), 0.0);
  EXPECT_EQ(j["checks"]["runtime"]["status"], "ok");
}

TEST_F(Gateway, detailed_health_needs_an_operator_or_admin_key) {
  EXPECT_EQ(http_request(port(), "GET", "/health/detailed").status, 401);
  auto client = create_key(actors::role::client);
  wait_for_key(admin_key_);
  auto r = http_request(port(), "GET", "/health/detailed", {}, bearer(client));
  for (int i = 0; i < 50 && r.status == 401; ++i) {
    std::this_thread::sleep_for(20ms);
    r = http_request(port(), "GET", "/health/detailed", {}, bearer(client));
  }
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(error_code(r), "forbidden");
  auto op = create_key(actors::role::operator_);
  wait_for_key(op);
  EXPECT_EQ(
      http_request(port(), "GET", "/health/detailed", {}, bearer(op)).status,
      200);
}

TEST_F(Gateway, metrics_are_prometheus_text_with_route_templates) {
  http_request(port(), "GET", "/health");
  http_request(port(), "GET", "/api/v1/partners/acme", {}, bearer(admin_key_));
  auto r = http_request(port(), "GET", "/metrics", {}, bearer(admin_key_));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.body.find(
                "karvon_http_requests_total{route=\"/health\",code=\"200\"} 1"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("karvon_http_requests_total{route=\"/api/v1/partners/"
                        "{id}\",code=\"404\"} 1"),
            std::string::npos);
  EXPECT_EQ(r.body.find("acme"), std::string::npos);
  EXPECT_NE(r.body.find("# TYPE karvon_http_request_duration_seconds "
                        "histogram"),
            std::string::npos);
  EXPECT_NE(r.body.find("process_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(r.body.find("karvon_http_open_connections "), std::string::npos);
  // The partner was looked up through its entity (and found missing).
  EXPECT_NE(r.body.find("karvon_entity_activations_total{kind=\"partner\"} 1"),
            std::string::npos);
  EXPECT_NE(r.body.find("karvon_entities_active{kind=\"partner\"} 1"),
            std::string::npos);
  EXPECT_EQ(http_request(port(), "GET", "/metrics").status, 401);
}

TEST_F(Gateway, an_unknown_route_is_404_and_a_wrong_method_is_405) {
  auto r = http_request(port(), "GET", "/api/v1/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r), "not_found");
  r = http_request(port(), "DELETE", "/health");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "GET");
}

TEST_F(Gateway, keys_that_are_missing_malformed_or_unknown_get_401) {
  auto path = "/api/v1/partners/acme";
  EXPECT_EQ(http_request(port(), "GET", path).status, 401);
  EXPECT_EQ(
      http_request(port(), "GET", path, {}, {{"Authorization", "Basic eDp5"}})
          .status,
      401);
  EXPECT_EQ(http_request(port(), "GET", path, {}, bearer("kv_nonsense")).status,
            401);
  auto unknown = actors::generate_api_key().text;
  auto r = http_request(port(), "GET", path, {}, bearer(unknown));
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(error_code(r), "unauthorized");
  // Right lookup, wrong secret.
  auto tampered = admin_key_;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(http_request(port(), "GET", path, {}, bearer(tampered)).status,
            401);
}

TEST_F(Gateway, a_revoked_key_is_refused_within_a_second) {
  auto key = create_key(actors::role::operator_);
  auto id = last_key_id_;
  wait_for_key(key);
  {
    pqxx::connection c{node_->conninfo()};
    ASSERT_TRUE(persistence::revoke_api_key(c, id));
  }
  auto revoked_at = std::chrono::steady_clock::now();
  http_reply r;
  while (std::chrono::steady_clock::now() - revoked_at < 3s) {
    r = http_request(port(), "GET", "/health/detailed", {}, bearer(key));
    if (r.status == 401)
      break;
    std::this_thread::sleep_for(20ms);
  }
  auto took = std::chrono::steady_clock::now() - revoked_at;
  EXPECT_EQ(r.status, 401);
  EXPECT_LT(took, 1s);
  EXPECT_NE(r.body.find("revoked"), std::string::npos);
}

TEST_F(Gateway, the_last_use_of_a_key_is_recorded) {
  auto key = create_key(actors::role::operator_);
  auto id = last_key_id_;
  auto unused = create_key(actors::role::operator_);
  auto unused_id = last_key_id_;
  wait_for_key(key);
  auto conninfo = node_->conninfo();
  node_->stop(); // writes what is pending
  pqxx::connection c{conninfo};
  std::map<std::int64_t, std::string> last_used;
  for (auto& row : persistence::list_api_keys(c))
    last_used[row.id] = row.last_used_at;
  EXPECT_FALSE(last_used[id].empty());
  EXPECT_TRUE(last_used[unused_id].empty());
  (void)unused;
}

TEST_F(Gateway, a_partner_key_reaches_only_its_own_partner) {
  auto created = http_request(port(), "POST", "/api/v1/partners",
                              R"({"id":"acme","name":"Acme"})",
                              bearer(admin_key_, true));
  ASSERT_EQ(created.status, 201) << created.body;
  http_request(port(), "POST", "/api/v1/partners",
               R"({"id":"globex","name":"Globex"})", bearer(admin_key_, true));
  auto key = create_key(actors::role::partner, "acme");
  wait_for_key(admin_key_);
  http_reply own;
  for (int i = 0; i < 50; ++i) {
    own = http_request(port(), "GET", "/api/v1/partners/acme", {}, bearer(key));
    if (own.status != 401)
      break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(json::parse(own.body)["name"], "Acme");
  auto other
      = http_request(port(), "GET", "/api/v1/partners/globex", {}, bearer(key));
  EXPECT_EQ(other.status, 403);
  auto create = http_request(port(), "POST", "/api/v1/partners",
                             R"({"name":"Mine"})", bearer(key, true));
  EXPECT_EQ(create.status, 403);
}

TEST_F(Gateway, a_partner_looked_up_before_it_exists_is_found_once_created) {
  auto missing = http_request(port(), "GET", "/api/v1/partners/late", {},
                              bearer(admin_key_));
  EXPECT_EQ(missing.status, 404);
  ASSERT_EQ(http_request(port(), "POST", "/api/v1/partners",
                         R"({"id":"late","name":"Late Ltd"})",
                         bearer(admin_key_, true))
                .status,
            201);
  auto found = http_request(port(), "GET", "/api/v1/partners/late", {},
                            bearer(admin_key_));
  EXPECT_EQ(found.status, 200) << found.body;
}

TEST_F(Gateway, creating_a_partner_answers_201_and_a_repeat_id_409) {
  auto r = http_request(port(), "POST", "/api/v1/partners",
                        R"({"name":"Acme","monthly_budget_usd":12.5,
                            "max_concurrency":8})",
                        bearer(admin_key_, true));
  ASSERT_EQ(r.status, 201) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["name"], "Acme");
  EXPECT_EQ(j["monthly_budget_usd"], 12.5);
  EXPECT_EQ(j["max_concurrency"], 8);
  auto id = j["id"].get<std::string>();
  EXPECT_FALSE(id.empty());
  auto again = http_request(port(), "POST", "/api/v1/partners",
                            json{{"id", id}, {"name", "Other"}}.dump(),
                            bearer(admin_key_, true));
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(count_rows("partners"), 1);
}

TEST_F(Gateway, a_repeated_idempotency_key_returns_the_first_response) {
  auto h = bearer(admin_key_, true);
  h.emplace_back("Idempotency-Key", "create-acme-1");
  auto first = http_request(port(), "POST", "/api/v1/partners",
                            R"({"name":"Acme"})", h);
  ASSERT_EQ(first.status, 201) << first.body;
  auto again = http_request(port(), "POST", "/api/v1/partners",
                            R"({"name":"Acme"})", h);
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, first.body); // the same generated id
  EXPECT_EQ(again.header("Idempotent-Replayed"), "true");
  EXPECT_EQ(count_rows("partners"), 1);
}

TEST_F(Gateway, the_same_idempotency_key_with_another_body_is_409) {
  auto h = bearer(admin_key_, true);
  h.emplace_back("Idempotency-Key", "k-2");
  ASSERT_EQ(
      http_request(port(), "POST", "/api/v1/partners", R"({"name":"Acme"})", h)
          .status,
      201);
  auto other = http_request(port(), "POST", "/api/v1/partners",
                            R"({"name":"Globex"})", h);
  EXPECT_EQ(other.status, 409);
  EXPECT_EQ(error_code(other), "idempotency_key_reused");
  EXPECT_EQ(count_rows("partners"), 1);
}

TEST_F(Gateway, idempotency_keys_of_different_api_keys_do_not_collide) {
  auto second_admin = create_key(actors::role::admin);
  wait_for_key(second_admin);
  auto h1 = bearer(admin_key_, true);
  h1.emplace_back("Idempotency-Key", "same");
  auto h2 = bearer(second_admin, true);
  h2.emplace_back("Idempotency-Key", "same");
  EXPECT_EQ(
      http_request(port(), "POST", "/api/v1/partners", R"({"name":"One"})", h1)
          .status,
      201);
  EXPECT_EQ(
      http_request(port(), "POST", "/api/v1/partners", R"({"name":"Two"})", h2)
          .status,
      201);
  EXPECT_EQ(count_rows("partners"), 2);
}

TEST_F(Gateway, a_bad_request_with_an_idempotency_key_is_answered_alike_again) {
  auto h = bearer(admin_key_, true);
  h.emplace_back("Idempotency-Key", "retry-me");
  // 400s are answers too, and are replayed: a bad body stays bad.
  auto bad = http_request(port(), "POST", "/api/v1/partners", R"({})", h);
  EXPECT_EQ(bad.status, 400);
  auto again = http_request(port(), "POST", "/api/v1/partners", R"({})", h);
  EXPECT_EQ(again.status, 400);
  // A malformed key is refused before anything runs.
  auto h2 = bearer(admin_key_, true);
  h2.emplace_back("Idempotency-Key", std::string(300, 'k'));
  auto long_key
      = http_request(port(), "POST", "/api/v1/partners", R"({"name":"X"})", h2);
  EXPECT_EQ(long_key.status, 400);
  EXPECT_EQ(count_rows("partners"), 0);
}

TEST_F(Gateway, concurrent_requests_with_one_idempotency_key_create_once) {
  std::vector<std::thread> threads;
  std::atomic<int> created{0}, replayed{0}, busy{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      auto h = bearer(admin_key_, true);
      h.emplace_back("Idempotency-Key", "race");
      auto r = http_request(port(), "POST", "/api/v1/partners",
                            R"({"name":"Racer"})", h);
      if (r.status == 201 && r.header("Idempotent-Replayed").empty())
        ++created;
      else if (r.status == 201)
        ++replayed;
      else if (r.status == 409)
        ++busy;
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(created + replayed + busy, 8);
  EXPECT_EQ(count_rows("partners"), 1);
}

// Each bad request below gets its answer and writes nothing.
class BadInput : public NodeTest {
protected:
  http_reply post(const std::string& body,
                  const std::string& type = "application/json") {
    return http_request(
        port(), "POST", "/api/v1/partners", body,
        {{"Authorization", "Bearer " + admin_key_}, {"Content-Type", type}});
  }
  void SetUp() override {
    NodeTest::start_node([](config::settings& s) {
      s.http.max_body_bytes = 1024;
      s.http.max_header_bytes = 2048;
      s.http.key_rate_per_min = 10000;
      s.http.burst_per_s = 10000;
    });
  }
  void TearDown() override {
    EXPECT_EQ(count_rows("partners"), 0);
    // The server still answers after all of it.
    EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);
    NodeTest::TearDown();
  }
};

TEST_F(BadInput, malformed_json_is_400) {
  auto r = post("{\"name\": ");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "malformed_json");
}

TEST_F(BadInput, json_that_is_not_an_object_is_400) {
  auto r = post("[{\"name\":\"x\"}]");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "invalid_body");
}

TEST_F(BadInput, a_missing_field_is_400_naming_it) {
  auto r = post("{\"monthly_budget_usd\": 5}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["details"]["field"], "name");
}

TEST_F(BadInput, a_wrongly_typed_field_is_400_naming_it) {
  auto r = post(R"({"name":"x","max_concurrency":"many"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["details"]["field"],
            "max_concurrency");
  r = post(R"({"name":42})");
  EXPECT_EQ(json::parse(r.body)["error"]["details"]["field"], "name");
}

TEST_F(BadInput, invalid_utf8_in_a_string_is_400) {
  auto r = post("{\"name\":\"bad \xc3\x28 byte\"}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r), "malformed_json");
}

TEST_F(BadInput, a_wrong_content_type_is_415) {
  auto r = post(R"({"name":"x"})", "text/plain");
  EXPECT_EQ(r.status, 415);
}

TEST_F(BadInput, a_body_over_the_limit_is_413_before_it_is_read) {
  http_connection c{port()};
  // Announce 10 MB and send none of it: the answer must come anyway.
  auto r = c.raw("POST /api/v1/partners HTTP/1.1\r\nHost: t\r\nAuthorization: "
                 "Bearer "
                     + admin_key_
                     + "\r\nContent-Type: application/json\r\n"
                       "Content-Length: 10485760\r\n\r\n",
                 3s);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(error_code(r), "payload_too_large");
  EXPECT_TRUE(c.closed_by_server(2s));
}

TEST_F(BadInput, a_chunked_body_over_the_limit_is_413) {
  http_connection c{port()};
  std::string chunk(800, 'a');
  char size[16];
  std::snprintf(size, sizeof size, "%zx", chunk.size());
  auto r = c.raw("POST /api/v1/partners HTTP/1.1\r\nHost: t\r\nAuthorization: "
                 "Bearer "
                     + admin_key_
                     + "\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"
                     + size + "\r\n" + chunk + "\r\n" + size + "\r\n" + chunk
                     + "\r\n0\r\n\r\n",
                 3s);
  EXPECT_EQ(r.status, 413);
}

TEST_F(BadInput, a_header_over_the_limit_is_431_and_the_connection_closes) {
  http_connection c{port()};
  auto r = c.raw("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: "
                     + std::string(4096, 'x') + "\r\n\r\n",
                 3s);
  EXPECT_EQ(r.status, 431);
  EXPECT_TRUE(c.closed_by_server(2s));
}

TEST_F(BadInput, a_request_line_over_the_limit_is_refused) {
  http_connection c{port()};
  auto r = c.raw("GET /health?" + std::string(4096, 'q')
                     + " HTTP/1.1\r\nHost: t\r\n\r\n",
                 3s);
  EXPECT_EQ(r.status, 431);
}

TEST_F(BadInput, transfer_encoding_gzip_with_content_length_is_400) {
  http_connection c{port()};
  auto r = c.raw("POST /api/v1/partners HTTP/1.1\r\nHost: t\r\n"
                 "Transfer-Encoding: gzip\r\nContent-Length: 12\r\n\r\n"
                 "{\"name\":\"x\"}",
                 3s);
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.closed_by_server(2s));
}

TEST_F(BadInput, chunked_with_content_length_is_400_and_closes) {
  http_connection c{port()};
  auto r = c.raw("POST /api/v1/partners HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n",
                 3s);
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.closed_by_server(2s));
}

TEST_F(BadInput, two_differing_content_lengths_are_400) {
  http_connection c{port()};
  auto r = c.raw("POST /api/v1/partners HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 2\r\nContent-Length: 12\r\n\r\n"
                 "{\"name\":\"x\"}",
                 3s);
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.closed_by_server(2s));
}

TEST_F(BadInput, garbage_instead_of_http_is_400) {
  http_connection c{port()};
  auto r = c.raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
                 3s);
  EXPECT_EQ(r.status, 400);
}

TEST_F(Gateway, a_client_that_stalls_mid_request_is_cut_off_and_blocks_no_one) {
  node_->stop();
  start_node([](config::settings& s) { s.http.read_timeout_ms = 500; });
  http_connection slow{port()};
  slow.send("POST /api/v1/partners HTTP/1.1\r\nHost: t\r\nContent-Le");
  // Others are served while it stalls.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(slow.closed_by_server(3s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
}

TEST_F(Gateway, a_slow_loris_trickling_headers_is_cut_off_at_the_read_timeout) {
  node_->stop();
  start_node([](config::settings& s) { s.http.read_timeout_ms = 600; });
  http_connection slow{port()};
  slow.send("GET /health HTTP/1.1\r\n");
  auto started = std::chrono::steady_clock::now();
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {
    slow.send("X-Trickle-" + std::to_string(i) + ": a\r\n");
    closed = slow.closed_by_server(100ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
}

TEST_F(
    Gateway,
    a_thousand_requests_in_a_second_from_one_key_get_429s_and_others_are_served) {
  node_->stop();
  start_node([](config::settings& s) {
    s.http.key_rate_per_min = 100; // the defaults of API.md
    s.http.burst_per_s = 10;
  });
  auto key = create_key(actors::role::operator_);
  auto other = create_key(actors::role::operator_);
  wait_for_key(other);
  wait_for_key(key); // this took one token of key's burst
  std::atomic<int> ok{0}, limited{0}, other_status{0};
  std::string retry_after;
  std::mutex m;
  std::vector<std::thread> threads;
  auto started = std::chrono::steady_clock::now();
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      http_connection c{port()};
      for (int i = 0; i < 250; ++i) {
        auto r = c.request("GET", "/health/detailed", {}, bearer(key));
        if (r.status == 200)
          ++ok;
        else if (r.status == 429) {
          ++limited;
          std::lock_guard l{m};
          retry_after = r.header("Retry-After");
        }
      }
    });
  std::thread bystander([&] {
    std::this_thread::sleep_for(50ms);
    other_status
        = http_request(port(), "GET", "/health/detailed", {}, bearer(other))
              .status;
  });
  for (auto& t : threads)
    t.join();
  std::chrono::duration<double> took
      = std::chrono::steady_clock::now() - started;
  bystander.join();
  // The burst of 10, less the one wait_for_key took, plus what the burst
  // band refills (10/s) while the requests run.
  auto allowed = 10 + static_cast<int>(10 * took.count()) + 1;
  EXPECT_LE(ok.load(), allowed) << "in " << took.count() << " s";
  EXPECT_GE(ok.load(), 9);
  EXPECT_EQ(ok.load() + limited.load(), 1000);
  EXPECT_GE(std::stoi(retry_after), 1);
  EXPECT_EQ(other_status.load(), 200);
  EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);
  auto metrics = http_request(port(), "GET", "/metrics", {}, bearer(other));
  EXPECT_NE(metrics.body.find("karvon_http_rate_limited_total{limit=\"key\"}"),
            std::string::npos);
}

TEST_F(Gateway, connections_over_the_cap_get_503_and_the_others_keep_working) {
  node_->stop();
  start_node([](config::settings& s) { s.http.max_connections = 4; });
  std::vector<std::unique_ptr<http_connection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<http_connection>(port()));
    ASSERT_EQ(held.back()->request("GET", "/health").status, 200);
  }
  http_connection extra{port()};
  auto r = extra.read(3s);
  EXPECT_EQ(r.status, 503) << r.error;
  EXPECT_EQ(r.header("Retry-After"), "1");
  EXPECT_EQ(held[0]->request("GET", "/health").status, 200);
  held.clear();
  // Room again once they closed.
  for (int i = 0; i < 100; ++i) {
    auto again = http_request(port(), "GET", "/health");
    if (again.status == 200)
      return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "connections never came back under the cap";
}

} // namespace
} // namespace karvon::testing
