// SQL for cluster membership (cluster_nodes), the assignment's epoch
// (cluster_state) and shard leases (shard_leases), migration 0005. Every
// function is blocking: call it on a db_pool thread (cluster::membership
// does) or from the CLI. Errors are libpqxx's exceptions (a db_error through
// the pool); an expected refusal is a return value, never an exception.
//
// Rules the SQL keeps, so that nodes agree without trusting each other's
// clocks:
// - Every time is the database's (now(), clock_timestamp()); callers pass
//   durations in milliseconds and get remaining times in milliseconds.
// - The epoch grows, in the same transaction, exactly when the set of
//   active nodes changes (a node becomes active, or stops being active:
//   draining, dead, re-registered). One epoch therefore names one set of
//   active nodes, and assign_shards over it gives every node the same map.
//   Membership changes lock the cluster_state row first, then node rows,
//   so two of them never deadlock and they commit in epoch order.
// - A shard has at most one valid lease (primary key), and only an expired
//   or released lease changes holder: a valid lease of another node is
//   never taken.
//
// The fencing rule. A node serves a shard only while it holds the shard's
// lease by its own clock with a safety margin (cluster::membership computes
// that time). Every write an entity makes carries its shard's fencing token
// (shard, node_id, incarnation, epoch) and checks it in the same
// transaction as the write, with holds_lease() or with fence_condition()
// inside the write statement itself:
//
//   INSERT INTO entity_state (key, shard, value)
//   SELECT $1, $2, $3
//   WHERE EXISTS (SELECT 1 FROM shard_leases
//                 WHERE shard = $2 AND node_id = $4 AND incarnation = $5
//                   AND epoch = $6 AND expires_at > clock_timestamp()
//                 FOR KEY SHARE)
//   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
//
// (0 rows affected: refused.) The check locks the lease row FOR KEY SHARE
// until the write commits. Acquiring and releasing a lease lock that row
// FOR UPDATE, so they wait for the write: a new owner can only take the
// lease after the old owner's last accepted write has committed, and from
// then on the old token matches no row. Renewing takes FOR NO KEY UPDATE,
// which does not wait for writes: the holder's own steady writes never
// starve its renewal (with FOR SHARE they did: share lockers overtake a
// waiting updater). A paused or partitioned old owner's write
// is refused by PostgreSQL, whatever its clock says. Fence one shard per
// transaction; a transaction that fences several should check them in
// shard order (acquire, renew and release lock lease rows in shard order).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pqxx {
class connection_base;
class transaction_base;
} // namespace pqxx

namespace karvon::persistence {

enum class node_state { joining, active, draining, dead };

/// "joining", "active", "draining" or "dead".
const char* to_string(node_state s);

/// The state named `s`; nullopt for any other text.
std::optional<node_state> parse_node_state(std::string_view s);

struct node_registration {
  std::int64_t incarnation = 0; //!< 1 for a new node id, then +1 each time
  std::int64_t epoch = 0;       //!< the epoch after the registration
};

/// Inserts the node, or replaces its row with the next incarnation (a
/// restarted node is a new incarnation), state joining, started and
/// heartbeat now. Replacing an active row bumps the epoch (the old
/// incarnation stops being active). The old incarnation's leases are left
/// to expire: that process may still be running. Throws on a database
/// error.
node_registration register_node(pqxx::connection_base& c,
                                const std::string& node_id,
                                const std::string& http_address,
                                const std::string& cluster_address);

/// Moves the node to `to` (active, draining or dead; joining only comes
/// from register_node), counting as a heartbeat, and returns the epoch
/// after it, bumped if the node entered or left active. nullopt, changing
/// nothing, when the row's incarnation differs, the node is dead, or `to`
/// is joining. Setting the current state again changes nothing and returns
/// the epoch. Throws on a database error.
std::optional<std::int64_t> set_node_state(pqxx::connection_base& c,
                                           const std::string& node_id,
                                           std::int64_t incarnation,
                                           node_state to);

struct heartbeat_result {
  enum class status {
    alive,         //!< heartbeat recorded; `state` is the node's state
    declared_dead, //!< this incarnation was declared dead (or the row is gone)
    replaced,      //!< another process registered this node id since
  };
  status what = status::alive;
  node_state state = node_state::dead; //!< meaningful when alive
};

/// Records a heartbeat (heartbeat_at = now()) if this incarnation is the
/// node's and not dead. Unless the result is alive the node must stop
/// serving at once: its leases can no longer be renewed. Throws on a
/// database error.
heartbeat_result heartbeat(pqxx::connection_base& c, const std::string& node_id,
                           std::int64_t incarnation);

/// Marks dead, in one conditional UPDATE, every node not dead whose
/// heartbeat is older than `failure_timeout_ms` by the database clock, bumps
/// the epoch once if an active one was among them, and returns who was
/// declared by this call. Safe to run on every node at once: each death is
/// declared by exactly one caller. Throws on a database error.
std::vector<std::string> declare_dead(pqxx::connection_base& c,
                                      std::int64_t failure_timeout_ms);

struct node_row {
  std::string node_id;
  std::int64_t incarnation = 0;
  std::string http_address;
  std::string cluster_address;
  node_state state = node_state::dead;
  std::string started_at;            //!< ISO 8601 UTC, microseconds
  std::string heartbeat_at;          //!< ISO 8601 UTC, microseconds
  std::int64_t heartbeat_age_ms = 0; //!< by the database clock, >= 0
};

struct cluster_view {
  std::int64_t epoch = 0;
  std::vector<node_row> nodes; //!< by node_id

  /// Ids of the active nodes, sorted: the input of assign_shards.
  std::vector<std::string> active_nodes() const;
};

/// The epoch and every node, from one statement (one snapshot), so the
/// active nodes are exactly those of that epoch. Throws on a database error.
cluster_view read_view(pqxx::connection_base& c);

struct lease_grant {
  std::uint32_t shard = 0;
  std::int64_t epoch = 0; //!< the lease's fencing epoch
  /// Time left on the lease when the database answered, measured by the
  /// database clock after the lease was written; never more than the
  /// lease duration.
  std::int64_t remaining_ms = 0;
};

/// Takes the lease of each of `shards` that is free, expired, released or
/// already this incarnation's, until now() + lease_ms, and returns those
/// granted, by shard. A new holder's lease gets `epoch` as its fencing
/// epoch; a lease this incarnation already held keeps its epoch, so writes
/// in flight stay valid. Grants nothing unless the node is active with this
/// incarnation and `epoch` is the current epoch (checked under a share lock
/// on cluster_state, so no membership change interleaves): call it only for
/// shards assign_shards gives this node at `epoch`, and a shard then has
/// one holder per epoch. Never takes a valid lease of another holder.
/// Throws on a database error.
std::vector<lease_grant>
acquire_leases(pqxx::connection_base& c, const std::string& node_id,
               std::int64_t incarnation, std::int64_t epoch,
               std::vector<std::uint32_t> shards, std::int64_t lease_ms);

/// Extends to now() + lease_ms every lease this incarnation holds that has
/// not expired by the database clock, if the node is active or draining,
/// and returns them by shard. An expired lease is not renewed even when
/// nobody took it: it is free to anyone from its expiry on, so taking it
/// back is acquire_leases' job, with its epoch and state checks. A lease
/// another node took is never touched. Throws on a database error.
std::vector<lease_grant> renew_leases(pqxx::connection_base& c,
                                      const std::string& node_id,
                                      std::int64_t incarnation,
                                      std::int64_t lease_ms);

/// Hand-off: ends this incarnation's leases of `shards` now (expires_at =
/// '-infinity'), so that the next owner takes them at once, and returns
/// those released. The caller must have stopped serving them. Waits for
/// writes in flight that fenced on them. Throws on a database error.
std::vector<std::uint32_t> release_leases(pqxx::connection_base& c,
                                          const std::string& node_id,
                                          std::int64_t incarnation,
                                          std::vector<std::uint32_t> shards);

struct lease_row {
  std::uint32_t shard = 0;
  std::string node_id; //!< the holder, or the last holder if not valid
  std::int64_t incarnation = 0;
  std::int64_t epoch = 0;
  bool valid = false;            //!< expires_at > clock_timestamp()
  bool released = false;         //!< ended by release_leases
  std::int64_t remaining_ms = 0; //!< 0 unless valid
};

/// Every shard that ever had a lease, by shard, from one statement. Throws
/// on a database error.
std::vector<lease_row> lease_holders(pqxx::connection_base& c);

/// The token an entity's write carries: the lease it was served under.
struct fencing_token {
  std::uint32_t shard = 0;
  std::string node_id;
  std::int64_t incarnation = 0;
  std::int64_t epoch = 0;
};

/// Inside a write transaction: true when `t` is the shard's valid lease by
/// the database clock, and then the lease row stays locked FOR KEY SHARE until
/// `tx` ends, so the lease cannot change hands before the write commits.
/// False: roll back, the write is stale. Throws on a database error.
bool holds_lease(pqxx::transaction_base& tx, const fencing_token& t);

/// The fencing check as an SQL condition for a write's own WHERE clause,
/// with parameters $first (shard), $first+1 (node_id), $first+2
/// (incarnation), $first+3 (epoch); see the example at the top. Pure.
std::string fence_condition(int first_param);

} // namespace karvon::persistence
