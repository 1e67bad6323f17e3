// GET /api/v1/chat/analytics: its range parameters, and the route's JSON
// over a real PostgreSQL (the handler called directly, no socket).
#include <chrono>
#include <future>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "actors/chat_analytics.hpp"
#include "gateway/chat_analytics_routes.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::gateway {
namespace {

using nlohmann::json;
using std::chrono::system_clock;

// A time point from seconds since 1970 (UTC).
system_clock::time_point at(std::int64_t secs) {
  return system_clock::time_point{std::chrono::seconds{secs}};
}

constexpr std::int64_t may_7_2024_noon = 1715083200; // 2024-05-07T12:00:00Z

actors::analytics_range range_of(std::optional<std::string> from,
                                 std::optional<std::string> to,
                                 std::int64_t now = may_7_2024_noon) {
  auto r = actors::analytics_range_of(from, to, at(now));
  if (auto f = std::get_if<actors::failure>(&r)) {
    ADD_FAILURE() << "refused: " << f->field << ": " << f->message;
    return {};
  }
  return std::get<actors::analytics_range>(r);
}

// The field a refused range names, empty when it was accepted.
std::string refused_field(std::optional<std::string> from,
                          std::optional<std::string> to) {
  auto r = actors::analytics_range_of(from, to, at(may_7_2024_noon));
  auto f = std::get_if<actors::failure>(&r);
  if (!f)
    return {};
  EXPECT_EQ(f->code, actors::errc::invalid_input);
  return f->field;
}

TEST(AnalyticsRange, defaults_to_the_seven_utc_days_ending_today) {
  auto r = range_of(std::nullopt, std::nullopt);
  EXPECT_EQ(r.from, "2024-05-01");
  EXPECT_EQ(r.to, "2024-05-07");
  // A second before midnight UTC is still the 7th; midnight is the 8th.
  EXPECT_EQ(range_of(std::nullopt, std::nullopt, 1715126399).to, "2024-05-07");
  EXPECT_EQ(range_of(std::nullopt, std::nullopt, 1715126400).to, "2024-05-08");
}

TEST(AnalyticsRange, a_lone_to_ends_a_week_and_a_lone_from_runs_to_today) {
  auto r = range_of(std::nullopt, "2024-03-02");
  EXPECT_EQ(r.from, "2024-02-25");
  EXPECT_EQ(r.to, "2024-03-02");
  r = range_of("2024-04-20", std::nullopt);
  EXPECT_EQ(r.from, "2024-04-20");
  EXPECT_EQ(r.to, "2024-05-07");
}

TEST(AnalyticsRange, a_single_day_is_a_range) {
  auto r = range_of("2024-02-29", "2024-02-29");
  EXPECT_EQ(r.from, "2024-02-29");
  EXPECT_EQ(r.to, "2024-02-29");
}

TEST(AnalyticsRange, refuses_a_malformed_date_naming_its_parameter) {
  for (const char* bad :
       {"", "2024-5-01", "2024-05-1", "2024/05/01", "2024-05-01T00:00:00Z",
        " 2024-05-01", "2024-13-01", "2024-00-10", "2024-04-31", "2023-02-29",
        "0000-01-01", "abcd-ef-gh", "+202-05-01"}) {
    EXPECT_EQ(refused_field(bad, "2024-05-07"), "from") << bad;
    EXPECT_EQ(refused_field("2024-05-01", bad), "to") << bad;
  }
}

TEST(AnalyticsRange, refuses_from_after_to) {
  EXPECT_EQ(refused_field("2024-05-08", "2024-05-07"), "from");
  EXPECT_EQ(refused_field("2024-05-08", std::nullopt), "from");
}

TEST(AnalyticsRange, allows_92_days_and_refuses_93) {
  // January, February (29 days in 2024) and March are 91 days.
  EXPECT_EQ(refused_field("2024-01-01", "2024-04-01"), "");
  EXPECT_EQ(refused_field("2024-01-01", "2024-04-02"), "from");
}

TEST(AnalyticsRange, the_utc_date_of_a_time_before_1970_is_the_day_before) {
  EXPECT_EQ(actors::utc_date(at(0)), "1970-01-01");
  EXPECT_EQ(actors::utc_date(at(-1)), "1969-12-31");
  EXPECT_EQ(actors::utc_date(at(951782400)), "2000-02-29");
}

class ChatAnalyticsRoute : public ::testing::Test {
protected:
  void SetUp() override {
    db_ = testing::fresh_database();
    persistence::migrate(db_);
    pool_ = std::make_unique<persistence::db_pool>(
        persistence::pool_options{db_, 2, 100, {}}, nullptr);
  }

  void TearDown() override { pool_->stop(); }

  void add(const std::string& at, const std::string& question,
           const std::string& source, double confidence, double latency_ms,
           bool cache_hit) {
    pqxx::connection c{db_};
    pqxx::work tx{c};
    tx.exec_params(
        "INSERT INTO chat_turns (session_id, owner, turn_no, question, "
        "answer, language, source, confidence, latency_ms, cache_hit, "
        "prompt_tokens, completion_tokens, created_at) VALUES ('s1', "
        "'user/api:1:u1', $1, $2, 'an answer', 'ru', $3, $4, $5, $6, 120, 30, "
        "$7::timestamptz)",
        ++turns_, question, source, confidence, latency_ms, cache_hit, at);
    tx.commit();
  }

  // Calls the route's handler as the dispatcher would for an operator.
  response get(actors::chat_analytics& analytics, const std::string& query) {
    router r;
    add_chat_analytics_routes(r, analytics);
    auto m = r.match("GET", "/api/v1/chat/analytics");
    EXPECT_TRUE(m.found);
    if (!m.found)
      return {};
    request req;
    req.method = "GET";
    req.path = "/api/v1/chat/analytics";
    req.query_string = query;
    req.target = req.path + (query.empty() ? "" : "?" + query);
    req.route = "/api/v1/chat/analytics";
    req.caller = actors::principal{7, actors::role::operator_, {}, "ops"};
    auto answer = std::make_shared<std::promise<response>>();
    m.found->run(req, [answer](response res) { answer->set_value(res); });
    auto got = answer->get_future();
    EXPECT_EQ(got.wait_for(std::chrono::seconds{20}),
              std::future_status::ready);
    return got.get();
  }

  std::string db_;
  std::unique_ptr<persistence::db_pool> pool_;
  int turns_ = 0;
};

TEST_F(ChatAnalyticsRoute, is_for_operators) {
  actors::chat_analytics analytics{*pool_};
  router r;
  add_chat_analytics_routes(r, analytics);
  auto m = r.match("GET", "/api/v1/chat/analytics");
  ASSERT_TRUE(m.found);
  EXPECT_FALSE(m.found->who.anonymous);
  EXPECT_EQ(m.found->who.roles,
            std::vector<actors::role>{actors::role::operator_});
  EXPECT_EQ(r.match("POST", "/api/v1/chat/analytics").status, 405);
}

TEST_F(ChatAnalyticsRoute, answers_the_report_as_json) {
  add("2024-05-01T09:00:00Z", "Где мой заказ?", "llm", 0.9, 10.04, false);
  add("2024-05-01T09:30:00Z", "где мой  заказ?", "cache", 0.9, 1.0, true);
  add("2024-05-02T23:59:59Z", "Можно оплатить биткоином?", "fallback", 0.05,
      30.0, false);
  add("2024-05-03T00:00:00Z", "out of the range", "kb", 0.9, 5.0, false);

  actors::chat_analytics analytics{*pool_};
  auto res = get(analytics, "from=2024-05-01&to=2024-05-02");
  ASSERT_EQ(res.status, 200) << res.body;
  auto j = json::parse(res.body);
  EXPECT_EQ(j["from"], "2024-05-01");
  EXPECT_EQ(j["to"], "2024-05-02");

  auto& totals = j["totals"];
  EXPECT_EQ(totals["asks"], 3);
  EXPECT_EQ(totals["by_source"],
            (json{{"cache", 1}, {"fallback", 1}, {"kb", 0}, {"llm", 1}}));
  EXPECT_EQ(totals["by_language"], (json{{"en", 0}, {"ru", 3}, {"uz", 0}}));
  EXPECT_EQ(totals["cache_hit_rate"], 0.333);
  EXPECT_EQ(totals["latency_ms"]["p50"], 10); // 10.04, to a tenth
  EXPECT_EQ(totals["tokens"], (json{{"prompt", 360}, {"completion", 90}}));
  EXPECT_EQ(totals["low_confidence"], 1);

  ASSERT_EQ(j["days"].size(), 2u);
  auto& day = j["days"][0];
  EXPECT_EQ(day["date"], "2024-05-01");
  EXPECT_EQ(day["asks"], 2);
  EXPECT_EQ(day["cache_hit_rate"], 0.5);
  EXPECT_EQ(day["latency_ms"]["p50"], 5.5);
  EXPECT_EQ(day["latency_ms"]["p95"], 9.6); // 1 + 0.95 * 9.04, rounded
  EXPECT_EQ(j["days"][1]["date"], "2024-05-02");

  ASSERT_EQ(j["top_questions"].size(), 2u);
  EXPECT_EQ(j["top_questions"][0]["question"], "где мой заказ?");
  EXPECT_EQ(j["top_questions"][0]["count"], 2);
  EXPECT_EQ(j["top_questions"][0]["last_asked_at"],
            "2024-05-01T09:30:00.000000Z");

  ASSERT_EQ(j["gaps"].size(), 1u);
  auto& gap = j["gaps"][0];
  EXPECT_EQ(gap["question"], "можно оплатить биткоином?");
  EXPECT_EQ(gap["example"], "Можно оплатить биткоином?");
  EXPECT_EQ(gap["count"], 1);
  EXPECT_EQ(gap["language"], "ru");
  EXPECT_EQ(gap["avg_confidence"], 0.05);
}

TEST_F(ChatAnalyticsRoute, an_empty_range_has_null_rates_and_no_days) {
  actors::chat_analytics analytics{*pool_};
  auto res = get(analytics, "from=2024-05-01&to=2024-05-01");
  ASSERT_EQ(res.status, 200) << res.body;
  auto j = json::parse(res.body);
  EXPECT_EQ(j["totals"]["asks"], 0);
  EXPECT_TRUE(j["totals"]["cache_hit_rate"].is_null());
  EXPECT_TRUE(j["totals"]["latency_ms"]["p50"].is_null());
  EXPECT_TRUE(j["totals"]["latency_ms"]["p95"].is_null());
  EXPECT_EQ(j["days"], json::array());
  EXPECT_EQ(j["top_questions"], json::array());
  EXPECT_EQ(j["gaps"], json::array());
}

TEST_F(ChatAnalyticsRoute, without_parameters_reports_the_last_week) {
  actors::chat_analytics analytics{*pool_};
  auto res = get(analytics, "");
  ASSERT_EQ(res.status, 200) << res.body;
  auto j = json::parse(res.body);
  auto today = actors::utc_date(system_clock::now());
  // Unless the day turned during the request.
  if (j["to"] == today) {
    auto week = actors::analytics_range_of(std::nullopt, std::nullopt,
                                           system_clock::now());
    EXPECT_EQ(j["from"], std::get<actors::analytics_range>(week).from);
  }
}

TEST_F(ChatAnalyticsRoute, a_bad_range_is_400_naming_the_parameter) {
  actors::chat_analytics analytics{*pool_};
  for (auto [query, field] :
       {std::pair{"from=2024-02-30", "from"}, std::pair{"to=yesterday", "to"},
        std::pair{"from=2024-05-09&to=2024-05-08", "from"},
        std::pair{"from=2024-01-01&to=2024-12-31", "from"}}) {
    auto res = get(analytics, query);
    EXPECT_EQ(res.status, 400) << query;
    auto j = json::parse(res.body, nullptr, false);
    EXPECT_EQ(j["error"]["code"], "invalid_field") << query;
    EXPECT_EQ(j["error"]["details"]["field"], field) << query;
  }
}

TEST_F(ChatAnalyticsRoute, too_many_reports_at_once_is_503_with_retry_after) {
  actors::chat_analytics none_at_a_time{*pool_, /*max_running=*/0};
  auto res = get(none_at_a_time, "from=2024-05-01&to=2024-05-01");
  EXPECT_EQ(res.status, 503);
  bool retry_after = false;
  for (auto& [name, value] : res.headers)
    retry_after |= name == "Retry-After";
  EXPECT_TRUE(retry_after);
}

TEST_F(ChatAnalyticsRoute, a_database_that_is_down_is_503) {
  // Nothing listens on port 1: the pool's connection fails.
  persistence::db_pool down{
      {"host=127.0.0.1 port=1 dbname=x connect_timeout=2", 1, 10, {}}, nullptr};
  actors::chat_analytics analytics{down};
  auto res = get(analytics, "from=2024-05-01&to=2024-05-01");
  EXPECT_EQ(res.status, 503) << res.body;
  down.stop();
}

} // namespace
} // namespace karvon::gateway
