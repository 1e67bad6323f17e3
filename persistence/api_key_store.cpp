#include "persistence/api_key_store.hpp"

#include <pqxx/binarystring>
#include <pqxx/connection_base>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

namespace karvon::persistence {

namespace {

// Creating and revoking keys take this transaction-scoped advisory lock
// before they draw a version, so versions commit in increasing order: a
// server polling max(version) can never see 6 while 5 is still to come and
// so miss 5 (a revocation, say). touch_api_keys does not take it.
constexpr long long version_lock_key = 0x6B6172766F6E0002LL;

const char* const insert_sql = R"sql(
INSERT INTO api_keys (name, role, partner_id, lookup, secret_hash)
VALUES ($1, $2, NULLIF($3, ''), $4, $5)
RETURNING id)sql";

// Timestamps leave the database as ISO 8601 UTC text, so no client-side
// time zone or libpqxx conversion is involved.
const char* const list_sql = R"sql(
SELECT id, name, role, coalesce(partner_id, ''), lookup, secret_hash,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       coalesce(to_char(last_used_at AT TIME ZONE 'UTC',
                        'YYYY-MM-DD"T"HH24:MI:SS"Z"'), ''),
       revoked_at IS NOT NULL
FROM api_keys
ORDER BY id)sql";

const char* const revoke_sql = R"sql(
UPDATE api_keys
SET revoked_at = now(), version = nextval('api_keys_version_seq')
WHERE id = $1 AND revoked_at IS NULL)sql";

const char* const version_sql
    = "SELECT coalesce(max(version), 0) FROM api_keys";

// The ids travel as one array parameter: one statement for any count.
const char* const touch_sql
    = "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::bigint[])";

const char* const active_admin_sql = R"sql(
SELECT EXISTS (SELECT 1 FROM api_keys
               WHERE role = 'admin' AND revoked_at IS NULL))sql";

} // namespace

std::int64_t insert_api_key(pqxx::connection_base& c, const api_key_row& row) {
  pqxx::work tx{c};
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", version_lock_key);
  auto r = tx.exec_params1(insert_sql, row.name, row.role, row.partner_id,
                           row.lookup, pqxx::binarystring{row.secret_hash});
  auto id = r[0].as<std::int64_t>();
  tx.commit();
  return id;
}

std::vector<api_key_row> list_api_keys(pqxx::connection_base& c) {
  pqxx::nontransaction tx{c};
  std::vector<api_key_row> out;
  for (const auto& r : tx.exec(list_sql)) {
    api_key_row k;
    k.id = r[0].as<std::int64_t>();
    k.name = r[1].as<std::string>();
    k.role = r[2].as<std::string>();
    k.partner_id = r[3].as<std::string>();
    k.lookup = r[4].as<std::string>();
    k.secret_hash = pqxx::binarystring{r[5]}.str();
    k.created_at = r[6].as<std::string>();
    k.last_used_at = r[7].as<std::string>();
    k.revoked = r[8].as<bool>();
    out.push_back(std::move(k));
  }
  return out;
}

bool revoke_api_key(pqxx::connection_base& c, std::int64_t id) {
  pqxx::work tx{c};
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", version_lock_key);
  auto r = tx.exec_params(revoke_sql, id);
  tx.commit();
  return r.affected_rows() == 1;
}

std::int64_t api_keys_version(pqxx::connection_base& c) {
  pqxx::nontransaction tx{c};
  return tx.exec1(version_sql)[0].as<std::int64_t>();
}

void touch_api_keys(pqxx::connection_base& c,
                    const std::vector<std::int64_t>& ids) {
  if (ids.empty())
    return;
  std::string array = "{";
  for (auto id : ids) {
    if (array.size() > 1)
      array += ',';
    array += std::to_string(id);
  }
  array += '}';
  pqxx::nontransaction tx{c};
  tx.exec_params(touch_sql, array);
}

bool has_active_admin_key(pqxx::connection_base& c) {
  pqxx::nontransaction tx{c};
  return tx.exec1(active_admin_sql)[0].as<bool>();
}

} // namespace karvon::persistence
