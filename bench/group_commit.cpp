// group_commit: rows per second that a batch_writer acknowledges as
// committed (synchronous_commit on), written by 1,000 concurrent writers
// that each send their next row as soon as the last one is acknowledged.
// Next to two ceilings on the same private PostgreSQL in the same run:
// raw COPY (pqxx::stream_to) of the same rows in one transaction, what the
// database can take at best; and one INSERT per transaction from one
// connection, what writing without group commit gives (measured in short
// runs: it is slow and steady).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/stream_to>
#include <pqxx/transaction>

#include "bench/scenario.hpp"
#include "config/settings.hpp"
#include "persistence/batch_writer.hpp"
#include "persistence/embedded_postgres.hpp"

namespace karvon::bench {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int writers = 1000;
constexpr int copy_chunk = 1000; // rows between clock reads in raw COPY

// The table of CEILINGS.md, so the ceilings compare with its figures.
const char* const table_sql = R"sql(
CREATE TABLE bench_rows (
  id bigint PRIMARY KEY,
  key text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()))sql";

const std::vector<std::string> columns = {"id", "key", "payload"};

/// Row `id`: about 65 bytes of JSON, as in CEILINGS.md.
persistence::batch_row bench_row(std::int64_t id) {
  auto n = std::to_string(id);
  return {n, "key-" + n,
          R"({"sku":"SKU-)" + n
              + R"(","price":12345,"currency":"UZS","qty":7,"v":1})"};
}

/// An embedded PostgreSQL in a fresh temporary folder, removed at the end.
class private_postgres {
public:
  private_postgres() {
    std::string dir = (fs::temp_directory_path() / "karvon-bench-XXXXXX");
    if (!::mkdtemp(dir.data()))
      throw std::runtime_error("cannot create a folder for PostgreSQL");
    dir_ = dir;
    // mkdtemp makes it 0700; run as root, the server runs as the postgres
    // user, which must be able to enter it.
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read
                              | fs::perms::group_exec | fs::perms::others_read
                              | fs::perms::others_exec);
    persistence::embedded_options o;
    o.start_timeout = std::chrono::seconds{60};
    pg_ = std::make_unique<persistence::embedded_postgres>(dir_, o);
    pqxx::connection c{pg_->connection_string()};
    pqxx::nontransaction tx{c};
    tx.exec(table_sql);
  }

  ~private_postgres() {
    pg_.reset(); // stops the server
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  private_postgres(const private_postgres&) = delete;
  private_postgres& operator=(const private_postgres&) = delete;

  const std::string& conninfo() const { return pg_->connection_string(); }

  /// Empties the table, so every run starts from the same state.
  void truncate() const {
    pqxx::connection c{conninfo()};
    pqxx::nontransaction tx{c};
    tx.exec("TRUNCATE bench_rows");
  }

private:
  std::string dir_;
  std::unique_ptr<persistence::embedded_postgres> pg_;
};

/// Writers, each a chain of writes: a row's done() sends the writer's next
/// row until the run's end, as an actor sends its next write once the last
/// is acknowledged.
class writer_chains {
public:
  writer_chains(persistence::batch_writer& w, std::atomic<std::int64_t>& ids)
      : writer_(w), ids_(ids) {}

  /// Starts `n` writers, waits until the last of them stops after `until`,
  /// and returns the time from `t0` to then.
  steady::duration run(int n, steady::time_point t0, steady::time_point until) {
    until_ = until;
    active_ = n;
    for (int i = 0; i < n; ++i)
      next();
    std::unique_lock lock{mu_};
    idle_.wait(lock, [this] { return active_ == 0; });
    return last_ - t0;
  }

  std::uint64_t acked() const { return acked_; }
  std::uint64_t errors() const { return errors_; }
  std::string first_error() const {
    std::lock_guard lock{mu_};
    return first_error_;
  }

private:
  void next() {
    writer_.write(bench_row(ids_++), [this](persistence::write_result r) {
      bool more = r.ok() && steady::now() < until_;
      if (r.ok()) {
        ++acked_;
      } else {
        ++errors_;
        std::lock_guard lock{mu_};
        if (first_error_.empty())
          first_error_ = r.error->message;
      }
      // A writer that met an error stops: writing on could only repeat it.
      if (more) {
        next();
        return;
      }
      std::lock_guard lock{mu_};
      last_ = steady::now();
      if (--active_ == 0)
        idle_.notify_all();
    });
  }

  persistence::batch_writer& writer_;
  std::atomic<std::int64_t>& ids_;
  steady::time_point until_;
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<std::uint64_t> errors_{0};
  mutable std::mutex mu_;
  std::condition_variable idle_;
  int active_ = 0;          // guarded by mu_
  steady::time_point last_; // guarded by mu_
  std::string first_error_; // guarded by mu_
};

sample group_commit_run(const private_postgres& pg,
                        std::atomic<std::int64_t>& ids, milliseconds d) {
  pg.truncate();
  config::database_settings db; // batch_max_rows and batch_max_delay_ms
  persistence::batch_writer_options o;
  o.conninfo = pg.conninfo();
  o.table = "bench_rows";
  o.columns = columns;
  o.key_columns = {"id"};
  o.max_rows = db.batch_max_rows;
  o.max_delay = milliseconds{db.batch_max_delay_ms};
  o.max_waiting = 2 * writers;
  sample s;
  persistence::batch_writer w{o, nullptr};
  // Connected before the clock starts, as in a running node.
  {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    w.write(bench_row(ids++), [&](persistence::write_result r) {
      std::lock_guard lock{mu};
      if (!r.ok()) {
        ++s.errors;
        s.first_error = r.error->message;
      }
      done = true;
      cv.notify_all();
    });
    std::unique_lock lock{mu};
    cv.wait(lock, [&] { return done; });
  }
  writer_chains chains{w, ids};
  auto t0 = steady::now();
  auto took = chains.run(writers, t0, t0 + d);
  auto seconds = std::chrono::duration<double>(took).count();
  s.values
      = {seconds > 0 ? static_cast<double>(chains.acked()) / seconds : 0.0};
  s.errors += chains.errors();
  if (s.first_error.empty())
    s.first_error = chains.first_error();
  return s;
}

sample raw_copy_run(const private_postgres& pg, std::atomic<std::int64_t>& ids,
                    milliseconds d) {
  pg.truncate();
  pqxx::connection c{pg.conninfo()};
  auto t0 = steady::now();
  std::uint64_t rows = 0;
  {
    pqxx::work tx{c};
    pqxx::stream_to copy{tx, "bench_rows", columns};
    do {
      for (int i = 0; i < copy_chunk; ++i) {
        auto r = bench_row(ids++);
        copy << std::make_tuple(*r[0], *r[1], *r[2]);
      }
      rows += copy_chunk;
    } while (steady::now() - t0 < d);
    copy.complete();
    tx.commit();
  }
  auto seconds = std::chrono::duration<double>(steady::now() - t0).count();
  sample s;
  s.values = {static_cast<double>(rows) / seconds};
  return s;
}

sample one_insert_run(const private_postgres& pg,
                      std::atomic<std::int64_t>& ids, milliseconds d) {
  pg.truncate();
  pqxx::connection c{pg.conninfo()};
  c.prepare("insert_row",
            "INSERT INTO bench_rows (id, key, payload) VALUES ($1, $2, $3)");
  auto t0 = steady::now();
  std::uint64_t rows = 0;
  do {
    auto r = bench_row(ids++);
    pqxx::work tx{c};
    tx.exec_prepared("insert_row", *r[0], *r[1], *r[2]);
    tx.commit();
    ++rows;
  } while (steady::now() - t0 < d);
  auto seconds = std::chrono::duration<double>(steady::now() - t0).count();
  sample s;
  s.values = {static_cast<double>(rows) / seconds};
  return s;
}

} // namespace

scenario group_commit_scenario() {
  const figure vs_copy{"rows_per_s", "1/s", "raw_copy", better::higher};
  const figure vs_single{"rows_per_s", "1/s", "one_insert_per_tx",
                         better::higher};
  return {"group_commit",
          "durably acknowledged rows from 1000 writers through a batch writer "
          "vs raw COPY and one INSERT per transaction",
          {vs_copy, vs_single},
          [vs_copy, vs_single](const options& o) {
            private_postgres pg;
            // Ids never repeat across runs and sides: every row is new.
            auto ids = std::make_shared<std::atomic<std::int64_t>>(1);
            auto ours = [&pg, ids](milliseconds d) {
              return group_commit_run(pg, *ids, d);
            };
            auto result = measure_interleaved(
                {vs_copy}, o, ours, [&pg, ids](milliseconds d) {
                  return raw_copy_run(pg, *ids, d);
                });
            // One INSERT per transaction is slow and steady: short runs
            // tell it well enough.
            options brief = o;
            brief.runs = std::min(o.runs, 3);
            brief.duration_ms = std::min(o.duration_ms, 1000);
            brief.warmup_ms = std::min(o.warmup_ms, 200);
            auto second = measure_interleaved(
                {vs_single}, brief, ours, [&pg, ids](milliseconds d) {
                  return one_insert_run(pg, *ids, d);
                });
            result.figures.push_back(second.figures.front());
            for (auto& p : second.problems)
              result.problems.push_back(p);
            return result;
          }};
}

} // namespace karvon::bench
