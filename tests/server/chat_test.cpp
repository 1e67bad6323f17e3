// POST /api/v1/chat/ask through a real node without an LLM: answers from
// the knowledge base, sessions per user, turns recorded, bad input named.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/demo_kb.hpp"
#include "persistence/chat_store.hpp"
#include "tests/server/node_fixture.hpp"

namespace karvon::testing {
namespace {

using nlohmann::json;

class Chat : public NodeTest {
protected:
  void SetUp() override {
    NodeTest::SetUp();
    ids_ = post_demo_knowledge_base();
    client_ = create_key(actors::role::client);
    wait_for_key(client_);
  }

  http_reply ask(json body, const std::string& key = {}) {
    return http_request(port(), "POST", "/api/v1/chat/ask", body.dump(),
                        bearer(key.empty() ? client_ : key, true));
  }

  std::map<std::string, std::int64_t> ids_;
  std::string client_;
};

TEST_F(Chat, answers_from_the_knowledge_base_in_the_questions_language) {
  auto r = ask({{"user_id", "u1"}, {"question", "можно оплатить наличными?"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["source"], "kb");
  EXPECT_EQ(j["language"], "ru");
  ASSERT_FALSE(j["sources"].empty());
  EXPECT_EQ(j["sources"][0]["document_id"], ids_["payment/ru"]);
  EXPECT_NE(j["answer"].get<std::string>().find("наличными"),
            std::string::npos);
  EXPECT_GT(j["confidence"].get<double>(), 0.12);
  EXPECT_FALSE(j["session_id"].get<std::string>().empty());
  EXPECT_GE(j["latency_ms"].get<double>(), 0.0);
}

TEST_F(Chat, the_requests_language_wins_over_detection) {
  auto r = ask({{"user_id", "u1"}, {"question", "humo"}, {"language", "uz"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["language"], "uz");
  EXPECT_EQ(j["sources"][0]["document_id"], ids_["payment/uz"]);
}

TEST_F(Chat, a_question_without_an_answer_says_so_in_its_language) {
  auto j = json::parse(
      ask({{"user_id", "u1"}, {"question", "какая погода на марсе"}}).body);
  EXPECT_EQ(j["source"], "kb");
  EXPECT_TRUE(j["sources"].empty());
  EXPECT_NE(j["answer"].get<std::string>().find("Извините"), std::string::npos);
}

TEST_F(Chat, turns_are_recorded_in_the_users_session) {
  auto first = json::parse(
      ask({{"user_id", "u1"}, {"question", "is delivery free"}}).body);
  auto session = first["session_id"].get<std::string>();
  auto second = ask({{"user_id", "u1"},
                     {"question", "and how long does it take"},
                     {"session_id", session}});
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(json::parse(second.body)["session_id"], session);
  EXPECT_EQ(query_value(node_->conninfo(),
                        "SELECT count(*) FROM chat_turns WHERE session_id = '"
                            + session + "'"),
            "2");
  // Another user may not write into it.
  auto theirs = ask({{"user_id", "u2"},
                     {"question", "is delivery free"},
                     {"session_id", session}});
  EXPECT_EQ(theirs.status, 404) << theirs.body;
  EXPECT_EQ(count_rows("chat_turns"), 2);
}

TEST_F(Chat, a_sessions_turns_page_newest_last_for_their_own_client) {
  auto first = json::parse(
      ask({{"user_id", "u1"}, {"question", "is delivery free"}}).body);
  auto session = first["session_id"].get<std::string>();
  ASSERT_EQ(ask({{"user_id", "u1"},
                 {"question", "can i pay cash"},
                 {"session_id", session}})
                .status,
            200);
  auto path = "/api/v1/chat/sessions/" + session + "/turns";
  auto all = json::parse(
      http_request(port(), "GET", path, {}, bearer(client_)).body);
  ASSERT_EQ(all["turns"].size(), 2u);
  EXPECT_EQ(all["turns"][0]["question"], "is delivery free");
  EXPECT_EQ(all["turns"][1]["question"], "can i pay cash");
  EXPECT_EQ(all["turns"][1]["source"], "kb");
  EXPECT_TRUE(all["next_before"].is_null());

  auto newest = json::parse(
      http_request(port(), "GET", path + "?limit=1", {}, bearer(client_)).body);
  ASSERT_EQ(newest["turns"].size(), 1u);
  EXPECT_EQ(newest["turns"][0]["question"], "can i pay cash");
  auto older = json::parse(
      http_request(
          port(), "GET",
          path + "?before=" + std::to_string(newest["next_before"].get<long>()),
          {}, bearer(client_))
          .body);
  ASSERT_EQ(older["turns"].size(), 1u);
  EXPECT_EQ(older["turns"][0]["question"], "is delivery free");

  auto other = create_key(actors::role::client);
  wait_for_key(other);
  EXPECT_EQ(http_request(port(), "GET", path, {}, bearer(other)).status, 404);
  EXPECT_EQ(http_request(port(), "GET", path, {}, bearer(admin_key_)).status,
            200);
  EXPECT_EQ(http_request(port(), "GET", "/api/v1/chat/sessions/nope/turns", {},
                         bearer(client_))
                .status,
            404);
  EXPECT_EQ(http_request(port(), "GET", path + "?limit=0", {}, bearer(client_))
                .status,
            400);
}

TEST_F(Chat, sessions_past_their_retention_are_deleted_with_their_turns) {
  auto old
      = json::parse(ask({{"user_id", "u1"}, {"question", "is delivery free"}})
                        .body)["session_id"]
            .get<std::string>();
  auto live
      = json::parse(ask({{"user_id", "u2"}, {"question", "can i pay cash"}})
                        .body)["session_id"]
            .get<std::string>();
  ASSERT_EQ(ask({{"user_id", "u2"},
                 {"question", "and by card"},
                 {"session_id", live}})
                .status,
            200);
  // Every turn of `old` is past the retention; `live` has an old first
  // turn but was used since, so it stays whole.
  execute(node_->conninfo(),
          "UPDATE chat_turns SET created_at = now() - interval '91 days' "
          "WHERE session_id = '"
              + old + "' OR (session_id = '" + live + "' AND turn_no = 1)");
  pqxx::connection c{node_->conninfo()};
  // Walk in batches of one turn: the live session's old turn is passed
  // over, not stuck on.
  int deleted = 0;
  std::int64_t cursor = 0;
  int rounds = 0;
  do {
    auto [n, next] = persistence::delete_old_chat_sessions(c, 90, 1, cursor);
    deleted += n;
    cursor = next;
    ASSERT_LT(++rounds, 10);
  } while (cursor != 0);
  EXPECT_EQ(deleted, 1);
  EXPECT_EQ(count_rows("chat_turns"), 2);
  EXPECT_EQ(query_value(node_->conninfo(),
                        "SELECT count(*) FROM chat_turns WHERE session_id = '"
                            + live + "'"),
            "2");
}

TEST_F(Chat, asking_needs_a_key_unless_anonymous_chat_is_allowed) {
  json body{{"user_id", "visitor"}, {"question", "is delivery free"}};
  EXPECT_EQ(http_request(port(), "POST", "/api/v1/chat/ask", body.dump(),
                         {{"Content-Type", "application/json"}})
                .status,
            401);
  node_->stop();
  start_node([](config::settings& s) { s.chat.allow_anonymous = true; });
  auto r = http_request(port(), "POST", "/api/v1/chat/ask", body.dump(),
                        {{"Content-Type", "application/json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["source"], "kb");
  EXPECT_EQ(query_value(node_->conninfo(), "SELECT owner FROM chat_turns"),
            "user/anon:visitor");
}

TEST_F(Chat, bad_input_is_a_400_naming_the_field) {
  auto field_of = [&](const json& body) {
    auto r = ask(body);
    EXPECT_EQ(r.status, 400) << body.dump();
    auto j = json::parse(r.body, nullptr, false);
    return j.is_discarded() ? std::string{}
                            : j["error"]["details"]["field"].get<std::string>();
  };
  EXPECT_EQ(field_of({{"question", "hi"}}), "user_id");
  EXPECT_EQ(field_of({{"user_id", "a b"}, {"question", "hi"}}), "user_id");
  EXPECT_EQ(field_of({{"user_id", "u1"}}), "question");
  EXPECT_EQ(field_of({{"user_id", "u1"}, {"question", "  "}}), "question");
  EXPECT_EQ(field_of({{"user_id", "u1"}, {"question", std::string(4001, 'a')}}),
            "question");
  EXPECT_EQ(
      field_of({{"user_id", "u1"}, {"question", "hi"}, {"language", "de"}}),
      "language");
  EXPECT_EQ(
      field_of(
          {{"user_id", "u1"}, {"question", "hi"}, {"session_id", "no/slash"}}),
      "session_id");
  EXPECT_EQ(count_rows("chat_turns"), 0);
}

TEST_F(Chat, operators_may_not_ask) {
  auto op = create_key(actors::role::operator_);
  wait_for_key(op);
  EXPECT_EQ(ask({{"user_id", "u1"}, {"question", "hi"}}, op).status, 403);
}

} // namespace
} // namespace karvon::testing
