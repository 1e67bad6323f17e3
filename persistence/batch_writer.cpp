#include "persistence/batch_writer.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/stream_to>
#include <pqxx/transaction>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::persistence {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A batch whose connection broke before COMMIT was rolled back by the
// server, so it is written once more on a new connection before its callers
// hear of the failure.
constexpr int max_attempts = 2;

// After the COPY into the table met a duplicate key, this many batches skip
// it and take the staging path at once: a retry storm (a replay after a
// crash) would otherwise pay for every batch twice.
constexpr int staging_batches_after_refusal = 16;

// As in db_pool: a server that is down is not asked again for every batch.
constexpr milliseconds reconnect_pause_min{250};
constexpr milliseconds reconnect_pause_max{2000};

// How often an in-doubt COMMIT is asked about, and after how many "in
// progress" answers the old backend is ended so that it settles.
constexpr milliseconds in_doubt_poll_min{10};
constexpr milliseconds in_doubt_poll_max{500};
constexpr int in_progress_before_terminate = 2;

// A session temporary table with the target's column types (no
// constraints, no defaults), for the ON CONFLICT path and the in-doubt
// check. ON COMMIT DELETE ROWS empties it after every batch.
constexpr const char* stage_table = "karvon_batch_stage";
constexpr const char* ord_column = "karvon_batch_ord";

/// One row in COPY text format, escaped on the caller's thread so that the
/// writer's thread only sends it. A raw tab separates fields: escaping
/// turns every tab inside a value into the two characters `\t`.
struct copy_line {
  std::string text;
};

// libpqxx 6.4's stream_to writes a row with separated_list(row, escaper),
// which it has only for tuples; found by argument-dependent lookup, this
// overload hands it a line that is already escaped.
[[maybe_unused]] std::string
separated_list(const std::string&, const copy_line& line,
               const pqxx::internal::TypedCopyEscaper&) {
  return line.text;
}

void append_copy_value(std::string& out,
                       const std::optional<std::string>& value) {
  if (!value) {
    out += "\\N";
    return;
  }
  for (char c : *value) {
    switch (c) {
    case '\\':
      out += "\\\\";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    default:
      out += c;
    }
  }
}

/// Field `index` (0-based) of an escaped line.
std::string_view copy_field(const std::string& line, std::size_t index) {
  std::size_t begin = 0;
  for (std::size_t i = 0; i < index; ++i)
    begin = line.find('\t', begin) + 1;
  auto end = line.find('\t', begin);
  return std::string_view{line}.substr(
      begin, end == std::string::npos ? std::string::npos : end - begin);
}

/// array_agg of non-negative integers as text, "{1,5,7}"; empty for NULL.
std::vector<std::size_t> parse_ordinals(const pqxx::field& f) {
  std::vector<std::size_t> out;
  if (f.is_null())
    return out;
  std::size_t n = 0;
  bool digits = false;
  for (const char* p = f.c_str(); *p; ++p) {
    if (*p >= '0' && *p <= '9') {
      n = n * 10 + static_cast<std::size_t>(*p - '0');
      digits = true;
    } else if (digits) {
      out.push_back(n);
      n = 0;
      digits = false;
    }
  }
  return out;
}

std::string joined(const std::vector<std::string>& items, const char* sep,
                   const std::string& prefix = {}) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty())
      out += sep;
    out += prefix + item;
  }
  return out;
}

db_error error_of(db_error::kind k, std::string message) {
  return db_error{k, {}, std::move(message)};
}

struct waiting_row {
  copy_line line;
  batch_writer::done_fn done;
  steady::time_point arrived;
};

using batch = std::vector<waiting_row>;

/// How one attempt at a batch ended, when it did not throw.
struct attempt {
  enum class state { committed, refused, in_doubt };
  state what = state::committed;
  std::vector<write_result> results; //!< per row; for in_doubt, what they
                                     //!< are if the COMMIT took effect
  std::int64_t txid = 0;
};

} // namespace

struct batch_writer::impl {
  batch_writer_options opt;
  std::size_t max_rows = 1;
  std::vector<std::size_t> key_index; // of each key column in opt.columns

  metrics::counter* rows_total = nullptr;
  metrics::counter* rejected_total = nullptr;
  metrics::counter* in_doubt_total = nullptr;
  metrics::histogram* flush_seconds = nullptr;
  metrics::gauge* depth = nullptr;

  mutable std::mutex mu;
  std::condition_variable wake;
  std::deque<waiting_row> waiting; // guarded by mu
  bool stopping = false;           // guarded by mu
  std::thread thread;

  // Everything below is used only on the writer's thread.
  std::unique_ptr<pqxx::connection> conn;
  int backend_pid = 0;
  int staging_left = 0;
  steady::time_point next_connect{};
  milliseconds pause = reconnect_pause_min;
  std::exception_ptr connect_failure;
  // SQL of the current connection, quoted with its quote_name.
  std::string q_table;
  std::vector<std::string> q_columns;
  std::vector<std::string> stage_columns; // ord, then the columns
  std::vector<std::string> check_columns; // ord, then the key columns
  std::string insert_sql;
  std::string check_sql;

  void publish_depth(std::size_t n) {
    if (depth)
      depth->set(static_cast<double>(n));
  }

  void run();
  void flush(batch& rows);
  std::vector<write_result> write_batch(const batch& rows);
  attempt try_write(const batch& rows);
  attempt write_direct(const batch& rows);
  attempt write_staged(const batch& rows);
  bool commit(pqxx::work& tx);
  std::vector<write_result> resolve_in_doubt(const batch& rows, attempt a);
  std::vector<bool> rows_present(const batch& rows);
  std::string txid_status(std::int64_t txid);
  void end_backend(int pid, std::int64_t txid);
  void ensure_connected(bool wait_out_pause);
  void connect();
  void drop_connection();
};

void batch_writer::impl::connect() {
  auto c = std::make_unique<pqxx::connection>(opt.conninfo);
  // libpqxx 6 silently reopens a broken connection on the next BEGIN, which
  // would lose this session's staging table and name. Inhibited, the break
  // surfaces as broken_connection and the writer reconnects itself.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  c->inhibit_reactivation(true);
#pragma GCC diagnostic pop
  q_table = c->quote_name(opt.table);
  q_columns.clear();
  for (const auto& name : opt.columns)
    q_columns.push_back(c->quote_name(name));
  std::vector<std::string> q_keys;
  for (auto i : key_index)
    q_keys.push_back(q_columns[i]);
  stage_columns = {ord_column};
  stage_columns.insert(stage_columns.end(), q_columns.begin(), q_columns.end());
  check_columns = {ord_column};
  check_columns.insert(check_columns.end(), q_keys.begin(), q_keys.end());

  const std::string cols = joined(q_columns, ", ");
  const std::string keys = joined(q_keys, ", ");
  std::string s_equals_i, s_equals_t;
  for (const auto& k : q_keys) {
    s_equals_i
        += (s_equals_i.empty() ? "" : " AND ") + ("s." + k) + " = i." + k;
    s_equals_t
        += (s_equals_t.empty() ? "" : " AND ") + ("s." + k) + " = t." + k;
  }
  // Rows go in arrival order, so of two rows with one key in a batch the
  // first is written; RETURNING names only the key, and the join maps it
  // back to that first row. txid_current() is what an in-doubt COMMIT is
  // later asked about.
  insert_sql = "WITH i AS (INSERT INTO " + q_table + " (" + cols + ") SELECT "
               + cols + " FROM " + stage_table + " ORDER BY " + ord_column
               + " ON CONFLICT (" + keys + ") DO NOTHING RETURNING " + keys
               + "), w AS (SELECT min(s." + ord_column + ") AS ord FROM "
               + stage_table + " s JOIN i ON " + s_equals_i + " GROUP BY "
               + joined(q_keys, ", ", "s.")
               + ") SELECT txid_current(), array_agg(ord) FROM w";
  check_sql = "SELECT array_agg(s." + std::string{ord_column} + ") FROM "
              + stage_table + " s WHERE EXISTS (SELECT 1 FROM " + q_table
              + " t WHERE " + s_equals_t + ")";

  pqxx::nontransaction tx{*c};
  tx.exec_params("SELECT set_config('application_name', $1, false)",
                 opt.application_name);
  tx.exec("CREATE TEMP TABLE " + std::string{stage_table}
          + " ON COMMIT DELETE ROWS AS SELECT 0::int AS " + ord_column + ", "
          + cols + " FROM " + q_table + " WITH NO DATA");
  // Planning checks the table, the columns and that the natural key is a
  // unique constraint (ON CONFLICT needs one): a wrong option fails the
  // first batch with the server's message instead of letting the COPY path
  // write duplicates silently.
  tx.exec("EXPLAIN " + insert_sql);
  backend_pid = c->backendpid();
  conn = std::move(c);
}

void batch_writer::impl::drop_connection() {
  conn.reset();
  backend_pid = 0;
}

// Throws what connecting threw; within the pause after a failure, throws
// that again without trying (unless `wait_out_pause`).
void batch_writer::impl::ensure_connected(bool wait_out_pause) {
  if (conn)
    return;
  auto now = steady::now();
  if (!wait_out_pause && now < next_connect && connect_failure)
    std::rethrow_exception(connect_failure);
  try {
    connect();
    pause = reconnect_pause_min;
    connect_failure = nullptr;
  } catch (...) {
    connect_failure = std::current_exception();
    next_connect = now + pause;
    pause = std::min(pause * 2, reconnect_pause_max);
    throw;
  }
}

// COMMIT, telling a definite failure (throws) from an unknown outcome
// (returns false): the connection broke while the COMMIT was in flight.
bool batch_writer::impl::commit(pqxx::work& tx) {
  try {
    tx.commit();
    return true;
  } catch (const pqxx::in_doubt_error&) {
    return false;
  } catch (const pqxx::broken_connection&) {
    return false;
  } catch (const pqxx::failure&) {
    // libpqxx already calls a COMMIT in doubt when the connection is gone
    // afterwards; this only makes sure no such case reads as a failure.
    if (!conn->is_open())
      return false;
    throw;
  }
}

// The fast path: COPY straight into the table. It is all or nothing, so a
// duplicate key (or any refused value) rolls it back and the batch goes
// through the staging path, which tells the rows apart.
attempt batch_writer::impl::write_direct(const batch& rows) {
  attempt a;
  bool reset = false;
  {
    pqxx::work tx{*conn};
    try {
      pqxx::stream_to copy{tx, q_table, q_columns};
      for (const auto& r : rows)
        copy << r.line;
      copy.complete();
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (const pqxx::sql_error& e) {
      if (!conn->is_open())
        throw; // FATAL, as when the backend was terminated
      a.what = attempt::state::refused;
      if (e.sqlstate() == "23505")
        staging_left = staging_batches_after_refusal;
    } catch (const pqxx::failure&) {
      // libpq gives up on a COPY that the server refused half-way without
      // saying why, and the connection's state is then unclear: start over.
      a.what = attempt::state::refused;
      reset = true;
    }
    if (a.what == attempt::state::committed) {
      a.txid = tx.exec1("SELECT txid_current()")[0].as<std::int64_t>();
      a.results.assign(rows.size(), write_result{});
      if (!commit(tx))
        a.what = attempt::state::in_doubt;
      return a;
    }
    if (!reset)
      tx.abort();
  }
  if (reset)
    drop_connection();
  return a;
}

// COPY into the staging table, then one INSERT ... SELECT ... ON CONFLICT
// DO NOTHING that reports which rows it wrote.
attempt batch_writer::impl::write_staged(const batch& rows) {
  attempt a;
  pqxx::work tx{*conn};
  {
    pqxx::stream_to copy{tx, stage_table, stage_columns};
    copy_line line;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      line.text = std::to_string(i);
      line.text += '\t';
      line.text += rows[i].line.text;
      copy << line;
    }
    copy.complete();
  }
  auto r = tx.exec1(insert_sql);
  a.txid = r[0].as<std::int64_t>();
  a.results.assign(rows.size(), write_result{std::nullopt, true});
  for (auto ord : parse_ordinals(r[1]))
    if (ord < rows.size())
      a.results[ord].duplicate = false;
  a.what = commit(tx) ? attempt::state::committed : attempt::state::in_doubt;
  return a;
}

attempt batch_writer::impl::try_write(const batch& rows) {
  ensure_connected(false);
  if (staging_left > 0) {
    --staging_left;
    return write_staged(rows);
  }
  auto a = write_direct(rows);
  if (a.what != attempt::state::refused)
    return a;
  ensure_connected(true);
  return write_staged(rows);
}

std::vector<write_result> batch_writer::impl::write_batch(const batch& rows) {
  db_error error;
  for (int n = 1; n <= max_attempts; ++n) {
    attempt a;
    try {
      a = try_write(rows);
    } catch (...) {
      error = current_db_error();
      // After an error the server reported (a constraint, a bad value) the
      // connection is in a known state and stays; after anything else it
      // may not be.
      if (error.sqlstate.empty() || !conn || !conn->is_open())
        drop_connection();
      if (error.what == db_error::kind::unavailable && n < max_attempts)
        continue;
      break;
    }
    if (a.what == attempt::state::in_doubt)
      return resolve_in_doubt(rows, std::move(a));
    return std::move(a.results);
  }
  return std::vector<write_result>(rows.size(), write_result{error, false});
}

std::string batch_writer::impl::txid_status(std::int64_t txid) {
  pqxx::nontransaction tx{*conn};
  auto f = tx.exec_params1("SELECT txid_status($1)", txid)[0];
  return f.is_null() ? std::string{} : f.as<std::string>();
}

// Ends the backend that ran the transaction, if it still does: a backend
// whose client vanished (or that waits for a standby) settles its
// transaction when it ends. The xid check keeps a reused pid safe.
void batch_writer::impl::end_backend(int pid, std::int64_t txid) {
  pqxx::nontransaction tx{*conn};
  tx.exec_params("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE pid = $1 AND backend_xid::text = $2",
                 pid, std::to_string(txid & 0xFFFFFFFFLL));
}

// Which rows' natural keys are in the table now, by a join with the staging
// table. Rolled back: the keys need not be kept, and a rollback waits for no
// fsync.
std::vector<bool> batch_writer::impl::rows_present(const batch& rows) {
  pqxx::work tx{*conn};
  {
    pqxx::stream_to copy{tx, stage_table, check_columns};
    copy_line line;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      line.text = std::to_string(i);
      for (auto k : key_index) {
        line.text += '\t';
        line.text += copy_field(rows[i].line.text, k);
      }
      copy << line;
    }
    copy.complete();
  }
  std::vector<bool> present(rows.size(), false);
  for (auto ord : parse_ordinals(tx.exec1(check_sql)[0]))
    if (ord < rows.size())
      present[ord] = true;
  tx.abort();
  return present;
}

// The connection broke while COMMIT was in flight: the batch may or may not
// be in the table. Nobody is answered on a guess: a new connection asks
// txid_status() for the transaction's fate and the table for each row's
// natural key. A row whose key is present is a success (as the batch said
// if it committed, else a duplicate of someone else's row); a row whose
// key is absent is an error, and writing it again is safe.
std::vector<write_result>
batch_writer::impl::resolve_in_doubt(const batch& rows, attempt a) {
  if (in_doubt_total)
    in_doubt_total->inc();
  spdlog::warn("batch writer {}: the connection broke during COMMIT of {} "
               "rows (txid {}); asking the database what happened",
               opt.table, rows.size(), a.txid);
  const int old_pid = backend_pid;
  drop_connection();
  const auto deadline = steady::now() + opt.in_doubt_timeout;
  milliseconds poll = in_doubt_poll_min;
  int in_progress = 0;
  std::string status;
  std::optional<std::vector<bool>> present;
  std::string problem = "the transaction was still in progress";
  while (!present) {
    try {
      ensure_connected(true);
      status = txid_status(a.txid);
      bool settled = status != "in progress";
      if (settled) {
        auto seen = rows_present(rows);
        // A backend that committed but has not ended yet (it waits for a
        // standby, say) still hides its rows from everyone else.
        for (std::size_t i = 0; i < rows.size(); ++i)
          if (status == "committed" && !a.results[i].duplicate && !seen[i])
            settled = false;
        if (settled)
          present = std::move(seen);
        else
          problem = "the committed rows are not visible yet";
      }
      if (!settled && ++in_progress >= in_progress_before_terminate)
        end_backend(old_pid, a.txid);
    } catch (...) {
      auto e = current_db_error();
      problem = e.message;
      if (e.sqlstate.empty() || !conn || !conn->is_open())
        drop_connection();
    }
    if (present || steady::now() + poll > deadline)
      break;
    std::this_thread::sleep_for(poll);
    poll = std::min(poll * 2, in_doubt_poll_max);
  }

  std::vector<write_result> out(rows.size());
  if (!present) {
    spdlog::error("batch writer {}: could not learn the outcome of txid {} "
                  "within {} ms: {}",
                  opt.table, a.txid, opt.in_doubt_timeout.count(), problem);
    for (auto& r : out)
      r.error = error_of(db_error::kind::in_doubt,
                         "the connection broke during COMMIT and the outcome "
                         "could not be learnt: "
                             + problem);
    return out;
  }
  const bool committed = status == "committed";
  spdlog::warn("batch writer {}: txid {} is {}", opt.table, a.txid,
               status.empty() ? "unknown" : status);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if ((*present)[i]) {
      out[i] = committed ? a.results[i] : write_result{std::nullopt, true};
    } else if (status == "aborted") {
      out[i].error = error_of(db_error::kind::unavailable,
                              "the connection broke during COMMIT and the "
                              "batch was rolled back; nothing was written");
    } else {
      // Committed, yet the key is gone (deleted since?), or the fate is
      // unknown: neither is a success to report.
      out[i].error = error_of(
          db_error::kind::in_doubt,
          "the connection broke during COMMIT; the row is not in the table");
    }
  }
  return out;
}

void batch_writer::impl::flush(batch& rows) {
  auto t0 = steady::now();
  auto results = write_batch(rows);
  if (flush_seconds)
    flush_seconds->observe(
        std::chrono::duration<double>(steady::now() - t0).count());
  if (rows_total)
    rows_total->inc(static_cast<std::uint64_t>(
        std::count_if(results.begin(), results.end(),
                      [](const write_result& r) { return r.ok(); })));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    try {
      rows[i].done(std::move(results[i]));
    } catch (const std::exception& e) {
      spdlog::error("batch writer {}: a done callback threw: {}", opt.table,
                    e.what());
    } catch (...) {
      spdlog::error("batch writer {}: a done callback threw", opt.table);
    }
  }
}

// The writer's thread: waits for a first row, then until the batch is full,
// its first row has waited max_delay, or the writer stops (with
// write_when_idle, not at all), takes up to max_rows rows and writes them
// while the next batch collects.
void batch_writer::impl::run() {
  batch rows;
  rows.reserve(max_rows);
  for (;;) {
    {
      std::unique_lock lock{mu};
      wake.wait(lock, [this] { return stopping || !waiting.empty(); });
      if (waiting.empty())
        break; // stopping, and every row taken is written
      if (!opt.write_when_idle) {
        auto due = waiting.front().arrived + opt.max_delay;
        wake.wait_until(lock, due, [this] {
          return stopping || waiting.size() >= max_rows;
        });
      }
      auto n = std::min(waiting.size(), max_rows);
      rows.clear();
      for (std::size_t i = 0; i < n; ++i) {
        rows.push_back(std::move(waiting.front()));
        waiting.pop_front();
      }
      publish_depth(waiting.size());
    }
    flush(rows);
  }
  drop_connection();
}

batch_writer::batch_writer(batch_writer_options options,
                           metrics::registry* metrics)
    : impl_(std::make_unique<impl>()) {
  auto& d = *impl_;
  d.opt = std::move(options);
  if (d.opt.table.empty() || d.opt.columns.empty() || d.opt.key_columns.empty())
    throw std::invalid_argument(
        "batch_writer needs a table, columns and key columns");
  for (const auto& k : d.opt.key_columns) {
    auto it = std::find(d.opt.columns.begin(), d.opt.columns.end(), k);
    if (it == d.opt.columns.end())
      throw std::invalid_argument("batch_writer " + d.opt.table
                                  + ": key column " + k
                                  + " is not among the columns");
    d.key_index.push_back(static_cast<std::size_t>(it - d.opt.columns.begin()));
  }
  if (d.opt.max_rows < 1 || d.opt.max_waiting < 1)
    throw std::invalid_argument("batch_writer " + d.opt.table
                                + ": max_rows and max_waiting must be >= 1");
  d.max_rows = static_cast<std::size_t>(d.opt.max_rows);
  if (d.opt.application_name.empty())
    d.opt.application_name = "karvon-batch:" + d.opt.table;
  if (metrics) {
    d.rows_total
        = &metrics
               ->counters("karvon_db_batch_rows_total",
                          "Rows batch writers acknowledged as committed "
                          "(written, or duplicates of a natural key).",
                          {"table"})
               .with({d.opt.table});
    d.rejected_total
        = &metrics
               ->counters("karvon_db_batch_rejected_total",
                          "Rows refused at once because a batch writer's "
                          "buffer was full.",
                          {"table"})
               .with({d.opt.table});
    d.in_doubt_total
        = &metrics
               ->counters("karvon_db_batch_in_doubt_total",
                          "Batches whose connection broke during COMMIT, "
                          "so their outcome was checked in the database.",
                          {"table"})
               .with({d.opt.table});
    d.depth = &metrics
                   ->gauges("karvon_db_batch_queue_depth",
                            "Rows waiting for a batch writer's next batch.",
                            {"table"})
                   .with({d.opt.table});
    d.flush_seconds
        = &metrics
               ->histograms("karvon_db_batch_flush_seconds",
                            "Time to write one batch, from taking its rows "
                            "to knowing their outcome.",
                            {}, metrics::latency_buckets())
               .with({});
  }
  d.thread = std::thread{[this] { impl_->run(); }};
  pthread_setname_np(d.thread.native_handle(), "karvon-batch");
}

batch_writer::~batch_writer() {
  stop();
  impl_->thread.join();
}

void batch_writer::write(batch_row row, done_fn done) {
  auto& d = *impl_;
  auto refuse = [&](db_error::kind k, std::string message) {
    done(write_result{error_of(k, std::move(message)), false});
  };
  if (row.size() != d.opt.columns.size()) {
    refuse(db_error::kind::invalid, "a row of " + d.opt.table + " needs "
                                        + std::to_string(d.opt.columns.size())
                                        + " values, not "
                                        + std::to_string(row.size()));
    return;
  }
  for (auto k : d.key_index)
    if (!row[k]) {
      refuse(db_error::kind::invalid, "the natural key column "
                                          + d.opt.columns[k] + " of "
                                          + d.opt.table + " is NULL");
      return;
    }
  waiting_row w;
  for (std::size_t i = 0; i < row.size(); ++i) {
    // PostgreSQL text cannot hold a NUL byte: refused here, it cannot fail
    // the batch it would have joined.
    if (row[i] && std::memchr(row[i]->data(), '\0', row[i]->size())) {
      refuse(db_error::kind::invalid,
             "column " + d.opt.columns[i] + " holds a NUL byte");
      return;
    }
    if (i > 0)
      w.line.text += '\t';
    append_copy_value(w.line.text, row[i]);
  }
  w.done = std::move(done);
  w.arrived = steady::now();

  std::optional<db_error> refused;
  bool notify = false;
  {
    std::lock_guard lock{d.mu};
    if (d.stopping) {
      refused
          = error_of(db_error::kind::unavailable,
                     "the batch writer for " + d.opt.table + " is stopping");
    } else if (d.waiting.size() >= d.opt.max_waiting) {
      refused
          = error_of(db_error::kind::overloaded,
                     "the batch writer for " + d.opt.table + " has "
                         + std::to_string(d.opt.max_waiting) + " rows waiting");
    } else {
      d.waiting.push_back(std::move(w));
      auto n = d.waiting.size();
      // The writer waits either for a first row or for a full batch.
      notify = n == 1 || n == d.max_rows;
      d.publish_depth(n);
    }
  }
  if (refused) {
    if (refused->what == db_error::kind::overloaded && d.rejected_total)
      d.rejected_total->inc();
    w.done(write_result{std::move(refused), false});
    return;
  }
  if (notify)
    d.wake.notify_one();
}

std::size_t batch_writer::queue_depth() const {
  std::lock_guard lock{impl_->mu};
  return impl_->waiting.size();
}

void batch_writer::stop() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
}

} // namespace karvon::persistence
