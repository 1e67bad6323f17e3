#include "persistence/migrations.hpp"

#include <algorithm>
#include <cctype>
#include <memory>
#include <set>

#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>
#include <spdlog/spdlog.h>

#include "persistence/errors.hpp"

namespace karvon::persistence {

namespace {

// Session advisory lock that serialises migrate() across nodes: "karvon" in
// ASCII followed by 0x0001. Session-level (not per transaction) because it
// must cover every migration of a run; it is also released if we die.
constexpr long long migration_lock_key = 0x6B6172766F6E0001LL;

// How long a node waits for another node's migrations before giving up with
// an error rather than hanging its start-up forever.
constexpr const char* lock_wait = "300s";

const char* const create_schema_migrations = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    int PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
))sql";

std::string trimmed(const char* what) {
  std::string s = what;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.pop_back();
  return s;
}

void check_order(const std::vector<migration>& migrations) {
  for (std::size_t i = 1; i < migrations.size(); ++i)
    if (migrations[i].version <= migrations[i - 1].version)
      throw startup_error("migrations out of order: " + migrations[i].name
                          + " after " + migrations[i - 1].name);
}

int apply_pending(pqxx::connection& c,
                  const std::vector<migration>& migrations) {
  {
    pqxx::work tx{c};
    tx.exec(create_schema_migrations);
    tx.commit();
  }
  std::set<int> applied;
  {
    pqxx::nontransaction tx{c};
    for (const auto& row : tx.exec("SELECT version FROM schema_migrations"))
      applied.insert(row[0].as<int>());
  }
  int newest_known = migrations.empty() ? 0 : migrations.back().version;
  if (!applied.empty() && *applied.rbegin() > newest_known)
    throw startup_error(
        "the database schema is at version " + std::to_string(*applied.rbegin())
        + " but this karvon binary knows migrations only up to version "
        + std::to_string(newest_known)
        + ": the binary is older than the schema. Run a newer karvon");

  int count = 0;
  for (const auto& m : migrations) {
    if (applied.count(m.version))
      continue;
    try {
      // One transaction per file: the whole text runs as one simple query
      // (several statements), and a failure rolls all of it back together
      // with its schema_migrations row.
      pqxx::work tx{c};
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) "
                     "VALUES ($1, $2)",
                     m.version, m.name);
      tx.commit();
    } catch (const pqxx::in_doubt_error& e) {
      throw startup_error("migration " + m.name
                          + ": the connection broke during COMMIT, so it may "
                            "or may not be applied; run migrate again: "
                          + trimmed(e.what()));
    } catch (const pqxx::failure& e) {
      throw startup_error("migration " + m.name
                          + " failed: " + trimmed(e.what()));
    }
    spdlog::info("applied migration {}", m.name);
    ++count;
  }
  return count;
}

} // namespace

int migrate(const std::string& conninfo,
            const std::vector<migration>& migrations) {
  check_order(migrations);
  std::unique_ptr<pqxx::connection> c;
  try {
    c = std::make_unique<pqxx::connection>(conninfo);
    pqxx::nontransaction tx{*c};
    // CREATE TABLE IF NOT EXISTS says NOTICE when the table exists; libpqxx
    // would print it to stderr on every start.
    tx.exec("SET client_min_messages TO warning");
    tx.exec(std::string("SET lock_timeout TO '") + lock_wait + "'");
    tx.exec_params("SELECT pg_advisory_lock($1)", migration_lock_key);
    tx.exec("SET lock_timeout TO DEFAULT");
  } catch (const pqxx::failure& e) {
    throw startup_error("migrations: cannot take the migration lock: "
                        + trimmed(e.what()));
  }
  int count = 0;
  try {
    count = apply_pending(*c, migrations);
  } catch (const pqxx::failure& e) {
    throw startup_error("migrations: " + trimmed(e.what()));
  }
  // Closing the session would release the lock too; unlocking says so.
  try {
    pqxx::nontransaction tx{*c};
    tx.exec_params("SELECT pg_advisory_unlock($1)", migration_lock_key);
  } catch (const pqxx::failure&) {
  }
  return count;
}

} // namespace karvon::persistence
