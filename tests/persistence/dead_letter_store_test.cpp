#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/connection>

#include "persistence/db_pool.hpp"
#include "persistence/dead_letter_store.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

class DeadLetterStore : public ::testing::Test {
protected:
  void SetUp() override {
    db_ = testing::fresh_database();
    migrate(db_);
    conn_ = std::make_unique<pqxx::connection>(db_);
  }

  static dead_letter_row row(std::string kind, std::string payload) {
    dead_letter_row r;
    r.kind = std::move(kind);
    r.sink = "telegram:shopbot";
    r.payload = std::move(payload);
    r.last_error = "429: retry after 3 s";
    r.attempts = 5;
    return r;
  }

  template <class F>
  static db_error error_of(F&& f) {
    try {
      f();
    } catch (...) {
      return current_db_error();
    }
    return db_error{db_error::kind::failed, "", "(nothing thrown)"};
  }

  std::vector<std::int64_t> ids(const dead_letter_query& q) {
    std::vector<std::int64_t> out;
    for (auto& r : list_dead_letters(*conn_, q))
      out.push_back(r.id);
    return out;
  }

  std::string db_;
  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(DeadLetterStore, keeps_everything_a_replay_needs) {
  auto r = row("telegram.send", R"({"chat_id":5123,"text":"Салом, dunyo"})");
  r.priority = 2;
  r.sub_key = "5123";
  r.window_calls = 1;
  r.window_ms = 1000;
  r.created_at = "2024-05-01T10:00:00.123456Z";
  r.failed_at = "2024-05-01T10:00:07Z";
  auto id = insert_dead_letter(*conn_, r);
  EXPECT_GT(id, 0);

  auto got = find_dead_letter(*conn_, id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, id);
  EXPECT_EQ(got->kind, "telegram.send");
  EXPECT_EQ(got->sink, "telegram:shopbot");
  EXPECT_EQ(got->payload, r.payload);
  EXPECT_EQ(got->last_error, "429: retry after 3 s");
  EXPECT_EQ(got->attempts, 5);
  EXPECT_EQ(got->priority, 2);
  EXPECT_EQ(got->sub_key, "5123");
  EXPECT_EQ(got->window_calls, 1);
  EXPECT_EQ(got->window_ms, 1000);
  EXPECT_EQ(got->created_at, "2024-05-01T10:00:00.123456Z");
  EXPECT_EQ(got->failed_at, "2024-05-01T10:00:07.000000Z");
  EXPECT_EQ(got->replayed_at, "");
  EXPECT_EQ(got->replay_count, 0);
}

TEST_F(DeadLetterStore, stamps_the_times_a_caller_left_out) {
  auto id = insert_dead_letter(*conn_, row("geocode", "{}"));
  auto got = find_dead_letter(*conn_, id);
  ASSERT_TRUE(got);
  std::regex iso{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"};
  EXPECT_TRUE(std::regex_match(got->created_at, iso)) << got->created_at;
  EXPECT_TRUE(std::regex_match(got->failed_at, iso)) << got->failed_at;
}

TEST_F(DeadLetterStore, finds_nothing_for_an_unknown_id) {
  EXPECT_FALSE(find_dead_letter(*conn_, 12345));
  EXPECT_FALSE(mark_dead_letter_replayed(*conn_, 12345));
}

TEST_F(DeadLetterStore, lists_newest_first_in_pages) {
  std::vector<std::int64_t> all;
  for (int i = 0; i < 7; ++i)
    all.push_back(
        insert_dead_letter(*conn_, row("llm.task", std::to_string(i))));
  dead_letter_query q;
  q.limit = 3;
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{all[6], all[5], all[4]}));
  q.before = all[4];
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{all[3], all[2], all[1]}));
  q.before = all[1];
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{all[0]}));
  q.before = all[0];
  EXPECT_TRUE(ids(q).empty());
}

TEST_F(DeadLetterStore, filters_by_kind) {
  auto a = insert_dead_letter(*conn_, row("llm.task", "a"));
  auto b = insert_dead_letter(*conn_, row("telegram.send", "b"));
  auto c = insert_dead_letter(*conn_, row("llm.task", "c"));
  dead_letter_query q;
  q.kind = "llm.task";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{c, a}));
  q.kind = "telegram.send";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{b}));
  q.kind = "nothing";
  EXPECT_TRUE(ids(q).empty());
  q.kind = "llm.task";
  q.before = c;
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{a}));
}

TEST_F(DeadLetterStore, clamps_the_page_size) {
  for (int i = 0; i < 3; ++i)
    insert_dead_letter(*conn_, row("k", "p"));
  dead_letter_query q;
  q.limit = 0;
  EXPECT_EQ(ids(q).size(), 1u);
  q.limit = -5;
  EXPECT_EQ(ids(q).size(), 1u);
  q.limit = 1000000;
  EXPECT_EQ(ids(q).size(), 3u);
}

TEST_F(DeadLetterStore, counts_replays) {
  auto id = insert_dead_letter(*conn_, row("k", "p"));
  EXPECT_TRUE(mark_dead_letter_replayed(*conn_, id));
  EXPECT_TRUE(mark_dead_letter_replayed(*conn_, id));
  auto got = find_dead_letter(*conn_, id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->replay_count, 2);
  EXPECT_NE(got->replayed_at, "");
}

// Quotes and SQL in the data stay data: every value is a parameter.
TEST_F(DeadLetterStore, stores_hostile_text_as_it_is) {
  std::string evil = "'); DROP TABLE dead_letters; --";
  auto r = row(evil, evil);
  r.last_error = evil;
  auto id = insert_dead_letter(*conn_, r);
  dead_letter_query q;
  q.kind = evil;
  auto got = list_dead_letters(*conn_, q);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, id);
  EXPECT_EQ(got[0].payload, evil);
  EXPECT_EQ(got[0].last_error, evil);
}

TEST_F(DeadLetterStore, refuses_a_payload_that_is_not_text) {
  auto e = error_of([&] {
    insert_dead_letter(*conn_, row("k", std::string("bad \xff\xfe bytes")));
  });
  EXPECT_EQ(e.what, db_error::kind::invalid) << e.message;
  EXPECT_TRUE(list_dead_letters(*conn_, {}).empty());
}

} // namespace
} // namespace karvon::persistence
