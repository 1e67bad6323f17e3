// Group commit (ARCHITECTURE.md §5): a batch writer collects rows for one
// table from many callers and writes them as one batch per transaction,
// answering each caller only after its batch has committed. Rows carry a
// natural key (a unique constraint of the table), so writing the same row
// twice has one effect and the second caller learns it was a duplicate.
//
// Each writer owns one connection and one thread: batches of a table are
// written one at a time, in arrival order, while the next batch collects.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "persistence/errors.hpp"

namespace karvon::metrics {
class registry;
}

namespace karvon::persistence {

struct batch_writer_options {
  std::string conninfo; //!< libpq string; the writer opens its own connection
  std::string table;    //!< a table in the search path, quoted by the writer
  std::vector<std::string> columns;       //!< what each row holds, in order
  std::vector<std::string> key_columns;   //!< the natural key: the columns of a
                                          //!< unique constraint, all in columns
  int max_rows = 1000;                    //!< database.batch_max_rows
  std::chrono::milliseconds max_delay{5}; //!< database.batch_max_delay_ms
  /// For callers who wait on the commit (a chat answer): write at once
  /// whatever is waiting, without max_delay, when no batch is being
  /// written. Rows arriving during a write still collect into the next
  /// batch, so under load batches grow by themselves; at low load nobody
  /// waits for company that is not coming.
  bool write_when_idle = false;
  std::size_t max_waiting = 10000; //!< rows waiting before `overloaded`
  std::string application_name;    //!< "karvon-batch:<table>" when empty
  /// How long to keep asking the database whether a COMMIT whose connection
  /// broke took effect, before answering `in_doubt`.
  std::chrono::milliseconds in_doubt_timeout{10000};
};

/// A value per column of batch_writer_options::columns, in PostgreSQL's
/// text input format ("42", "2026-01-01T00:00:00Z", "{\"a\":1}"); nullopt
/// is NULL. Values travel as COPY data, never as SQL text.
using batch_row = std::vector<std::optional<std::string>>;

/// What happened to one row.
struct write_result {
  /// Set when the row is not known to be written: its batch failed (every
  /// row of the batch gets the same error), the writer was full
  /// (overloaded) or stopping (unavailable), or the row was malformed
  /// (invalid). `in_doubt` means the outcome could not be learnt. Writing
  /// the row again is always safe: the natural key keeps it single.
  std::optional<db_error> error;
  /// Without error: true when a row with the same natural key was already
  /// in the table (or earlier in the same batch), so nothing was written.
  bool duplicate = false;

  bool ok() const { return !error; }
};

class batch_writer {
public:
  /// Called once per row: on the writer's thread after its batch committed
  /// or failed, or at once on the caller's thread when write() refuses the
  /// row. Keep it short (post the answer elsewhere): the next batch waits.
  using done_fn = std::function<void(write_result)>;

  /// Starts the writer's thread; connects on the first batch. Throws
  /// std::invalid_argument for options that can never work (no columns, a
  /// key column not among them). `metrics` may be null.
  batch_writer(batch_writer_options options, metrics::registry* metrics);

  /// Stops taking rows, writes every row already taken, then returns.
  ~batch_writer();

  batch_writer(const batch_writer&) = delete;
  batch_writer& operator=(const batch_writer&) = delete;

  /// Queues `row` for the next batch and returns without blocking; `done`
  /// gets the result (see done_fn). Refused at once, with `done` called
  /// before write returns: a wrong number of values or a NULL key value
  /// (invalid), max_waiting rows already waiting (overloaded), stop()
  /// called (unavailable). Thread-safe.
  void write(batch_row row, done_fn done);

  /// Rows waiting for a batch now (not counting the batch being written).
  std::size_t queue_depth() const;

  /// Stops taking rows; those already taken are still written. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::persistence
