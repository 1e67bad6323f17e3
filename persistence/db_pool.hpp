// A bounded pool of PostgreSQL connections, each owned by its own thread.
// Blocking libpqxx calls happen only on these threads, never on CAF
// scheduler threads or Beast I/O threads: callers hand the pool a job and
// get a completion call back.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "persistence/errors.hpp"

namespace pqxx {
class connection_base;
}

namespace karvon::metrics {
class registry;
}

namespace karvon::persistence {

struct pool_options {
  std::string conninfo;
  int size = 8;          //!< connections and threads
  int max_queue = 10000; //!< jobs waiting for a connection
  /// Session settings applied to every new connection ("SET name = value"),
  /// e.g. {"idle_in_transaction_session_timeout", "2000"}.
  std::vector<std::pair<std::string, std::string>> session;
};

class db_pool {
public:
  using work_fn = std::function<void(pqxx::connection_base&)>;
  using done_fn = std::function<void(std::optional<db_error>)>;

  /// Opens no connection yet: each thread connects on its first job and
  /// reconnects after a broken connection. `metrics` may be null.
  db_pool(pool_options options, metrics::registry* metrics);

  /// Finishes the jobs already queued, then joins the threads.
  ~db_pool();

  db_pool(const db_pool&) = delete;
  db_pool& operator=(const db_pool&) = delete;

  /// Runs `work` on a pool thread with a connection, then calls `done`
  /// exactly once on that thread: with nullopt when `work` returned, with the
  /// error when it threw (libpqxx exceptions become db_error). Returns false,
  /// and calls nothing, when the queue is full or the pool is stopping.
  /// Thread-safe; never blocks.
  bool submit(work_fn work, done_fn done);

  /// Round trip `SELECT 1`; `done` gets the latency (from this call to the
  /// answer, queue wait included) or the error, on a pool thread; when the
  /// pool refuses the job, at once on the caller's thread with `overloaded`.
  void
  ping(std::function<void(std::chrono::microseconds, std::optional<db_error>)>
           done);

  /// Jobs waiting for a connection now.
  std::size_t queue_depth() const;

  /// Stops taking jobs; queued ones still run. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Turns the exception in flight (call inside a catch block) into a
/// db_error. For callers that run libpqxx outside the pool (the CLI).
db_error current_db_error();

} // namespace karvon::persistence
