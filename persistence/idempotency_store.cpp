#include "persistence/idempotency_store.hpp"

#include <pqxx/binarystring>
#include <pqxx/connection_base>
#include <pqxx/nontransaction>
#include <pqxx/result>

namespace karvon::persistence {

namespace {

// One statement, so concurrent identical requests serialise on the
// primary key: the first inserts; the others wait for its row and then see
// it pending. An expired row, or a pending one past its lease with the same
// hash, is taken over in place, and that also counts as proceed.
const char* const claim_sql = R"sql(
INSERT INTO idempotency_keys AS k (scope, key, request_hash, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (scope, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status = NULL, body = NULL,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= now()
   OR (k.status IS NULL AND k.request_hash = EXCLUDED.request_hash
       AND k.created_at <= now() - make_interval(secs => $5))
RETURNING 1)sql";

const char* const read_sql = R"sql(
SELECT request_hash = $3, status, body
FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND expires_at > now())sql";

const char* const record_sql = R"sql(
UPDATE idempotency_keys
SET status = $3, body = $4, expires_at = now() + make_interval(secs => $5)
WHERE scope = $1 AND key = $2 AND status IS NULL)sql";

const char* const release_sql = R"sql(
DELETE FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND status IS NULL)sql";

// Bounded, so one call is a short transaction however much has piled up.
const char* const delete_expired_sql = R"sql(
DELETE FROM idempotency_keys
WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys
                        WHERE expires_at <= now() LIMIT $1)))sql";

// Between the claim and the read the row can vanish (its first request
// failed and released it, or it expired and was deleted); the claim is
// then simply tried again.
constexpr int claim_attempts = 3;

bool releases_key(int status) {
  return status >= 500 || status == 429;
}

} // namespace

idempotency_state idempotency_begin(pqxx::connection_base& c,
                                    const std::string& scope,
                                    const std::string& key,
                                    const std::string& request_hash,
                                    const idempotency_limits& limits) {
  pqxx::binarystring hash{request_hash};
  const double ttl = static_cast<double>(limits.ttl.count());
  const double lease = static_cast<double>(limits.lease.count());
  pqxx::nontransaction tx{c};
  for (int i = 0; i < claim_attempts; ++i) {
    if (!tx.exec_params(claim_sql, scope, key, hash, ttl, lease).empty())
      return {idempotency_outcome::proceed, 0, {}};
    auto r = tx.exec_params(read_sql, scope, key, hash);
    if (r.empty())
      continue;
    if (!r[0][0].as<bool>())
      return {idempotency_outcome::conflict, 0, {}};
    if (r[0][1].is_null())
      return {idempotency_outcome::in_progress, 0, {}};
    return {idempotency_outcome::replay, r[0][1].as<int>(),
            r[0][2].is_null() ? std::string{} : r[0][2].as<std::string>()};
  }
  // The key keeps appearing and vanishing: someone else is using it now.
  return {idempotency_outcome::in_progress, 0, {}};
}

bool idempotency_complete(pqxx::connection_base& c, const std::string& scope,
                          const std::string& key, int status,
                          const std::string& body,
                          const idempotency_limits& limits) {
  pqxx::nontransaction tx{c};
  if (releases_key(status)) {
    tx.exec_params(release_sql, scope, key);
    return false;
  }
  auto r = tx.exec_params(record_sql, scope, key, status, body,
                          static_cast<double>(limits.ttl.count()));
  return r.affected_rows() == 1;
}

std::int64_t idempotency_delete_expired(pqxx::connection_base& c,
                                        int max_rows) {
  pqxx::nontransaction tx{c};
  return static_cast<std::int64_t>(
      tx.exec_params(delete_expired_sql, max_rows).affected_rows());
}

} // namespace karvon::persistence
