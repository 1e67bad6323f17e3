#include "persistence/dead_letter_store.hpp"

#include <algorithm>
#include <limits>

#include <pqxx/connection_base>
#include <pqxx/nontransaction>
#include <pqxx/result>

namespace karvon::persistence {

namespace {

// Timestamps leave the database as ISO 8601 UTC text with microseconds, so
// no client-side time zone or libpqxx conversion is involved.
const char* const columns = R"sql(
  id, kind, sink, payload, last_error, attempts, priority, sub_key,
  window_calls, window_ms,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  coalesce(to_char(replayed_at AT TIME ZONE 'UTC',
                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
  replay_count)sql";

const char* const insert_sql = R"sql(
INSERT INTO dead_letters (kind, sink, payload, last_error, attempts, priority,
                          sub_key, window_calls, window_ms, created_at,
                          failed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
        coalesce(NULLIF($10, '')::timestamptz, now()),
        coalesce(NULLIF($11, '')::timestamptz, now()))
RETURNING id)sql";

// `$2 = ''` keeps one statement for both cases; PostgreSQL plans unnamed
// statements with the actual values, so the kind index is still used.
const std::string list_sql = std::string("SELECT") + columns + R"sql(
FROM dead_letters
WHERE id < $1 AND ($2 = '' OR kind = $2)
ORDER BY id DESC
LIMIT $3)sql";

const std::string find_sql
    = std::string("SELECT") + columns + "\nFROM dead_letters WHERE id = $1";

const char* const replayed_sql = R"sql(
UPDATE dead_letters
SET replayed_at = now(), replay_count = replay_count + 1
WHERE id = $1)sql";

dead_letter_row read_row(const pqxx::row& r) {
  dead_letter_row d;
  d.id = r[0].as<std::int64_t>();
  d.kind = r[1].as<std::string>();
  d.sink = r[2].as<std::string>();
  d.payload = r[3].as<std::string>();
  d.last_error = r[4].as<std::string>();
  d.attempts = r[5].as<int>();
  d.priority = r[6].as<int>();
  d.sub_key = r[7].as<std::string>();
  d.window_calls = r[8].as<int>();
  d.window_ms = r[9].as<std::int64_t>();
  d.created_at = r[10].as<std::string>();
  d.failed_at = r[11].as<std::string>();
  d.replayed_at = r[12].as<std::string>();
  d.replay_count = r[13].as<int>();
  return d;
}

} // namespace

std::int64_t insert_dead_letter(pqxx::connection_base& c,
                                const dead_letter_row& row) {
  pqxx::nontransaction tx{c};
  auto r = tx.exec_params1(insert_sql, row.kind, row.sink, row.payload,
                           row.last_error, row.attempts, row.priority,
                           row.sub_key, row.window_calls, row.window_ms,
                           row.created_at, row.failed_at);
  return r[0].as<std::int64_t>();
}

std::vector<dead_letter_row> list_dead_letters(pqxx::connection_base& c,
                                               const dead_letter_query& q) {
  const auto before
      = q.before.value_or(std::numeric_limits<std::int64_t>::max());
  const int limit = std::clamp(q.limit, 1, 1000);
  pqxx::nontransaction tx{c};
  std::vector<dead_letter_row> out;
  for (const auto& r : tx.exec_params(list_sql, before, q.kind, limit))
    out.push_back(read_row(r));
  return out;
}

std::optional<dead_letter_row> find_dead_letter(pqxx::connection_base& c,
                                                std::int64_t id) {
  pqxx::nontransaction tx{c};
  auto r = tx.exec_params(find_sql, id);
  if (r.empty())
    return std::nullopt;
  return read_row(r[0]);
}

bool mark_dead_letter_replayed(pqxx::connection_base& c, std::int64_t id) {
  pqxx::nontransaction tx{c};
  return tx.exec_params(replayed_sql, id).affected_rows() == 1;
}

} // namespace karvon::persistence
