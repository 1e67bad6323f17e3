// The sink against a real PostgreSQL: a job that fails its last attempt
// ends up in dead_letters, with everything a replay needs.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <caf/all.hpp>
#include <gtest/gtest.h>
#include <pqxx/connection>

#include "actors/dead_letters.hpp"
#include "actors/sink.hpp"
#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/dead_letter_store.hpp"
#include "persistence/migrations.hpp"
#include "tests/actors/fake_service.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;
using testing::fake_answer;
using testing::fake_service;

class SinkDeadLetters : public ::testing::Test {
protected:
  SinkDeadLetters() {
    db_ = testing::fresh_database();
    persistence::migrate(db_);
    pool_ = std::make_unique<persistence::db_pool>(
        persistence::pool_options{db_, 2, 100, {}}, &metrics_);
    cfg_.set("scheduler.max-threads", 2);
    add_sink_message_types(cfg_);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    sink_config c;
    c.name = "telegram:shopbot";
    c.max_attempts = 3;
    c.backoff.base = 1ms;
    c.backoff.cap = 5ms;
    c.class_offsets = linear_aging(5, 100ms);
    sink_ = spawn_sink(*sys_, c, fake_.call(), pool_.get(), &metrics_);
    // Every call fails: "retryable" jobs retryably, the others for good.
    fake_.script([](const sink_job& j,
                    std::size_t) -> std::optional<fake_answer> {
      if (j.kind == "telegram.send")
        return fake_answer{call_outcome::retryable(
            "503 bad gateway (attempt " + std::to_string(j.attempts) + ")")};
      return fake_answer{call_outcome::permanent("403 blocked")};
    });
  }

  ~SinkDeadLetters() override {
    caf::anon_send_exit(sink_, caf::exit_reason::user_shutdown);
    sys_.reset();
    pool_.reset();
  }

  caf::expected<std::string> ask(sink_job j) {
    caf::scoped_actor self{*sys_};
    caf::expected<std::string> out = caf::sec::request_timeout;
    self->request(sink_, 10s, submit_atom::value, std::move(j))
        .receive([&](std::string& r) { out = std::move(r); },
                 [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  std::string db_;
  fake_service fake_;
  metrics::registry metrics_;
  std::unique_ptr<persistence::db_pool> pool_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor sink_;
};

TEST_F(SinkDeadLetters, stores_a_job_after_its_last_attempt) {
  sink_job j;
  j.kind = "telegram.send";
  j.payload = R"({"chat_id":-100123,"text":"hello"})";
  j.priority = 3;
  j.sub_key = "-100123";
  j.window = {20, 60s};
  auto before = std::chrono::system_clock::now();
  auto r = ask(j);
  ASSERT_FALSE(r);
  EXPECT_EQ(errc_of(r.error()), errc::unavailable);
  auto message = message_of(r.error());
  EXPECT_NE(message.find("gave up after 3 attempts: 503 bad gateway "
                         "(attempt 3)"),
            std::string::npos)
      << message;
  EXPECT_EQ(fake_.calls().size(), 3u);

  // The caller hears only once the row is written.
  pqxx::connection c{db_};
  auto rows = persistence::list_dead_letters(c, {});
  ASSERT_EQ(rows.size(), 1u);
  auto& row = rows[0];
  EXPECT_NE(message.find("(dead letter " + std::to_string(row.id) + ")"),
            std::string::npos)
      << message;
  EXPECT_EQ(row.kind, "telegram.send");
  EXPECT_EQ(row.sink, "telegram:shopbot");
  EXPECT_EQ(row.payload, j.payload);
  EXPECT_EQ(row.last_error, "503 bad gateway (attempt 3)");
  EXPECT_EQ(row.attempts, 3);
  EXPECT_EQ(row.priority, 3);
  EXPECT_EQ(row.sub_key, "-100123");
  EXPECT_EQ(row.window_calls, 20);
  EXPECT_EQ(row.window_ms, 60000);
  EXPECT_EQ(row.replay_count, 0);
  // Submitted before it failed, both within this test.
  EXPECT_LE(row.created_at, row.failed_at);
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                  before.time_since_epoch())
                  .count();
  EXPECT_EQ(testing::query_value(
                db_, "SELECT created_at >= to_timestamp(" + std::to_string(secs)
                         + ") AND failed_at <= now() FROM dead_letters"),
            "t");
  EXPECT_EQ(metrics_.counters("karvon_dead_letters_total", "", {"kind"})
                .with({"telegram.send"})
                .value(),
            1u);
}

TEST_F(SinkDeadLetters, leaves_permanent_failures_to_the_caller) {
  sink_job j;
  j.kind = "telegram.copy";
  j.payload = "{}";
  auto r = ask(j);
  ASSERT_FALSE(r);
  EXPECT_EQ(message_of(r.error()), "403 blocked");
  EXPECT_EQ(fake_.calls().size(), 1u);
  EXPECT_EQ(testing::query_value(db_, "SELECT count(*) FROM dead_letters"),
            "0");
}

TEST_F(SinkDeadLetters, a_replay_sends_the_job_to_its_sink_again) {
  sink_job j;
  j.kind = "telegram.send";
  j.payload = R"({"chat_id":42,"text":"hello again"})";
  j.sub_key = "chat:42";
  ASSERT_FALSE(ask(j)); // three attempts, then a dead letter
  std::int64_t id = 0;
  {
    pqxx::connection c{db_};
    auto rows = persistence::list_dead_letters(c, {});
    ASSERT_EQ(rows.size(), 1u);
    id = rows[0].id;
  }
  // The service has recovered; the operator replays.
  std::atomic<int> delivered{0};
  std::string seen_payload, seen_sub_key;
  std::mutex m;
  fake_.script(
      [&](const sink_job& job, std::size_t) -> std::optional<fake_answer> {
        std::lock_guard lock{m};
        seen_payload = job.payload;
        seen_sub_key = job.sub_key;
        ++delivered;
        return fake_answer{call_outcome::success("sent")};
      });
  dead_letter_service letters{*pool_};
  letters.add_sink("telegram:shopbot", sink_);
  std::promise<result<dead_letter>> replayed;
  letters.replay(id, [&](result<dead_letter> r) { replayed.set_value(r); });
  auto r = replayed.get_future().get();
  ASSERT_TRUE(std::holds_alternative<dead_letter>(r));
  EXPECT_EQ(std::get<dead_letter>(r).replay_count, 1);
  EXPECT_FALSE(std::get<dead_letter>(r).replayed_at.empty());
  for (int i = 0; i < 200 && delivered.load() == 0; ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(delivered.load(), 1);
  std::lock_guard lock{m};
  EXPECT_EQ(seen_payload, j.payload);
  EXPECT_EQ(seen_sub_key, "chat:42");

  std::promise<result<dead_letter>> missing;
  letters.replay(id + 100,
                 [&](result<dead_letter> r) { missing.set_value(r); });
  auto m2 = missing.get_future().get();
  ASSERT_TRUE(std::holds_alternative<failure>(m2));
  EXPECT_EQ(std::get<failure>(m2).code, errc::not_found);
}

} // namespace
} // namespace karvon::actors
