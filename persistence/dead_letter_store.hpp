// SQL for the dead_letters table: jobs a sink gave up on after their last
// retry. Every function is blocking: call it on a db_pool thread or from the
// CLI. Errors are libpqxx's exceptions (a db_error through the pool).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

struct dead_letter_row {
  std::int64_t id = 0; //!< set by the database
  std::string kind;    //!< what the job was ("telegram.send")
  std::string sink;    //!< the sink that ran it; a replay goes there
  std::string payload; //!< the job's payload; valid UTF-8, no NUL
  std::string last_error;
  int attempts = 0;
  int priority = 0;           //!< the job's priority class
  std::string sub_key;        //!< empty: none
  int window_calls = 0;       //!< the sub-key's window: calls per window_ms
  std::int64_t window_ms = 0; //!< 0: no window
  /// ISO 8601; on insert, empty means now. Read back as UTC with
  /// microseconds, "2024-05-01T10:00:00.123456Z".
  std::string created_at;
  std::string failed_at;
  std::string replayed_at; //!< empty when never replayed
  int replay_count = 0;
};

struct dead_letter_query {
  /// Only ids below this (the last id of the previous page); none: newest.
  std::optional<std::int64_t> before;
  /// Rows at most; clamped to [1, 1000].
  int limit = 50;
  /// Only this kind; empty: all.
  std::string kind;
};

/// Inserts the row (id, replayed_at and replay_count are ignored) and
/// returns its id. Throws on invalid text (SQLSTATE 22021) or a bad
/// timestamp (22007/22008).
std::int64_t insert_dead_letter(pqxx::connection_base& c,
                                const dead_letter_row& row);

/// Rows newest first (by id, descending), filtered and paged by `q`.
std::vector<dead_letter_row> list_dead_letters(pqxx::connection_base& c,
                                               const dead_letter_query& q);

/// The row with this id, or nullopt.
std::optional<dead_letter_row> find_dead_letter(pqxx::connection_base& c,
                                                std::int64_t id);

/// Records a replay: replayed_at = now(), replay_count + 1. False when no
/// row has this id.
bool mark_dead_letter_replayed(pqxx::connection_base& c, std::int64_t id);

} // namespace karvon::persistence
