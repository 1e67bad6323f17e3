#include "persistence/cluster_store.hpp"

#include <algorithm>

#include <pqxx/connection_base>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

namespace karvon::persistence {

namespace {

// Membership changes (register, state change, declare_dead) lock this row
// first and node rows after it: one lock order, so two changes never
// deadlock, and the epoch is bumped under the lock that ordered the change.
// acquire_leases takes it FOR SHARE so that no change interleaves with the
// epoch check of a grant.
const char* const lock_epoch_sql
    = "SELECT epoch FROM cluster_state WHERE id = 1 FOR UPDATE";

const char* const bump_epoch_sql
    = "UPDATE cluster_state SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch";

const char* const lock_node_sql = R"sql(
SELECT incarnation, state FROM cluster_nodes WHERE node_id = $1 FOR UPDATE)sql";

const char* const register_sql = R"sql(
INSERT INTO cluster_nodes AS n (node_id, incarnation, http_address,
                                cluster_address, state, started_at,
                                heartbeat_at)
VALUES ($1, 1, $2, $3, 'joining', now(), now())
ON CONFLICT (node_id) DO UPDATE
SET incarnation = n.incarnation + 1, http_address = EXCLUDED.http_address,
    cluster_address = EXCLUDED.cluster_address, state = 'joining',
    started_at = now(), heartbeat_at = now()
RETURNING incarnation)sql";

const char* const set_state_sql = R"sql(
UPDATE cluster_nodes SET state = $2, heartbeat_at = now()
WHERE node_id = $1)sql";

const char* const heartbeat_sql = R"sql(
UPDATE cluster_nodes SET heartbeat_at = now()
WHERE node_id = $1 AND incarnation = $2 AND state <> 'dead'
RETURNING state)sql";

const char* const node_sql
    = "SELECT incarnation, state FROM cluster_nodes WHERE node_id = $1";

// Cheap and lock-free: every node runs declare_dead every heartbeat, and
// almost always nobody is late, so the epoch lock is taken only when there
// may be someone to declare.
const char* const any_late_sql = R"sql(
SELECT EXISTS (
  SELECT 1 FROM cluster_nodes
  WHERE state <> 'dead'
    AND heartbeat_at < clock_timestamp()
                       - make_interval(secs => $1::double precision / 1000)))sql";

// One conditional UPDATE. Under READ COMMITTED a row that another
// declarer (or a heartbeat) changed meanwhile is re-checked against the
// WHERE clause on its new version, so a node already dead, or that has just
// heartbeated, is not declared; each death is declared once. `was` is the
// state before, from the statement's snapshot: only a membership change can
// change it, and those wait for the epoch lock this transaction holds.
const char* const declare_dead_sql = R"sql(
UPDATE cluster_nodes AS n SET state = 'dead'
FROM (SELECT node_id, state FROM cluster_nodes) AS o
WHERE n.node_id = o.node_id
  AND n.state <> 'dead'
  AND n.heartbeat_at < clock_timestamp()
                       - make_interval(secs => $1::double precision / 1000)
RETURNING n.node_id, o.state AS was)sql";

// The epoch and the nodes in one statement: one snapshot.
const char* const view_sql = R"sql(
SELECT s.epoch, n.node_id, n.incarnation, n.http_address, n.cluster_address,
       n.state,
       to_char(n.started_at AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       to_char(n.heartbeat_at AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       greatest(0, floor(extract(epoch FROM clock_timestamp() - n.heartbeat_at)
                         * 1000))::bigint
FROM cluster_state AS s LEFT JOIN cluster_nodes AS n ON true
WHERE s.id = 1
ORDER BY n.node_id)sql";

// Milliseconds left on a lease whose expires_at is finite, by the database
// clock read after the write.
const std::string remaining_ms = "floor(extract(epoch FROM expires_at - "
                                 "clock_timestamp()) * 1000)::bigint";

// One statement. The epoch check locks cluster_state FOR SHARE: a
// membership change waits for the grant or the grant sees its new epoch
// (READ COMMITTED re-reads a locked row) and grants nothing. A node that
// stopped being active after this statement's snapshot changed the epoch
// too, so the node check needs no lock of its own. The ON CONFLICT branch
// takes a lease only when it is expired or released, or already this
// incarnation's. `locked` first locks those rows FOR UPDATE, in shard
// order: that waits for writes that fenced on them (FOR KEY SHARE) before
// they expired, which the ON CONFLICT update alone would not (it changes no
// key column, so it takes only FOR NO KEY UPDATE). A lease another node
// holds validly is neither locked nor touched: waiting on it would starve
// behind its holder's writes and hold up its renewals. Rows are inserted
// in shard order too, so concurrent grants lock in the same order.
const std::string acquire_sql = R"sql(
WITH locked AS (
  SELECT shard FROM shard_leases
  WHERE shard = ANY($4::int[])
    AND (expires_at <= clock_timestamp()
         OR (node_id = $1::text AND incarnation = $2::bigint))
  ORDER BY shard FOR UPDATE)
INSERT INTO shard_leases AS l (shard, node_id, incarnation, epoch, expires_at)
SELECT s, $1::text, $2::bigint, $3::bigint,
       clock_timestamp() + make_interval(secs => $5::double precision / 1000)
FROM unnest($4::int[]) AS s
WHERE (SELECT count(*) FROM locked) >= 0
  AND NOT EXISTS (SELECT 1 FROM shard_leases AS v
                  WHERE v.shard = s AND v.expires_at > clock_timestamp()
                    AND NOT (v.node_id = $1::text
                             AND v.incarnation = $2::bigint))
  AND (SELECT epoch FROM cluster_state WHERE id = 1 FOR SHARE) = $3::bigint
  AND EXISTS (SELECT 1 FROM cluster_nodes
              WHERE node_id = $1::text AND incarnation = $2::bigint
                AND state = 'active')
ORDER BY s
ON CONFLICT (shard) DO UPDATE
SET node_id = EXCLUDED.node_id, incarnation = EXCLUDED.incarnation,
    epoch = CASE WHEN l.node_id = EXCLUDED.node_id
                      AND l.incarnation = EXCLUDED.incarnation
                 THEN l.epoch ELSE EXCLUDED.epoch END,
    expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp()
   OR (l.node_id = EXCLUDED.node_id AND l.incarnation = EXCLUDED.incarnation)
RETURNING shard, epoch, )sql" + remaining_ms;

// The sub-select locks this incarnation's valid leases in shard order; the
// outer conditions are re-checked on the row version it locked. FOR NO KEY
// UPDATE does not conflict with the FOR KEY SHARE of fenced writes: a steady
// stream of entity writes must never starve the renewal of their own
// lease (FOR SHARE lockers can overtake a waiting FOR UPDATE forever).
const std::string renew_sql = R"sql(
UPDATE shard_leases AS l
SET expires_at = clock_timestamp()
                 + make_interval(secs => $3::double precision / 1000)
FROM (SELECT shard FROM shard_leases
      WHERE node_id = $1::text AND incarnation = $2::bigint
        AND expires_at > clock_timestamp()
      ORDER BY shard
      FOR NO KEY UPDATE) AS mine
WHERE l.shard = mine.shard
  AND l.node_id = $1::text AND l.incarnation = $2::bigint
  AND l.expires_at > clock_timestamp()
  AND EXISTS (SELECT 1 FROM cluster_nodes
              WHERE node_id = $1::text AND incarnation = $2::bigint
                AND state IN ('active', 'draining'))
RETURNING l.shard, l.epoch, )sql"
                              + remaining_ms;

const char* const release_sql = R"sql(
UPDATE shard_leases AS l SET expires_at = '-infinity'
FROM (SELECT shard FROM shard_leases
      WHERE shard = ANY($3::int[])
        AND node_id = $1::text AND incarnation = $2::bigint
      ORDER BY shard
      FOR UPDATE) AS mine
WHERE l.shard = mine.shard
  AND l.node_id = $1::text AND l.incarnation = $2::bigint
RETURNING l.shard)sql";

// One reading of the clock for every row, so valid and remaining agree.
const char* const holders_sql = R"sql(
SELECT shard, node_id, incarnation, epoch, expires_at > c.t,
       expires_at = '-infinity',
       CASE WHEN expires_at > c.t
            THEN floor(extract(epoch FROM expires_at - c.t) * 1000)::bigint
            ELSE 0 END
FROM shard_leases CROSS JOIN (SELECT clock_timestamp() AS t) AS c
ORDER BY shard)sql";

const char* const holds_sql = R"sql(
SELECT 1 FROM shard_leases
WHERE shard = $1 AND node_id = $2 AND incarnation = $3 AND epoch = $4
  AND expires_at > clock_timestamp()
FOR KEY SHARE)sql";

std::string int_array(const std::vector<std::uint32_t>& xs) {
  std::string out = "{";
  for (auto x : xs) {
    if (out.size() > 1)
      out += ',';
    out += std::to_string(x);
  }
  out += '}';
  return out;
}

node_state state_of(const pqxx::field& f) {
  // The column's CHECK constraint admits only the four names.
  return parse_node_state(f.c_str()).value_or(node_state::dead);
}

std::vector<lease_grant> read_grants(const pqxx::result& r) {
  std::vector<lease_grant> out;
  out.reserve(r.size());
  for (const auto& row : r)
    out.push_back(lease_grant{row[0].as<std::uint32_t>(),
                              row[1].as<std::int64_t>(),
                              row[2].as<std::int64_t>()});
  std::sort(out.begin(), out.end(),
            [](const lease_grant& a, const lease_grant& b) {
              return a.shard < b.shard;
            });
  return out;
}

std::vector<std::uint32_t> sorted_unique(std::vector<std::uint32_t> xs) {
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  return xs;
}

} // namespace

const char* to_string(node_state s) {
  switch (s) {
  case node_state::joining:
    return "joining";
  case node_state::active:
    return "active";
  case node_state::draining:
    return "draining";
  case node_state::dead:
    return "dead";
  }
  return "dead";
}

std::optional<node_state> parse_node_state(std::string_view s) {
  for (auto x : {node_state::joining, node_state::active, node_state::draining,
                 node_state::dead})
    if (s == to_string(x))
      return x;
  return std::nullopt;
}

std::vector<std::string> cluster_view::active_nodes() const {
  std::vector<std::string> out;
  for (const auto& n : nodes)
    if (n.state == node_state::active)
      out.push_back(n.node_id);
  std::sort(out.begin(), out.end());
  return out;
}

node_registration register_node(pqxx::connection_base& c,
                                const std::string& node_id,
                                const std::string& http_address,
                                const std::string& cluster_address) {
  pqxx::work tx{c};
  node_registration out;
  out.epoch = tx.exec1(lock_epoch_sql)[0].as<std::int64_t>();
  auto old = tx.exec_params(lock_node_sql, node_id);
  out.incarnation
      = tx.exec_params1(register_sql, node_id, http_address, cluster_address)[0]
            .as<std::int64_t>();
  // The old incarnation, if it was active, is active no longer.
  if (!old.empty() && state_of(old[0][1]) == node_state::active)
    out.epoch = tx.exec1(bump_epoch_sql)[0].as<std::int64_t>();
  tx.commit();
  return out;
}

std::optional<std::int64_t> set_node_state(pqxx::connection_base& c,
                                           const std::string& node_id,
                                           std::int64_t incarnation,
                                           node_state to) {
  if (to == node_state::joining)
    return std::nullopt;
  pqxx::work tx{c};
  auto epoch = tx.exec1(lock_epoch_sql)[0].as<std::int64_t>();
  auto row = tx.exec_params(lock_node_sql, node_id);
  if (row.empty() || row[0][0].as<std::int64_t>() != incarnation)
    return std::nullopt;
  const auto from = state_of(row[0][1]);
  if (from == node_state::dead)
    return std::nullopt;
  if (from == to)
    return epoch;
  tx.exec_params(set_state_sql, node_id, to_string(to));
  if ((from == node_state::active) != (to == node_state::active))
    epoch = tx.exec1(bump_epoch_sql)[0].as<std::int64_t>();
  tx.commit();
  return epoch;
}

heartbeat_result heartbeat(pqxx::connection_base& c, const std::string& node_id,
                           std::int64_t incarnation) {
  pqxx::nontransaction tx{c};
  heartbeat_result out;
  auto r = tx.exec_params(heartbeat_sql, node_id, incarnation);
  if (!r.empty()) {
    out.what = heartbeat_result::status::alive;
    out.state = state_of(r[0][0]);
    return out;
  }
  // No row is declared_dead rather than replaced: nobody else holds the
  // id, so rejoining takes nothing from anyone.
  auto now = tx.exec_params(node_sql, node_id);
  out.what = !now.empty() && now[0][0].as<std::int64_t>() != incarnation
                 ? heartbeat_result::status::replaced
                 : heartbeat_result::status::declared_dead;
  return out;
}

std::vector<std::string> declare_dead(pqxx::connection_base& c,
                                      std::int64_t failure_timeout_ms) {
  {
    pqxx::nontransaction probe{c};
    if (!probe.exec_params1(any_late_sql, failure_timeout_ms)[0].as<bool>())
      return {};
  }
  pqxx::work tx{c};
  tx.exec1(lock_epoch_sql);
  std::vector<std::string> out;
  bool active_died = false;
  for (const auto& row : tx.exec_params(declare_dead_sql, failure_timeout_ms)) {
    out.push_back(row[0].as<std::string>());
    active_died = active_died || state_of(row[1]) == node_state::active;
  }
  if (active_died)
    tx.exec1(bump_epoch_sql);
  tx.commit();
  std::sort(out.begin(), out.end());
  return out;
}

cluster_view read_view(pqxx::connection_base& c) {
  pqxx::nontransaction tx{c};
  cluster_view out;
  for (const auto& row : tx.exec(view_sql)) {
    out.epoch = row[0].as<std::int64_t>();
    if (row[1].is_null())
      continue; // no nodes: the LEFT JOIN's one row carries the epoch only
    node_row n;
    n.node_id = row[1].as<std::string>();
    n.incarnation = row[2].as<std::int64_t>();
    n.http_address = row[3].as<std::string>();
    n.cluster_address = row[4].as<std::string>();
    n.state = state_of(row[5]);
    n.started_at = row[6].as<std::string>();
    n.heartbeat_at = row[7].as<std::string>();
    n.heartbeat_age_ms = row[8].as<std::int64_t>();
    out.nodes.push_back(std::move(n));
  }
  return out;
}

std::vector<lease_grant>
acquire_leases(pqxx::connection_base& c, const std::string& node_id,
               std::int64_t incarnation, std::int64_t epoch,
               std::vector<std::uint32_t> shards, std::int64_t lease_ms) {
  shards = sorted_unique(std::move(shards));
  if (shards.empty())
    return {};
  pqxx::nontransaction tx{c};
  return read_grants(tx.exec_params(acquire_sql, node_id, incarnation, epoch,
                                    int_array(shards), lease_ms));
}

std::vector<lease_grant> renew_leases(pqxx::connection_base& c,
                                      const std::string& node_id,
                                      std::int64_t incarnation,
                                      std::int64_t lease_ms) {
  pqxx::nontransaction tx{c};
  return read_grants(tx.exec_params(renew_sql, node_id, incarnation, lease_ms));
}

std::vector<std::uint32_t> release_leases(pqxx::connection_base& c,
                                          const std::string& node_id,
                                          std::int64_t incarnation,
                                          std::vector<std::uint32_t> shards) {
  shards = sorted_unique(std::move(shards));
  if (shards.empty())
    return {};
  pqxx::nontransaction tx{c};
  std::vector<std::uint32_t> out;
  for (const auto& row :
       tx.exec_params(release_sql, node_id, incarnation, int_array(shards)))
    out.push_back(row[0].as<std::uint32_t>());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<lease_row> lease_holders(pqxx::connection_base& c) {
  pqxx::nontransaction tx{c};
  std::vector<lease_row> out;
  for (const auto& row : tx.exec(holders_sql)) {
    lease_row l;
    l.shard = row[0].as<std::uint32_t>();
    l.node_id = row[1].as<std::string>();
    l.incarnation = row[2].as<std::int64_t>();
    l.epoch = row[3].as<std::int64_t>();
    l.valid = row[4].as<bool>();
    l.released = row[5].as<bool>();
    l.remaining_ms = row[6].as<std::int64_t>();
    out.push_back(std::move(l));
  }
  return out;
}

bool holds_lease(pqxx::transaction_base& tx, const fencing_token& t) {
  return !tx.exec_params(holds_sql, t.shard, t.node_id, t.incarnation, t.epoch)
              .empty();
}

std::string fence_condition(int first_param) {
  auto p
      = [first_param](int i) { return "$" + std::to_string(first_param + i); };
  return "EXISTS (SELECT 1 FROM shard_leases WHERE shard = " + p(0)
         + "::int AND node_id = " + p(1) + "::text AND incarnation = " + p(2)
         + "::bigint AND epoch = " + p(3)
         + "::bigint AND expires_at > clock_timestamp() FOR KEY SHARE)";
}

} // namespace karvon::persistence
