#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/connection>

#include "persistence/idempotency_store.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

using outcome = idempotency_outcome;

class IdempotencyStore : public ::testing::Test {
protected:
  void SetUp() override {
    db_ = testing::fresh_database();
    migrate(db_);
    conn_ = std::make_unique<pqxx::connection>(db_);
  }

  idempotency_state begin(const std::string& key, const std::string& hash) {
    return idempotency_begin(*conn_, "client:1", key, hash);
  }

  // Raw bytes, NUL included: the hash is a digest, not text.
  const std::string hash_a{"\x00\x01hash-a\xff", 9};
  const std::string hash_b{"\x00\x01hash-b\xff", 9};
  std::string db_;
  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(IdempotencyStore, lets_the_first_request_with_a_key_proceed) {
  EXPECT_EQ(begin("k1", hash_a).what, outcome::proceed);
  EXPECT_EQ(testing::query_value(db_, "SELECT count(*) FROM idempotency_keys "
                                      "WHERE status IS NULL"),
            "1");
}

TEST_F(IdempotencyStore, replays_the_first_response_to_a_repeat) {
  ASSERT_EQ(begin("k1", hash_a).what, outcome::proceed);
  EXPECT_TRUE(
      idempotency_complete(*conn_, "client:1", "k1", 201, R"({"id":"t-1"})"));
  auto again = begin("k1", hash_a);
  EXPECT_EQ(again.what, outcome::replay);
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, R"({"id":"t-1"})");
  // Completing again changes nothing: the first answer stays.
  EXPECT_FALSE(idempotency_complete(*conn_, "client:1", "k1", 200, "other"));
  EXPECT_EQ(begin("k1", hash_a).body, R"({"id":"t-1"})");
}

TEST_F(IdempotencyStore, calls_the_same_key_with_another_request_a_conflict) {
  ASSERT_EQ(begin("k1", hash_a).what, outcome::proceed);
  EXPECT_EQ(begin("k1", hash_b).what, outcome::conflict);
  idempotency_complete(*conn_, "client:1", "k1", 201, "{}");
  EXPECT_EQ(begin("k1", hash_b).what, outcome::conflict);
  // Scopes keep clients apart: another client may use the same key.
  EXPECT_EQ(idempotency_begin(*conn_, "client:2", "k1", hash_b).what,
            outcome::proceed);
}

TEST_F(IdempotencyStore, says_in_progress_while_the_first_request_runs) {
  ASSERT_EQ(begin("k1", hash_a).what, outcome::proceed);
  EXPECT_EQ(begin("k1", hash_a).what, outcome::in_progress);
}

TEST_F(IdempotencyStore, lets_exactly_one_of_concurrent_requests_proceed) {
  constexpr int threads = 8;
  for (int round = 0; round < 5; ++round) {
    std::string key = "race-" + std::to_string(round);
    std::atomic<int> ready{0};
    std::atomic<int> proceeded{0};
    std::atomic<int> waiting{0};
    std::vector<std::thread> racers;
    for (int t = 0; t < threads; ++t)
      racers.emplace_back([&] {
        pqxx::connection c{db_};
        ++ready;
        while (ready < threads)
          std::this_thread::yield();
        auto s = idempotency_begin(c, "client:1", key, hash_a);
        if (s.what == outcome::proceed)
          ++proceeded;
        else if (s.what == outcome::in_progress)
          ++waiting;
      });
    for (auto& t : racers)
      t.join();
    EXPECT_EQ(proceeded, 1) << key;
    EXPECT_EQ(waiting, threads - 1) << key;
  }
}

TEST_F(IdempotencyStore, releases_the_key_when_the_first_request_fails) {
  ASSERT_EQ(begin("k1", hash_a).what, outcome::proceed);
  EXPECT_FALSE(
      idempotency_complete(*conn_, "client:1", "k1", 503, R"({"error":{}})"));
  EXPECT_EQ(begin("k1", hash_a).what, outcome::proceed) << "a retry runs";
  EXPECT_FALSE(idempotency_complete(*conn_, "client:1", "k1", 429, "{}"));
  ASSERT_EQ(begin("k1", hash_a).what, outcome::proceed);
  // A 4xx other than 429 is the request's own answer: it is kept.
  EXPECT_TRUE(idempotency_complete(*conn_, "client:1", "k1", 400, "bad"));
  auto again = begin("k1", hash_a);
  EXPECT_EQ(again.what, outcome::replay);
  EXPECT_EQ(again.status, 400);
}

TEST_F(IdempotencyStore, takes_over_a_request_pending_past_its_lease) {
  ASSERT_EQ(begin("k1", hash_a).what, outcome::proceed);
  testing::execute(db_, "UPDATE idempotency_keys SET created_at = now() - "
                        "interval '6 minutes'");
  // Another body still conflicts; the same one takes the key over, once.
  EXPECT_EQ(begin("k1", hash_b).what, outcome::conflict);
  EXPECT_EQ(begin("k1", hash_a).what, outcome::proceed);
  EXPECT_EQ(begin("k1", hash_a).what, outcome::in_progress);
}

TEST_F(IdempotencyStore, forgets_and_deletes_expired_keys) {
  ASSERT_EQ(begin("old", hash_a).what, outcome::proceed);
  idempotency_complete(*conn_, "client:1", "old", 201, "{}");
  ASSERT_EQ(begin("gone", hash_a).what, outcome::proceed);
  idempotency_complete(*conn_, "client:1", "gone", 201, "{}");
  ASSERT_EQ(begin("live", hash_a).what, outcome::proceed);
  idempotency_complete(*conn_, "client:1", "live", 201, "{}");
  testing::execute(db_, "UPDATE idempotency_keys SET expires_at = now() - "
                        "interval '1 second' WHERE key <> 'live'");
  // An expired key is free again, even for another body.
  EXPECT_EQ(begin("old", hash_b).what, outcome::proceed);
  EXPECT_EQ(idempotency_delete_expired(*conn_), 1); // "gone"
  EXPECT_EQ(idempotency_delete_expired(*conn_), 0);
  EXPECT_EQ(testing::query_value(db_, "SELECT string_agg(key, ',' ORDER BY "
                                      "key) FROM idempotency_keys"),
            "live,old");
}

} // namespace
} // namespace karvon::persistence
