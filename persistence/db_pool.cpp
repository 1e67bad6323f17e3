#include "persistence/db_pool.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include "metrics/registry.hpp"

namespace karvon::persistence {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// After a failed connect a thread fails its jobs at once instead of trying
// again for every job: a server that is down would otherwise be hammered by
// every queued job in turn. The pause doubles up to the cap while the server
// stays down and resets on the first success.
constexpr milliseconds reconnect_pause_min{250};
constexpr milliseconds reconnect_pause_max{2000};

constexpr std::size_t outcome_count = 7; // ok and the six db_error kinds

std::string trimmed(const char* what) {
  std::string s = what;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.pop_back();
  return s;
}

db_error::kind kind_of_sqlstate(const std::string& state) {
  if (state == "23505" || state == "23P01") // unique, exclusion
    return db_error::kind::conflict;
  // 08: connection exception; 57P01..03: the server is shutting down,
  // crashed, or still starting.
  if (state.compare(0, 2, "08") == 0 || state == "57P01" || state == "57P02"
      || state == "57P03")
    return db_error::kind::unavailable;
  if (state.compare(0, 2, "22") == 0 || state.compare(0, 2, "23") == 0)
    return db_error::kind::invalid;
  return db_error::kind::failed;
}

std::size_t outcome_index(const std::optional<db_error>& e) {
  return e ? 1 + static_cast<std::size_t>(e->what) : 0;
}

struct job {
  db_pool::work_fn work;
  db_pool::done_fn done;
};

} // namespace

db_error current_db_error() {
  db_error e;
  if (!std::current_exception()) {
    e.message = "no exception in flight";
    return e;
  }
  try {
    throw;
  } catch (const pqxx::in_doubt_error& x) {
    e.what = db_error::kind::in_doubt;
    e.message = trimmed(x.what());
  } catch (const pqxx::broken_connection& x) {
    e.what = db_error::kind::unavailable;
    e.message = trimmed(x.what());
  } catch (const pqxx::sql_error& x) {
    e.sqlstate = x.sqlstate();
    e.what = kind_of_sqlstate(e.sqlstate);
    e.message = trimmed(x.what());
  } catch (const std::exception& x) {
    e.what = db_error::kind::failed;
    e.message = trimmed(x.what());
  } catch (...) {
    e.what = db_error::kind::failed;
    e.message = "unknown exception";
  }
  return e;
}

struct db_pool::impl {
  pool_options options;
  metrics::gauge* queue_gauge = nullptr;
  std::array<metrics::counter*, outcome_count> outcomes{};
  metrics::histogram* duration = nullptr;

  mutable std::mutex mu;
  std::condition_variable wake;
  std::deque<job> queue; // guarded by mu
  bool stopping = false; // guarded by mu
  std::vector<std::thread> threads;

  void count(const std::optional<db_error>& e) {
    if (auto* c = outcomes[outcome_index(e)])
      c->inc();
  }

  void publish_depth(std::size_t depth) {
    if (queue_gauge)
      queue_gauge->set(static_cast<double>(depth));
  }

  void run_worker();
};

// Each pool thread owns one connection, opened on its first job. Jobs run
// one at a time per thread, so a connection is never shared.
void db_pool::impl::run_worker() {
  std::unique_ptr<pqxx::connection> conn;
  steady::time_point next_connect{};
  milliseconds pause = reconnect_pause_min;
  db_error connect_error;
  for (;;) {
    job j;
    {
      std::unique_lock lock{mu};
      wake.wait(lock, [this] { return stopping || !queue.empty(); });
      if (queue.empty())
        return; // stopping, and the queue is drained
      j = std::move(queue.front());
      queue.pop_front();
      publish_depth(queue.size());
    }

    auto t0 = steady::now();
    std::optional<db_error> err;
    if (!conn) {
      if (t0 < next_connect) {
        err = connect_error;
      } else {
        try {
          conn = std::make_unique<pqxx::connection>(options.conninfo);
          if (!options.session.empty()) {
            pqxx::nontransaction tx{*conn};
            for (auto& [name, value] : options.session)
              tx.exec("SET " + tx.quote_name(name) + " = " + tx.quote(value));
          }
          pause = reconnect_pause_min;
        } catch (...) {
          connect_error = current_db_error();
          // Whatever libpq said (bad password, no such database), no
          // connection means the database is unavailable to this caller.
          connect_error.what = db_error::kind::unavailable;
          err = connect_error;
          next_connect = t0 + pause;
          pause = std::min(pause * 2, reconnect_pause_max);
        }
      }
    }
    if (!err) {
      try {
        j.work(*conn);
      } catch (...) {
        err = current_db_error();
        // Dropped here and reopened by the next job: libpqxx 6 would try to
        // reactivate it in place, which hides the failure from us.
        if (err->what == db_error::kind::unavailable
            || err->what == db_error::kind::in_doubt || !conn->is_open())
          conn.reset();
      }
    }

    count(err);
    if (duration)
      duration->observe(
          std::chrono::duration<double>(steady::now() - t0).count());
    try {
      j.done(std::move(err));
    } catch (const std::exception& e) {
      spdlog::error("db_pool: a completion callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("db_pool: a completion callback threw");
    }
  }
}

db_pool::db_pool(pool_options options, metrics::registry* metrics)
    : impl_(std::make_unique<impl>()) {
  impl_->options = std::move(options);
  impl_->options.size = std::max(1, impl_->options.size);
  impl_->options.max_queue = std::max(0, impl_->options.max_queue);
  if (metrics) {
    impl_->queue_gauge
        = &metrics
               ->gauges("karvon_db_pool_queue_depth",
                        "Database jobs waiting for a pool connection.", {})
               .with({});
    auto& queries = metrics->counters(
        "karvon_db_queries_total",
        "Database jobs by outcome: ok or the db_error kind.", {"outcome"});
    impl_->outcomes[0] = &queries.with({"ok"});
    for (std::size_t i = 1; i < outcome_count; ++i)
      impl_->outcomes[i]
          = &queries.with({to_string(static_cast<db_error::kind>(i - 1))});
    impl_->duration
        = &metrics
               ->histograms("karvon_db_query_duration_seconds",
                            "Time a database job held its connection, "
                            "connecting included.",
                            {}, metrics::latency_buckets())
               .with({});
  }
  for (int i = 0; i < impl_->options.size; ++i) {
    impl_->threads.emplace_back([this] { impl_->run_worker(); });
    pthread_setname_np(impl_->threads.back().native_handle(), "karvon-db");
  }
}

db_pool::~db_pool() {
  stop();
  for (auto& t : impl_->threads)
    t.join();
}

bool db_pool::submit(work_fn work, done_fn done) {
  {
    std::lock_guard lock{impl_->mu};
    if (impl_->stopping)
      return false;
    if (impl_->queue.size()
        >= static_cast<std::size_t>(impl_->options.max_queue)) {
      impl_->count(db_error{db_error::kind::overloaded, {}, {}});
      return false;
    }
    impl_->queue.push_back(job{std::move(work), std::move(done)});
    impl_->publish_depth(impl_->queue.size());
  }
  impl_->wake.notify_one();
  return true;
}

void db_pool::ping(
    std::function<void(std::chrono::microseconds, std::optional<db_error>)>
        done) {
  using std::chrono::microseconds;
  auto t0 = steady::now();
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  bool queued = submit(
      [](pqxx::connection_base& c) {
        pqxx::nontransaction tx{c};
        tx.exec("SELECT 1");
      },
      [t0, shared_done](std::optional<db_error> e) {
        (*shared_done)(
            std::chrono::duration_cast<microseconds>(steady::now() - t0),
            std::move(e));
      });
  if (!queued)
    (*shared_done)(microseconds{0},
                   db_error{db_error::kind::overloaded,
                            {},
                            "the database pool is full or stopping"});
}

std::size_t db_pool::queue_depth() const {
  std::lock_guard lock{impl_->mu};
  return impl_->queue.size();
}

void db_pool::stop() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
}

} // namespace karvon::persistence
