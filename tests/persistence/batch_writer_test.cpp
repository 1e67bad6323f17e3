#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>
#include <signal.h>

#include "metrics/registry.hpp"
#include "persistence/batch_writer.hpp"
#include "tests/support/process.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using testing::execute;
using testing::fresh_database;
using testing::query_value;

const char* const items_schema = R"sql(
CREATE TABLE items (
  id bigint PRIMARY KEY,
  note text NOT NULL CHECK (note <> 'bad'),
  created_at timestamptz NOT NULL DEFAULT now()))sql";

std::string items_database() {
  auto db = fresh_database();
  execute(db, items_schema);
  return db;
}

batch_writer_options items_options(const std::string& db) {
  batch_writer_options o;
  o.conninfo = db;
  o.table = "items";
  o.columns = {"id", "note"};
  o.key_columns = {"id"};
  return o;
}

batch_row item(std::int64_t id, std::string note = "n") {
  return {std::to_string(id), std::move(note)};
}

/// Collects the answers of done callbacks, each under a tag, from any
/// thread.
class answers {
public:
  batch_writer::done_fn tag(std::int64_t t) {
    return [this, t](write_result r) {
      std::lock_guard lock{mu_};
      got_.emplace_back(t, std::move(r));
      changed_.notify_all();
    };
  }

  /// Waits until `n` answers came; false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock{mu_};
    return changed_.wait_for(lock, timeout, [&] { return got_.size() >= n; });
  }

  std::size_t size() {
    std::lock_guard lock{mu_};
    return got_.size();
  }

  std::vector<std::pair<std::int64_t, write_result>> all() {
    std::lock_guard lock{mu_};
    return got_;
  }

  /// The answer tagged `t`; a failed (not ok) result when there is none.
  write_result of(std::int64_t t) {
    std::lock_guard lock{mu_};
    write_result none;
    none.error = db_error{db_error::kind::failed, {}, "no answer"};
    for (auto& [tag, r] : got_)
      if (tag == t)
        return r;
    return none;
  }

private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::pair<std::int64_t, write_result>> got_;
};

/// Writes one row and waits for its answer, as a caller that needs
/// durability does.
write_result write_and_wait(batch_writer& w, batch_row row) {
  std::promise<write_result> p;
  auto f = p.get_future();
  w.write(std::move(row), [&p](write_result r) { p.set_value(std::move(r)); });
  return f.get();
}

/// Polls `sql` on `db` until its first value is not empty; returns it, or ""
/// after `timeout`.
std::string wait_for_value(const std::string& db, const std::string& sql,
                           std::chrono::milliseconds timeout = 10s) {
  auto deadline = steady::now() + timeout;
  for (;;) {
    auto v = query_value(db, sql);
    if (!v.empty() || steady::now() > deadline)
      return v;
    std::this_thread::sleep_for(5ms);
  }
}

std::string id_array(const std::set<std::int64_t>& ids) {
  std::string out = "'{";
  for (auto id : ids)
    out += (out.size() > 2 ? "," : "") + std::to_string(id);
  return out + "}'";
}

std::string message_of(const write_result& r) {
  return r.error
             ? std::string{to_string(r.error->what)} + ": " + r.error->message
             : std::string{"ok"};
}

TEST(BatchWriter, writes_a_full_batch_without_waiting_for_the_delay) {
  auto db = items_database();
  auto o = items_options(db);
  o.max_rows = 10;
  o.max_delay = 60s;
  metrics::registry registry;
  batch_writer w{o, &registry};
  answers got;
  for (int i = 0; i < 10; ++i)
    w.write(item(i), got.tag(i));
  ASSERT_TRUE(got.wait_for(10, 10s)) << "a full batch must not wait 60 s";
  for (auto& [tag, r] : got.all()) {
    EXPECT_TRUE(r.ok()) << tag << ": " << message_of(r);
    EXPECT_FALSE(r.duplicate) << tag;
  }
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "10");
  auto text = registry.render();
  EXPECT_NE(text.find("karvon_db_batch_rows_total{table=\"items\"} 10"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("karvon_db_batch_flush_seconds_count 1\n"),
            std::string::npos)
      << text;
}

TEST(BatchWriter, waits_for_the_delay_before_writing_a_partial_batch) {
  auto db = items_database();
  auto o = items_options(db);
  o.max_delay = 300ms;
  batch_writer w{o, nullptr};
  answers got;
  auto t0 = steady::now();
  w.write(item(1), got.tag(1));
  w.write(item(2), got.tag(2));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(got.size(), 0u) << "two rows of 1000 went before the delay";
  EXPECT_EQ(w.queue_depth(), 2u);
  ASSERT_TRUE(got.wait_for(2, 10s));
  auto waited = steady::now() - t0;
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 3s);
  EXPECT_TRUE(got.of(1).ok()) << message_of(got.of(1));
  EXPECT_TRUE(got.of(2).ok()) << message_of(got.of(2));
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "2");
}

TEST(BatchWriter,
     writes_at_once_when_idle_if_asked_and_still_groups_under_load) {
  auto db = items_database();
  auto o = items_options(db);
  o.max_delay = 60s;
  o.write_when_idle = true;
  metrics::registry registry;
  batch_writer w{o, &registry};
  auto t0 = steady::now();
  auto lone = write_and_wait(w, item(1));
  ASSERT_TRUE(lone.ok()) << message_of(lone);
  EXPECT_LT(steady::now() - t0, 5s) << "a lone row waited for the delay";

  answers got;
  std::vector<std::thread> writers;
  for (int t = 0; t < 10; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i)
        w.write(item(100 + t * 50 + i), got.tag(t * 50 + i));
    });
  for (auto& t : writers)
    t.join();
  ASSERT_TRUE(got.wait_for(500));
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "501");
  // Rows that came while a batch was being written went in the next one.
  auto text = registry.render();
  const std::string flushes = "karvon_db_batch_flush_seconds_count ";
  auto at = text.find(flushes);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_LT(std::stoi(text.substr(at + flushes.size())), 250) << text;
}

TEST(BatchWriter, answers_a_thousand_writers_on_many_threads_once_each) {
  auto db = items_database();
  metrics::registry registry;
  batch_writer w{items_options(db), &registry};
  answers got;
  constexpr int threads = 20;
  constexpr int per_thread = 50;
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto id = t * per_thread + i;
        w.write(item(id, "from thread " + std::to_string(t)), got.tag(id));
      }
    });
  for (auto& t : writers)
    t.join();
  ASSERT_TRUE(got.wait_for(threads * per_thread));
  std::this_thread::sleep_for(20ms); // a second answer would show up here
  std::map<std::int64_t, int> times;
  for (auto& [tag, r] : got.all()) {
    ++times[tag];
    EXPECT_TRUE(r.ok()) << tag << ": " << message_of(r);
    EXPECT_FALSE(r.duplicate) << tag;
  }
  EXPECT_EQ(times.size(), std::size_t{threads * per_thread});
  for (auto& [tag, n] : times)
    EXPECT_EQ(n, 1) << "row " << tag << " was answered " << n << " times";
  EXPECT_EQ(query_value(db, "SELECT count(DISTINCT id) FROM items"), "1000");
  // Group commit: far fewer transactions than rows.
  auto text = registry.render();
  const std::string flushes = "karvon_db_batch_flush_seconds_count ";
  auto at = text.find(flushes);
  ASSERT_NE(at, std::string::npos) << text;
  auto batches = std::stoi(text.substr(at + flushes.size()));
  EXPECT_GE(batches, 1);
  EXPECT_LT(batches, 200) << text;
}

TEST(BatchWriter,
     reports_a_repeated_natural_key_as_a_duplicate_and_writes_it_once) {
  auto db = items_database();
  execute(db, "INSERT INTO items (id, note) VALUES (1, 'before')");
  auto o = items_options(db);
  o.max_rows = 4;
  o.max_delay = 50ms;
  batch_writer w{o, nullptr};
  answers got;
  // One batch: a key already in the table, one key twice, one new key.
  w.write(item(1, "again"), got.tag(0));
  w.write(item(2, "first"), got.tag(1));
  w.write(item(2, "second"), got.tag(2));
  w.write(item(3, "x"), got.tag(3));
  ASSERT_TRUE(got.wait_for(4));
  for (int t = 0; t < 4; ++t)
    ASSERT_TRUE(got.of(t).ok()) << t << ": " << message_of(got.of(t));
  EXPECT_TRUE(got.of(0).duplicate);
  EXPECT_FALSE(got.of(1).duplicate);
  EXPECT_TRUE(got.of(2).duplicate);
  EXPECT_FALSE(got.of(3).duplicate);
  EXPECT_EQ(query_value(db, "SELECT string_agg(id || ':' || note, ',' "
                            "ORDER BY id) FROM items"),
            "1:before,2:first,3:x");

  // A retry of a written row has no second effect, and says so.
  auto again = write_and_wait(w, item(3, "retry"));
  ASSERT_TRUE(again.ok()) << message_of(again);
  EXPECT_TRUE(again.duplicate);
  auto fresh = write_and_wait(w, item(4, "new"));
  ASSERT_TRUE(fresh.ok()) << message_of(fresh);
  EXPECT_FALSE(fresh.duplicate);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "4");
}

TEST(BatchWriter, tells_duplicates_of_a_two_column_natural_key) {
  auto db = fresh_database();
  execute(db, "CREATE TABLE pairs (a int, b text, v text NOT NULL, "
              "PRIMARY KEY (a, b))");
  batch_writer_options o;
  o.conninfo = db;
  o.table = "pairs";
  o.columns = {"a", "b", "v"};
  o.key_columns = {"b", "a"};
  o.max_rows = 4;
  batch_writer w{o, nullptr};
  answers got;
  w.write({"1", "x", "first"}, got.tag(0));
  w.write({"1", "y", "second"}, got.tag(1));
  w.write({"1", "x", "third"}, got.tag(2));
  w.write({"2", "x", "fourth"}, got.tag(3));
  ASSERT_TRUE(got.wait_for(4));
  for (int t = 0; t < 4; ++t)
    ASSERT_TRUE(got.of(t).ok()) << t << ": " << message_of(got.of(t));
  EXPECT_FALSE(got.of(0).duplicate);
  EXPECT_FALSE(got.of(1).duplicate);
  EXPECT_TRUE(got.of(2).duplicate);
  EXPECT_FALSE(got.of(3).duplicate);
  EXPECT_EQ(query_value(db, "SELECT string_agg(v, ',' ORDER BY v) FROM pairs"),
            "first,fourth,second");
}

TEST(BatchWriter, fails_every_row_of_a_batch_that_breaks_a_constraint) {
  auto db = items_database();
  auto o = items_options(db);
  o.max_rows = 3;
  o.max_delay = 60s;
  batch_writer w{o, nullptr};
  answers got;
  w.write(item(10, "good"), got.tag(10));
  w.write(item(11, "bad"), got.tag(11));
  w.write(item(12, "good"), got.tag(12));
  ASSERT_TRUE(got.wait_for(3));
  for (auto& [tag, r] : got.all()) {
    ASSERT_FALSE(r.ok()) << tag;
    EXPECT_EQ(r.error->what, db_error::kind::invalid) << message_of(r);
    EXPECT_EQ(r.error->sqlstate, "23514") << message_of(r);
  }
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "0");

  // The writer goes on with the next batch.
  w.write(item(13), got.tag(13));
  w.write(item(14), got.tag(14));
  w.write(item(15), got.tag(15));
  ASSERT_TRUE(got.wait_for(6));
  for (int t = 13; t <= 15; ++t)
    EXPECT_TRUE(got.of(t).ok()) << message_of(got.of(t));
  EXPECT_EQ(query_value(db, "SELECT string_agg(id::text, ',' ORDER BY id) "
                            "FROM items"),
            "13,14,15");
}

TEST(BatchWriter, answers_overloaded_at_once_when_its_buffer_is_full) {
  auto db = items_database();
  auto o = items_options(db);
  o.max_rows = 2;
  o.max_waiting = 3;
  o.max_delay = 1ms;
  metrics::registry registry;
  batch_writer w{o, &registry};
  answers got;

  // A transaction holding the table's lock keeps the first batch in flight.
  pqxx::connection locker{db};
  pqxx::work lock_tx{locker};
  lock_tx.exec("LOCK TABLE items IN ACCESS EXCLUSIVE MODE");
  w.write(item(1), got.tag(1));
  w.write(item(2), got.tag(2));
  auto deadline = steady::now() + 5s;
  while (w.queue_depth() > 0 && steady::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(w.queue_depth(), 0u) << "the first batch was not taken";
  // The next batch collects while the first is being written.
  for (int id = 3; id <= 5; ++id)
    w.write(item(id), got.tag(id));
  EXPECT_EQ(w.queue_depth(), 3u);
  EXPECT_NE(
      registry.render().find("karvon_db_batch_queue_depth{table=\"items\"} 3"),
      std::string::npos);

  bool answered = false;
  write_result refused;
  auto t0 = steady::now();
  w.write(item(6), [&](write_result r) {
    answered = true;
    refused = std::move(r);
  });
  EXPECT_TRUE(answered) << "a full writer answers before write returns";
  EXPECT_LT(steady::now() - t0, 100ms);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error->what, db_error::kind::overloaded);
  EXPECT_EQ(got.size(), 0u);

  lock_tx.abort();
  ASSERT_TRUE(got.wait_for(5));
  for (auto& [tag, r] : got.all())
    EXPECT_TRUE(r.ok()) << tag << ": " << message_of(r);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "5");
  EXPECT_NE(registry.render().find(
                "karvon_db_batch_rejected_total{table=\"items\"} 1"),
            std::string::npos);
}

TEST(BatchWriter, refuses_malformed_rows_at_once) {
  auto db = items_database();
  batch_writer w{items_options(db), nullptr};
  auto refusal = [&](batch_row row) {
    std::optional<write_result> seen;
    w.write(std::move(row), [&](write_result r) { seen = std::move(r); });
    EXPECT_TRUE(seen) << "a malformed row is answered before write returns";
    return seen ? seen->error : std::nullopt;
  };
  auto few = refusal({"1"});
  ASSERT_TRUE(few);
  EXPECT_EQ(few->what, db_error::kind::invalid);
  auto null_key = refusal({std::nullopt, "n"});
  ASSERT_TRUE(null_key);
  EXPECT_EQ(null_key->what, db_error::kind::invalid);
  auto nul = refusal({"1", std::string("a\0b", 3)});
  ASSERT_TRUE(nul);
  EXPECT_EQ(nul->what, db_error::kind::invalid);
  EXPECT_EQ(w.queue_depth(), 0u);
}

TEST(BatchWriter, fails_a_natural_key_that_is_not_a_unique_constraint) {
  auto db = fresh_database();
  execute(db, "CREATE TABLE loose (id bigint, note text)");
  batch_writer_options o;
  o.conninfo = db;
  o.table = "loose";
  o.columns = {"id", "note"};
  o.key_columns = {"id"};
  batch_writer w{o, nullptr};
  // Without a unique constraint nothing would stop duplicates: the writer
  // refuses to write at all, with the server's reason.
  auto r = write_and_wait(w, {"1", "n"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error->sqlstate, "42P10") << message_of(r);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM loose"), "0");

  o.key_columns = {"other"};
  EXPECT_THROW((batch_writer{o, nullptr}), std::invalid_argument);
}

TEST(BatchWriter, writes_values_with_tabs_newlines_backslashes_and_nulls) {
  auto db = fresh_database();
  execute(db, "CREATE TABLE texts (id bigint PRIMARY KEY, body text, "
              "doc jsonb)");
  batch_writer_options o;
  o.conninfo = db;
  o.table = "texts";
  o.columns = {"id", "body", "doc"};
  o.key_columns = {"id"};
  batch_writer w{o, nullptr};
  const std::string body = "tab\there\nnew line\r\\N back\\slash \\. \xc3\xa9";
  auto r = write_and_wait(w, {"1", body, R"({"a": "b\tc"})"});
  ASSERT_TRUE(r.ok()) << message_of(r);
  auto nulls = write_and_wait(w, {"2", std::nullopt, std::nullopt});
  ASSERT_TRUE(nulls.ok()) << message_of(nulls);
  EXPECT_EQ(query_value(db, "SELECT body FROM texts WHERE id = 1"), body);
  EXPECT_EQ(query_value(db, "SELECT doc->>'a' FROM texts WHERE id = 1"),
            "b\tc");
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM texts WHERE id = 2 AND "
                            "body IS NULL AND doc IS NULL"),
            "1");
  // The ON CONFLICT path carries the same values.
  auto dup = write_and_wait(w, {"1", "other", std::nullopt});
  ASSERT_TRUE(dup.ok()) << message_of(dup);
  EXPECT_TRUE(dup.duplicate);
  auto staged = write_and_wait(w, {"3", body, std::nullopt});
  ASSERT_TRUE(staged.ok()) << message_of(staged);
  EXPECT_EQ(query_value(db, "SELECT body FROM texts WHERE id = 3"), body);
}

TEST(BatchWriter, writes_every_waiting_row_before_it_is_destroyed) {
  auto db = items_database();
  auto o = items_options(db);
  o.max_delay = 60s;
  answers got;
  auto t0 = steady::now();
  {
    batch_writer w{o, nullptr};
    for (int i = 0; i < 5; ++i)
      w.write(item(i), got.tag(i));
    w.stop();
    std::optional<write_result> late;
    w.write(item(9), [&](write_result r) { late = std::move(r); });
    ASSERT_TRUE(late);
    ASSERT_FALSE(late->ok());
    EXPECT_EQ(late->error->what, db_error::kind::unavailable);
  }
  EXPECT_LT(steady::now() - t0, 10s);
  ASSERT_EQ(got.size(), 5u);
  for (auto& [tag, r] : got.all())
    EXPECT_TRUE(r.ok()) << tag << ": " << message_of(r);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"), "5");
}

TEST(BatchWriter,
     writes_a_batch_again_when_its_connection_breaks_before_commit) {
  auto db = items_database();
  auto o = items_options(db);
  o.application_name = "karvon-batch-retry-test";
  o.max_delay = 1ms;
  batch_writer w{o, nullptr};
  ASSERT_TRUE(write_and_wait(w, item(100)).ok());

  // An uncommitted row with the same key makes the writer's batch wait.
  pqxx::connection other{db};
  pqxx::work other_tx{other};
  other_tx.exec("INSERT INTO items (id, note) VALUES (1, 'other')");
  answers got;
  w.write(item(1, "writer"), got.tag(1));
  const std::string waiting
      = "SELECT pid FROM pg_stat_activity WHERE application_name = "
        "'karvon-batch-retry-test' AND wait_event_type = 'Lock'";
  auto first = wait_for_value(db, waiting);
  ASSERT_FALSE(first.empty()) << "the batch never waited for the lock";
  execute(db, "SELECT pg_terminate_backend(" + first + ")");
  // Rolled back with its connection, the batch is written again on a new
  // one, and waits again.
  auto second = wait_for_value(db, waiting + " AND pid <> " + first);
  ASSERT_FALSE(second.empty()) << "the batch was not tried again";
  EXPECT_EQ(got.size(), 0u);
  other_tx.abort();
  ASSERT_TRUE(got.wait_for(1));
  auto r = got.of(1);
  ASSERT_TRUE(r.ok()) << message_of(r);
  EXPECT_FALSE(r.duplicate);
  EXPECT_EQ(query_value(db, "SELECT note FROM items WHERE id = 1"), "writer");
}

TEST(BatchWriter, never_acknowledges_a_row_lost_with_its_connection) {
  auto db = items_database();
  auto o = items_options(db);
  o.application_name = "karvon-batch-kill-test";
  o.max_delay = 2ms;
  batch_writer w{o, nullptr};
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> next_id{1};
  std::mutex mu;
  std::map<std::int64_t, write_result> results;
  int twice = 0;
  std::vector<std::thread> writers;
  for (int t = 0; t < 16; ++t)
    writers.emplace_back([&] {
      while (!stop) {
        auto id = next_id++;
        auto r = write_and_wait(w, item(id));
        std::lock_guard lock{mu};
        twice += results.count(id) ? 1 : 0;
        results[id] = std::move(r);
      }
    });
  int killed = 0;
  auto until = steady::now() + 1s;
  while (steady::now() < until) {
    killed += std::stoi(query_value(
        db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'karvon-batch-kill-test'"));
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  for (auto& t : writers)
    t.join();

  EXPECT_GT(killed, 0);
  EXPECT_EQ(twice, 0);
  std::set<std::int64_t> acked;
  int errors = 0;
  for (auto& [id, r] : results) {
    if (r.ok()) {
      EXPECT_FALSE(r.duplicate) << id << " was written once, so new";
      acked.insert(id);
    } else {
      ++errors;
    }
  }
  ASSERT_FALSE(acked.empty());
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items WHERE id = ANY("
                                + id_array(acked) + ")"),
            std::to_string(acked.size()))
      << "a row was acknowledged but is not in the table";
  std::cerr << "[          ] " << killed << " connections killed, "
            << acked.size() << " rows acknowledged, " << errors
            << " answered with an error\n";
}

// The connection breaks while COMMIT is in flight: every COMMIT waits for a
// standby that does not exist, so the writer's COMMIT hangs after the
// transaction is durable locally, and then its backend is terminated. The
// writer must find out that it committed, and say so.
TEST(BatchWriter, resolves_a_commit_in_doubt_by_asking_the_database) {
  testing::scratch_dir dir{"batch-in-doubt"};
  auto pg = testing::start_embedded(dir.path());
  auto db = pg->connection_string();
  execute(db, items_schema);
  auto o = items_options(db);
  o.application_name = "karvon-batch-doubt-test";
  o.max_rows = 3;
  o.max_delay = 1ms;
  metrics::registry registry;
  answers got; // outlives the writer, which may answer as it goes
  batch_writer w{o, &registry};
  ASSERT_TRUE(write_and_wait(w, item(100)).ok());

  // Destroyed before the writer: a batch still waiting is let go first.
  struct standby_guard {
    std::string db;
    ~standby_guard() {
      try {
        execute(db, "ALTER SYSTEM RESET synchronous_standby_names");
        execute(db, "SELECT pg_reload_conf()");
      } catch (const std::exception& e) {
        ADD_FAILURE() << "cannot reset synchronous_standby_names: " << e.what();
      }
    }
  } guard{db};
  execute(db, "ALTER SYSTEM SET synchronous_standby_names = 'karvon_nobody'");
  execute(db, "SELECT pg_reload_conf()");

  // The setting takes force a moment after the reload: until a batch's
  // COMMIT waits, each batch is simply answered, and another one is sent.
  int next = 1;
  std::string pid;
  auto deadline = steady::now() + 10s;
  while (pid.empty()) {
    ASSERT_LT(steady::now(), deadline) << "no COMMIT waited for a standby";
    auto answered = got.size();
    for (int i = 0; i < 3; ++i, ++next)
      w.write(item(next), got.tag(next));
    auto until = steady::now() + 5s;
    while (pid.empty() && got.size() < answered + 3 && steady::now() < until) {
      pid = query_value(db, "SELECT pid FROM pg_stat_activity WHERE "
                            "application_name = 'karvon-batch-doubt-test' "
                            "AND wait_event = 'SyncRep'");
      std::this_thread::sleep_for(5ms);
    }
  }
  const auto rows = static_cast<std::size_t>(next - 1);
  EXPECT_EQ(got.size(), rows - 3) << "the waiting batch was answered";
  execute(db, "SELECT pg_terminate_backend(" + pid + ")");
  execute(db, "ALTER SYSTEM RESET synchronous_standby_names");
  execute(db, "SELECT pg_reload_conf()");

  ASSERT_TRUE(got.wait_for(rows));
  for (int id = 1; id < next; ++id) {
    auto r = got.of(id);
    EXPECT_TRUE(r.ok()) << id << ": " << message_of(r);
    EXPECT_FALSE(r.duplicate) << id;
  }
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM items"),
            std::to_string(rows + 1));
  EXPECT_NE(registry.render().find(
                "karvon_db_batch_in_doubt_total{table=\"items\"} 1"),
            std::string::npos);
}

// The issue's crash test: a process writing through a batch writer is
// killed with SIGKILL mid-stream. Every id it acknowledged is in the table;
// writing all ids again adds none twice and reports each acknowledged one
// as a duplicate.
TEST(BatchWriter, loses_no_acknowledged_row_when_its_process_is_killed) {
  auto db = fresh_database();
  execute(db, "CREATE TABLE probe_rows (seq bigserial PRIMARY KEY, "
              "id bigint NOT NULL UNIQUE, payload text NOT NULL)");
  constexpr int count = 20000;
  auto acks = [](const std::string& output) {
    std::map<std::int64_t, std::string> out;
    std::istringstream in{output};
    std::string word, how;
    std::int64_t id = 0;
    for (std::string line; std::getline(in, line);) {
      std::istringstream l{line};
      if (l >> word >> id >> how && word == "ack")
        out[id] = how;
    }
    return out;
  };

  std::map<std::int64_t, std::string> first;
  {
    testing::child_process probe{
        {BATCH_WRITER_PROBE, db, "1", std::to_string(count), "8"}};
    ASSERT_TRUE(probe.wait_for("ack ", 30s)) << probe.output();
    probe.signal(SIGKILL);
    ASSERT_EQ(probe.wait_exit(10s), 128 + SIGKILL) << probe.output();
    first = acks(probe.output());
  }
  ASSERT_FALSE(first.empty());
  EXPECT_LT(first.size(), std::size_t{count}) << "killed after the end";
  std::set<std::int64_t> acked;
  for (auto& [id, how] : first)
    acked.insert(id);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM probe_rows WHERE id = ANY("
                                + id_array(acked) + ")"),
            std::to_string(acked.size()))
      << "an acknowledged row is missing after SIGKILL";

  testing::child_process again{
      {BATCH_WRITER_PROBE, db, "1", std::to_string(count), "8"}};
  ASSERT_EQ(again.wait_exit(60s), 0) << again.output().substr(0, 2000);
  auto second = acks(again.output());
  EXPECT_EQ(second.size(), std::size_t{count});
  for (auto id : acked)
    EXPECT_EQ(second[id], "duplicate") << id;
  EXPECT_EQ(query_value(db, "SELECT count(*) || '/' || count(DISTINCT id) "
                            "FROM probe_rows"),
            std::to_string(count) + "/" + std::to_string(count));
  std::cerr << "[          ] killed after " << acked.size() << " of " << count
            << " rows were acknowledged\n";
}

} // namespace
} // namespace karvon::persistence
