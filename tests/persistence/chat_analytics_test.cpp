#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "persistence/chat_analytics.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

// One row of chat_turns as the chat writes it; the tests set what matters.
struct turn {
  std::string at; //!< created_at, any timestamptz literal
  std::string question = "how do I pay?";
  std::string language = "en";
  std::string source = "kb";
  double confidence = 0.8;
  double latency_ms = 10;
  bool cache_hit = false;
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

class ChatAnalytics : public ::testing::Test {
protected:
  void SetUp() override {
    db_ = testing::fresh_database();
    migrate(db_);
    conn_ = std::make_unique<pqxx::connection>(db_);
  }

  void add(const turn& t) {
    pqxx::work tx{*conn_};
    tx.exec_params(
        "INSERT INTO chat_turns (session_id, owner, turn_no, question, "
        "answer, language, source, confidence, latency_ms, llm_ms, "
        "cache_hit, prompt_tokens, completion_tokens, model, created_at) "
        "VALUES ('s1', 'user/api:1:u1', $1, $2, 'an answer', $3, $4, $5, $6, "
        "0, $7, $8, $9, 'm', $10::timestamptz)",
        ++turns_, t.question, t.language, t.source, t.confidence, t.latency_ms,
        t.cache_hit, t.prompt_tokens, t.completion_tokens, t.at);
    tx.commit();
  }

  void add_at(const std::string& at) {
    turn t;
    t.at = at;
    add(t);
  }

  chat_analytics_report read(const std::string& from, const std::string& to) {
    return read_chat_analytics(*conn_, from, to);
  }

  std::string db_;
  std::unique_ptr<pqxx::connection> conn_;
  int turns_ = 0;
};

std::vector<std::string> dates(const chat_analytics_report& r) {
  std::vector<std::string> out;
  for (auto& d : r.days)
    out.push_back(d.date);
  return out;
}

TEST_F(ChatAnalytics, buckets_turns_by_their_utc_day_across_midnight) {
  add_at("2024-05-01T23:59:59.999999Z");
  add_at("2024-05-02T00:00:00Z");
  // 02:30 on the 2nd in Tashkent is still the 1st in UTC.
  add_at("2024-05-02T02:30:00+05:00");
  add_at("2024-05-03T12:00:00Z");

  auto r = read("2024-05-01", "2024-05-03");
  EXPECT_EQ(r.from, "2024-05-01");
  EXPECT_EQ(r.to, "2024-05-03");
  ASSERT_EQ(dates(r), (std::vector<std::string>{"2024-05-01", "2024-05-02",
                                                "2024-05-03"}));
  EXPECT_EQ(r.days[0].figures.asks, 2);
  EXPECT_EQ(r.days[1].figures.asks, 1);
  EXPECT_EQ(r.days[2].figures.asks, 1);
  EXPECT_EQ(r.totals.asks, 4);
}

TEST_F(ChatAnalytics, omits_days_without_asks) {
  add_at("2024-05-01T08:00:00Z");
  add_at("2024-05-04T08:00:00Z");
  auto r = read("2024-05-01", "2024-05-07");
  EXPECT_EQ(dates(r), (std::vector<std::string>{"2024-05-01", "2024-05-04"}));
}

TEST_F(ChatAnalytics, interpolates_latency_percentiles_per_day_and_overall) {
  for (double ms : {40.0, 10.0, 30.0, 20.0}) {
    turn t;
    t.at = "2024-05-01T10:00:00Z";
    t.latency_ms = ms;
    add(t);
  }
  turn slow;
  slow.at = "2024-05-02T10:00:00Z";
  slow.latency_ms = 100;
  add(slow);

  auto r = read("2024-05-01", "2024-05-02");
  ASSERT_EQ(r.days.size(), 2u);
  // percentile_cont: the 0.95 point of 10, 20, 30, 40 is 2.85 steps in.
  EXPECT_DOUBLE_EQ(*r.days[0].figures.p50_latency_ms, 25);
  EXPECT_DOUBLE_EQ(*r.days[0].figures.p95_latency_ms, 38.5);
  EXPECT_DOUBLE_EQ(*r.days[1].figures.p50_latency_ms, 100);
  EXPECT_DOUBLE_EQ(*r.days[1].figures.p95_latency_ms, 100);
  // Over the range: 10, 20, 30, 40, 100; 0.95 is 3.8 steps in.
  EXPECT_DOUBLE_EQ(*r.totals.p50_latency_ms, 30);
  EXPECT_DOUBLE_EQ(*r.totals.p95_latency_ms, 88);
}

TEST_F(ChatAnalytics, counts_sources_languages_cache_hits_and_tokens) {
  auto add_one = [&](const char* at, const char* source, const char* language,
                     bool hit, int prompt, int completion) {
    turn t;
    t.at = at;
    t.source = source;
    t.language = language;
    t.cache_hit = hit;
    t.prompt_tokens = prompt;
    t.completion_tokens = completion;
    add(t);
  };
  add_one("2024-05-01T09:00:00Z", "llm", "uz", false, 300, 80);
  add_one("2024-05-01T09:01:00Z", "cache", "uz", true, 0, 0);
  add_one("2024-05-01T09:02:00Z", "cache", "ru", true, 0, 0);
  add_one("2024-05-01T09:03:00Z", "kb", "en", false, 0, 0);
  add_one("2024-05-02T09:00:00Z", "llm", "ru", false, 200, 50);

  auto r = read("2024-05-01", "2024-05-02");
  ASSERT_EQ(r.days.size(), 2u);
  auto& d1 = r.days[0].figures;
  EXPECT_EQ(d1.asks, 4);
  EXPECT_EQ(d1.by_source,
            (std::map<std::string, std::int64_t>{
                {"cache", 2}, {"fallback", 0}, {"kb", 1}, {"llm", 1}}));
  EXPECT_EQ(d1.by_language, (std::map<std::string, std::int64_t>{
                                {"en", 1}, {"ru", 1}, {"uz", 2}}));
  EXPECT_EQ(d1.cache_hits, 2);
  EXPECT_DOUBLE_EQ(*d1.cache_hit_rate(), 0.5);
  EXPECT_EQ(d1.prompt_tokens, 300);
  EXPECT_EQ(d1.completion_tokens, 80);

  auto& d2 = r.days[1].figures;
  EXPECT_EQ(d2.by_source.at("llm"), 1);
  EXPECT_EQ(d2.by_source.at("cache"), 0);
  EXPECT_EQ(d2.by_language.at("ru"), 1);
  EXPECT_DOUBLE_EQ(*d2.cache_hit_rate(), 0);

  EXPECT_EQ(r.totals.asks, 5);
  EXPECT_EQ(r.totals.by_source,
            (std::map<std::string, std::int64_t>{
                {"cache", 2}, {"fallback", 0}, {"kb", 1}, {"llm", 2}}));
  EXPECT_EQ(r.totals.by_language, (std::map<std::string, std::int64_t>{
                                      {"en", 1}, {"ru", 2}, {"uz", 2}}));
  EXPECT_DOUBLE_EQ(*r.totals.cache_hit_rate(), 0.4);
  EXPECT_EQ(r.totals.prompt_tokens, 500);
  EXPECT_EQ(r.totals.completion_tokens, 130);
}

TEST_F(ChatAnalytics, groups_top_questions_by_their_normalized_text) {
  auto ask = [&](const char* at, const char* q) {
    turn t;
    t.at = at;
    t.question = q;
    add(t);
  };
  ask("2024-05-01T09:00:00Z", "Where is my order?");
  ask("2024-05-01T09:05:00Z", "  where is my  order? ");
  ask("2024-05-02T11:00:00Z", "WHERE IS MY\torder?\n");
  ask("2024-05-02T11:30:00Z", "Where is my order?");
  ask("2024-05-01T10:00:00Z", "Где мой заказ?");
  ask("2024-05-02T10:00:00Z", "где  мой заказ?");
  ask("2024-05-01T12:00:00Z", "Do you deliver on Sunday?");

  auto r = read("2024-05-01", "2024-05-02");
  ASSERT_EQ(r.top_questions.size(), 3u);
  EXPECT_EQ(r.top_questions[0].question, "where is my order?");
  EXPECT_EQ(r.top_questions[0].example, "Where is my order?");
  EXPECT_EQ(r.top_questions[0].count, 4);
  EXPECT_EQ(r.top_questions[0].last_asked_at, "2024-05-02T11:30:00.000000Z");
  EXPECT_EQ(r.top_questions[1].question, "где мой заказ?");
  EXPECT_EQ(r.top_questions[1].count, 2);
  EXPECT_EQ(r.top_questions[2].question, "do you deliver on sunday?");
  EXPECT_EQ(r.top_questions[2].count, 1);
}

TEST_F(ChatAnalytics, keeps_the_ten_most_asked_questions) {
  // Question i is asked i times: 1 to 12.
  for (int i = 1; i <= 12; ++i)
    for (int n = 0; n < i; ++n) {
      turn t;
      t.at = "2024-05-01T10:00:00Z";
      t.question = "question " + std::to_string(i);
      add(t);
    }
  auto r = read("2024-05-01", "2024-05-01");
  ASSERT_EQ(r.top_questions.size(), 10u);
  EXPECT_EQ(r.top_questions.front().question, "question 12");
  EXPECT_EQ(r.top_questions.front().count, 12);
  EXPECT_EQ(r.top_questions.back().question, "question 3");
  EXPECT_EQ(r.top_questions.back().count, 3);
}

TEST_F(ChatAnalytics,
       lists_the_questions_answered_with_low_confidence_as_gaps) {
  auto ask = [&](const char* q, const char* language, const char* source,
                 double confidence) {
    turn t;
    t.at = "2024-05-01T10:00:00Z";
    t.question = q;
    t.language = language;
    t.source = source;
    t.confidence = confidence;
    add(t);
  };
  ask("Can I pay with crypto?", "en", "kb", 0.1);
  ask("can i pay with crypto?", "en", "llm", 0.2);
  ask("Can I pay with  crypto?", "ru", "kb", 0.15);
  ask("Do you sell gift cards?", "uz", "fallback", 0.05);
  // A fallback (the LLM was late) with a good match is not a gap.
  ask("When do you open?", "en", "fallback", 0.7);
  // At the threshold it is an answer, not a gap.
  ask("How do I return a phone?", "en", "kb", 0.3);
  ask("Can I pay with crypto?", "en", "kb", 0.9);

  auto r = read("2024-05-01", "2024-05-01");
  EXPECT_EQ(r.totals.low_confidence, 4);
  EXPECT_EQ(r.days.at(0).figures.low_confidence, 4);
  ASSERT_EQ(r.gaps.size(), 2u);
  auto& crypto = r.gaps[0];
  EXPECT_EQ(crypto.question, "can i pay with crypto?");
  EXPECT_EQ(crypto.count, 3); // its well-answered ask is not counted
  EXPECT_EQ(crypto.language, "en");
  EXPECT_NEAR(crypto.avg_confidence, 0.15, 1e-6);
  EXPECT_FALSE(crypto.example.empty());
  EXPECT_EQ(crypto.last_asked_at, "2024-05-01T10:00:00.000000Z");
  EXPECT_EQ(r.gaps[1].question, "do you sell gift cards?");
  EXPECT_EQ(r.gaps[1].example, "Do you sell gift cards?");
  EXPECT_EQ(r.gaps[1].language, "uz");
  EXPECT_EQ(r.gaps[1].count, 1);
}

TEST_F(ChatAnalytics, reads_the_range_with_both_of_its_days_included) {
  add_at("2024-04-30T23:59:59.999999Z"); // the day before: out
  add_at("2024-05-01T00:00:00Z");        // first instant of `from`: in
  add_at("2024-05-03T23:59:59.999999Z"); // last instant of `to`: in
  add_at("2024-05-04T00:00:00Z");        // the day after: out

  auto r = read("2024-05-01", "2024-05-03");
  EXPECT_EQ(r.totals.asks, 2);
  EXPECT_EQ(dates(r), (std::vector<std::string>{"2024-05-01", "2024-05-03"}));

  auto one = read("2024-05-04", "2024-05-04");
  EXPECT_EQ(one.totals.asks, 1);
  EXPECT_EQ(dates(one), (std::vector<std::string>{"2024-05-04"}));
}

TEST_F(ChatAnalytics, an_empty_range_has_zero_totals_and_no_days) {
  add_at("2024-05-10T10:00:00Z");
  auto r = read("2024-05-01", "2024-05-07");
  EXPECT_EQ(r.totals.asks, 0);
  EXPECT_EQ(r.totals.cache_hits, 0);
  EXPECT_FALSE(r.totals.cache_hit_rate());
  EXPECT_FALSE(r.totals.p50_latency_ms);
  EXPECT_FALSE(r.totals.p95_latency_ms);
  EXPECT_EQ(r.totals.prompt_tokens, 0);
  EXPECT_EQ(r.totals.low_confidence, 0);
  EXPECT_EQ(r.totals.by_source,
            (std::map<std::string, std::int64_t>{
                {"cache", 0}, {"fallback", 0}, {"kb", 0}, {"llm", 0}}));
  EXPECT_EQ(r.totals.by_language, (std::map<std::string, std::int64_t>{
                                      {"en", 0}, {"ru", 0}, {"uz", 0}}));
  EXPECT_TRUE(r.days.empty());
  EXPECT_TRUE(r.top_questions.empty());
  EXPECT_TRUE(r.gaps.empty());
}

TEST_F(ChatAnalytics, reads_chat_turns_only_through_the_created_at_index) {
  add_at("2024-04-01T10:00:00Z");
  add_at("2024-05-01T10:00:00Z");
  add_at("2024-06-01T10:00:00Z");
  // The table is tiny, so the planner would rather scan it: price
  // sequential scans out, and see that no statement of the report needs one.
  pqxx::nontransaction{*conn_}.exec("SET enable_seqscan = off");
  auto scans = [&] {
    // Flush this backend's counters now (PostgreSQL 15), then read them
    // afresh.
    pqxx::nontransaction{*conn_}.exec("SELECT pg_stat_force_next_flush()");
    pqxx::nontransaction tx{*conn_};
    tx.exec("SELECT pg_stat_clear_snapshot()");
    auto r = tx.exec1("SELECT seq_scan, idx_scan FROM pg_stat_user_tables "
                      "WHERE relname = 'chat_turns'");
    return std::make_pair(r[0].as<std::int64_t>(), r[1].as<std::int64_t>());
  };
  auto before = scans();
  auto r = read("2024-05-01", "2024-05-31");
  EXPECT_EQ(r.totals.asks, 1);
  auto after = scans();
  EXPECT_EQ(after.first, before.first) << "a sequential scan of chat_turns";
  EXPECT_GE(after.second - before.second, 4) << "an index scan a statement";
}

} // namespace
} // namespace karvon::persistence
