// GET /admin/dead-letters and POST /admin/dead-letters/{id}/replay on a real
// node. Replaying into a running sink is tested with the sink itself
// (tests/actors/dead_letter_service_test.cpp).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/server/node_fixture.hpp"

namespace karvon::testing {
namespace {

using nlohmann::json;

class DeadLetters : public NodeTest {
protected:
  void add(const std::string& kind, const std::string& payload) {
    execute(node_->conninfo(),
            "INSERT INTO dead_letters (kind, sink, payload, last_error, "
            "attempts) VALUES ('"
                + kind + "', 'telegram:shopbot', '" + payload
                + "', '429 Too Many Requests', 5)");
  }
  json get(const std::string& target, const std::string& key) {
    auto r = http_request(port(), "GET", target, {}, bearer(key));
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }
};

TEST_F(DeadLetters, are_listed_newest_first_and_paged) {
  for (int i = 0; i < 5; ++i)
    add("telegram.send", "message " + std::to_string(i));
  auto page = get("/admin/dead-letters?limit=2", admin_key_);
  ASSERT_EQ(page["dead_letters"].size(), 2u);
  EXPECT_EQ(page["dead_letters"][0]["payload"], "message 4");
  EXPECT_EQ(page["dead_letters"][0]["attempts"], 5);
  EXPECT_EQ(page["dead_letters"][0]["replayed_at"], nullptr);
  auto next = page["next_before"].get<std::int64_t>();
  auto rest = get("/admin/dead-letters?limit=10&before=" + std::to_string(next),
                  admin_key_);
  ASSERT_EQ(rest["dead_letters"].size(), 3u);
  EXPECT_EQ(rest["dead_letters"][2]["payload"], "message 0");
  EXPECT_EQ(rest["next_before"], nullptr);
}

TEST_F(DeadLetters, are_filtered_by_kind) {
  add("telegram.send", "a");
  add("llm.chat", "b");
  auto only = get("/admin/dead-letters?kind=llm.chat", admin_key_);
  ASSERT_EQ(only["dead_letters"].size(), 1u);
  EXPECT_EQ(only["dead_letters"][0]["payload"], "b");
}

TEST_F(DeadLetters, bad_paging_parameters_are_400) {
  for (auto q : {"limit=0", "limit=1001", "limit=x", "before=-3"}) {
    auto r
        = http_request(port(), "GET", std::string{"/admin/dead-letters?"} + q,
                       {}, bearer(admin_key_));
    EXPECT_EQ(r.status, 400) << q;
  }
}

TEST_F(DeadLetters, operators_may_read_but_not_replay) {
  add("telegram.send", "x");
  auto op = create_key(actors::role::operator_);
  wait_for_key(op);
  EXPECT_EQ(
      http_request(port(), "GET", "/admin/dead-letters", {}, bearer(op)).status,
      200);
  EXPECT_EQ(http_request(port(), "POST", "/admin/dead-letters/1/replay", {},
                         bearer(op))
                .status,
            403);
  auto client = create_key(actors::role::client);
  wait_for_key(op);
  auto r
      = http_request(port(), "GET", "/admin/dead-letters", {}, bearer(client));
  for (int i = 0; i < 50 && r.status == 401; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
    r = http_request(port(), "GET", "/admin/dead-letters", {}, bearer(client));
  }
  EXPECT_EQ(r.status, 403);
}

TEST_F(DeadLetters, replaying_an_unknown_one_is_404) {
  EXPECT_EQ(http_request(port(), "POST", "/admin/dead-letters/999/replay", {},
                         bearer(admin_key_))
                .status,
            404);
  EXPECT_EQ(http_request(port(), "POST", "/admin/dead-letters/abc/replay", {},
                         bearer(admin_key_))
                .status,
            404);
}

TEST_F(DeadLetters,
       replaying_one_whose_sink_is_not_here_is_409_and_changes_nothing) {
  add("telegram.send", "x");
  auto r = http_request(port(), "POST", "/admin/dead-letters/1/replay", {},
                        bearer(admin_key_));
  EXPECT_EQ(r.status, 409) << r.body;
  auto after = get("/admin/dead-letters", admin_key_);
  EXPECT_EQ(after["dead_letters"][0]["replay_count"], 0);
}

} // namespace
} // namespace karvon::testing
