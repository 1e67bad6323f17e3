#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using testing::fresh_database;
using testing::query_value;

/// Collects the errors that `done` callbacks report, from any thread.
class outcomes {
public:
  db_pool::done_fn callback() {
    return [this](std::optional<db_error> e) {
      std::lock_guard lock{mu_};
      all_.push_back(std::move(e));
      changed_.notify_all();
    };
  }

  /// Waits until `n` callbacks ran; false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock{mu_};
    return changed_.wait_for(lock, timeout, [&] { return all_.size() >= n; });
  }

  std::vector<std::optional<db_error>> all() {
    std::lock_guard lock{mu_};
    return all_;
  }

private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::optional<db_error>> all_;
};

void sleep_in_db(pqxx::connection_base& c, double seconds) {
  pqxx::nontransaction tx{c};
  tx.exec("SELECT pg_sleep(" + std::to_string(seconds) + ")");
}

TEST(DbPool, runs_jobs_concurrently_up_to_its_size) {
  db_pool pool{{testing::test_server_conninfo(), 3, 100, {}}, nullptr};
  std::atomic<int> active{0};
  std::atomic<int> most{0};
  outcomes done;
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(pool.submit(
        [&](pqxx::connection_base& c) {
          int now = ++active;
          int seen = most;
          while (now > seen && !most.compare_exchange_weak(seen, now))
            ;
          sleep_in_db(c, 0.3);
          --active;
        },
        done.callback()));
  ASSERT_TRUE(done.wait_for(6));
  // Three at once proves both that jobs overlap and that the pool caps them.
  EXPECT_EQ(most, 3);
  for (const auto& e : done.all())
    EXPECT_FALSE(e) << e->message;
}

TEST(DbPool, refuses_jobs_beyond_its_queue_without_blocking) {
  metrics::registry registry;
  db_pool pool{{testing::test_server_conninfo(), 1, 2, {}}, &registry};
  std::promise<void> started;
  std::promise<void> release;
  auto released = release.get_future().share();
  outcomes done;
  ASSERT_TRUE(pool.submit(
      [&](pqxx::connection_base&) {
        started.set_value();
        released.wait();
      },
      done.callback()));
  ASSERT_EQ(started.get_future().wait_for(10s), std::future_status::ready);

  auto t0 = steady::now();
  EXPECT_TRUE(pool.submit([](pqxx::connection_base&) {}, done.callback()));
  EXPECT_TRUE(pool.submit([](pqxx::connection_base&) {}, done.callback()));
  bool called = false;
  EXPECT_FALSE(pool.submit([&](pqxx::connection_base&) { called = true; },
                           [&](std::optional<db_error>) { called = true; }));
  EXPECT_LT(steady::now() - t0, 500ms) << "submit must not wait for the pool";
  EXPECT_EQ(pool.queue_depth(), 2u);
  EXPECT_NE(registry.render().find("karvon_db_pool_queue_depth 2"),
            std::string::npos);

  release.set_value();
  ASSERT_TRUE(done.wait_for(3));
  EXPECT_FALSE(called);
  auto text = registry.render();
  EXPECT_NE(text.find("karvon_db_queries_total{outcome=\"overloaded\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("karvon_db_queries_total{outcome=\"ok\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("karvon_db_query_duration_seconds_count 3"),
            std::string::npos)
      << text;
}

TEST(DbPool, maps_server_errors_to_db_error_kinds) {
  auto db = fresh_database();
  testing::execute(db, "CREATE TABLE u (x int PRIMARY KEY)");
  db_pool pool{{db, 2, 100, {}}, nullptr};
  auto run = [&](const std::string& sql) {
    std::promise<std::optional<db_error>> result;
    EXPECT_TRUE(pool.submit(
        [sql](pqxx::connection_base& c) {
          pqxx::work tx{c};
          tx.exec(sql);
          tx.commit();
        },
        [&](std::optional<db_error> e) { result.set_value(std::move(e)); }));
    return result.get_future().get();
  };
  EXPECT_FALSE(run("INSERT INTO u VALUES (1)"));

  auto dup = run("INSERT INTO u VALUES (1)");
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->what, db_error::kind::conflict);
  EXPECT_EQ(dup->sqlstate, "23505");
  EXPECT_NE(dup->message.find("duplicate key"), std::string::npos);
  EXPECT_NE(dup->message.back(), '\n');

  auto zero = run("SELECT 1 / 0");
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->what, db_error::kind::invalid);
  EXPECT_EQ(zero->sqlstate, "22012");

  auto null = run("INSERT INTO u VALUES (NULL)");
  ASSERT_TRUE(null);
  EXPECT_EQ(null->what, db_error::kind::invalid);
  EXPECT_EQ(null->sqlstate, "23502");

  auto syntax = run("SELEC 1");
  ASSERT_TRUE(syntax);
  EXPECT_EQ(syntax->what, db_error::kind::failed);
  EXPECT_EQ(syntax->sqlstate, "42601");

  // The connection survives statement errors.
  EXPECT_FALSE(run("INSERT INTO u VALUES (2)"));
}

TEST(DbPool, replaces_a_connection_the_server_dropped) {
  auto conninfo = testing::test_server_conninfo();
  db_pool pool{{conninfo, 1, 100, {}}, nullptr};
  auto backend_pid = [&]() -> std::pair<int, std::optional<db_error>> {
    auto pid = std::make_shared<int>(0);
    std::promise<std::optional<db_error>> result;
    EXPECT_TRUE(pool.submit(
        [pid](pqxx::connection_base& c) {
          pqxx::nontransaction tx{c};
          *pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
        },
        [&](std::optional<db_error> e) { result.set_value(std::move(e)); }));
    auto e = result.get_future().get();
    return {*pid, e};
  };
  auto [first, error] = backend_pid();
  ASSERT_FALSE(error) << error->message;
  ASSERT_GT(first, 0);

  std::string pid = std::to_string(first);
  EXPECT_EQ(query_value(conninfo, "SELECT pg_terminate_backend(" + pid + ")"),
            "t");
  auto deadline = steady::now() + 5s;
  while (query_value(conninfo, "SELECT count(*) FROM pg_stat_activity "
                               "WHERE pid = "
                                   + pid)
             != "0"
         && steady::now() < deadline)
    std::this_thread::sleep_for(10ms);

  int failures = 0;
  int second = 0;
  for (int attempt = 0; attempt < 3 && second == 0; ++attempt) {
    auto [p, e] = backend_pid();
    if (e) {
      EXPECT_EQ(e->what, db_error::kind::unavailable) << e->message;
      ++failures;
    } else {
      second = p;
    }
  }
  EXPECT_LE(failures, 1);
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
}

TEST(DbPool, fails_fast_when_the_server_is_down) {
  testing::scratch_dir nowhere{"no-server"};
  db_pool pool{{"host=" + nowhere.path()
                    + " port=5432 dbname=karvon "
                      "user=karvon",
                2,
                100,
                {}},
               nullptr};
  outcomes done;
  auto t0 = steady::now();
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(pool.submit([](pqxx::connection_base&) {}, done.callback()));
  ASSERT_TRUE(done.wait_for(10, 1s));
  EXPECT_LT(steady::now() - t0, 1s);
  for (const auto& e : done.all()) {
    ASSERT_TRUE(e);
    EXPECT_EQ(e->what, db_error::kind::unavailable);
    EXPECT_NE(e->message.find(nowhere.path()), std::string::npos) << e->message;
  }
}

TEST(DbPool, applies_session_settings_to_every_connection) {
  pool_options o{testing::test_server_conninfo(), 2, 100, {}};
  o.session = {{"idle_in_transaction_session_timeout", "1234"},
               {"lock_timeout", "567"}};
  db_pool pool{o, nullptr};
  std::promise<std::string> seen;
  ASSERT_TRUE(pool.submit(
      [&](pqxx::connection_base& c) {
        pqxx::nontransaction tx{c};
        seen.set_value(tx.exec1("SHOW idle_in_transaction_session_timeout")[0]
                           .as<std::string>()
                       + " "
                       + tx.exec1("SHOW lock_timeout")[0].as<std::string>());
      },
      [](std::optional<db_error>) {}));
  EXPECT_EQ(seen.get_future().get(), "1234ms 567ms");
}

TEST(DbPool, pings_the_server) {
  db_pool pool{{testing::test_server_conninfo(), 1, 10, {}}, nullptr};
  std::promise<std::pair<std::chrono::microseconds, std::optional<db_error>>>
      result;
  pool.ping([&](std::chrono::microseconds latency, std::optional<db_error> e) {
    result.set_value({latency, std::move(e)});
  });
  auto [latency, error] = result.get_future().get();
  EXPECT_FALSE(error);
  EXPECT_GT(latency.count(), 0);
  EXPECT_LT(latency, 5s);
}

TEST(DbPool, finishes_queued_jobs_before_it_goes) {
  outcomes done;
  {
    db_pool pool{{testing::test_server_conninfo(), 1, 100, {}}, nullptr};
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(
          pool.submit([](pqxx::connection_base& c) { sleep_in_db(c, 0.01); },
                      done.callback()));
    pool.stop();
    EXPECT_FALSE(pool.submit([](pqxx::connection_base&) {}, done.callback()));
  }
  EXPECT_EQ(done.all().size(), 5u);
  for (const auto& e : done.all())
    EXPECT_FALSE(e);
}

TEST(DbPool, turns_the_exception_in_flight_into_a_db_error) {
  try {
    throw pqxx::unique_violation("ERROR:  duplicate key value\n", "INSERT",
                                 "23505");
  } catch (...) {
    auto e = current_db_error();
    EXPECT_EQ(e.what, db_error::kind::conflict);
    EXPECT_EQ(e.sqlstate, "23505");
    EXPECT_EQ(e.message, "ERROR:  duplicate key value");
  }
  try {
    throw pqxx::in_doubt_error("commit in doubt");
  } catch (...) {
    EXPECT_EQ(current_db_error().what, db_error::kind::in_doubt);
  }
  try {
    throw pqxx::broken_connection("gone");
  } catch (...) {
    EXPECT_EQ(current_db_error().what, db_error::kind::unavailable);
  }
  EXPECT_STREQ(to_string(db_error::kind::in_doubt), "in_doubt");
  EXPECT_STREQ(to_string(db_error::kind::overloaded), "overloaded");
}

} // namespace
} // namespace karvon::persistence
