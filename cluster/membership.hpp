// This node's membership loop (ARCHITECTURE.md §6, issue 5): registers the
// node in PostgreSQL as a new incarnation, heartbeats it, declares late
// nodes dead, follows the epoch and its rendezvous assignment, and holds the
// leases of the shards assigned to it. A plain class with its own thread,
// no CAF: the transport, routing and hand-off sit on top of its callbacks.
//
// Serving rule: the node serves a shard only while steady_clock::now() <
// held_lease::serve_until. That time is computed so that it comes before
// the lease expires in the database, however slow the round trip (see
// membership.cpp), and every write still carries the lease's fencing token
// (persistence/cluster_store.hpp), so a node paused past serve_until can
// never overwrite the next owner's state.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "persistence/cluster_store.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::cluster {

using steady_time = std::chrono::steady_clock::time_point;

/// A lease this node holds: its fencing token (with the node id) and until
/// when the node may serve the shard by its own clock.
struct held_lease {
  std::uint32_t shard = 0;
  std::int64_t incarnation = 0;
  std::int64_t epoch = 0; //!< the lease's fencing epoch
  steady_time serve_until{};
};

struct membership_options {
  std::string node_id;
  std::string http_address;
  std::string cluster_address;
  std::uint32_t shards = 1024;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds failure_timeout{10000};
  std::chrono::milliseconds lease{10000};
  /// How long before the database's expiry the node stops serving; 0 means
  /// lease / 5. Must leave lease - margin longer than one heartbeat, or
  /// leases would lapse between renewals.
  std::chrono::milliseconds safety_margin{0};
  /// With on_revoke set: how long a revoked shard waits for release()
  /// before the loop releases it anyway.
  std::chrono::milliseconds handoff_timeout{30000};
};

/// Called on the membership thread, one at a time. They must return soon
/// and must not call stop(); drain() and release() are fine.
struct membership_callbacks {
  /// The epoch changed: `owners` has one node id per shard ("" for none),
  /// the same on every node for this epoch.
  std::function<void(std::uint64_t epoch, std::vector<std::string> owners)>
      on_assignment;
  /// The leases held now, by shard, after every tick. Must take effect
  /// before it returns: right after it, leases missing from the list may
  /// be released to other nodes.
  std::function<void(std::vector<held_lease>)> on_leases;
  /// The heartbeat found this incarnation dead (declared_dead: the loop
  /// then rejoins as a new incarnation) or the node id registered by
  /// another process (replaced: the loop stops; the process should exit).
  /// on_leases({}) has been called just before.
  std::function<void(persistence::heartbeat_result::status)> on_declared_dead;
  /// Optional hand-off: shards this node holds but no longer owns at
  /// `epoch`. While set, the loop keeps renewing them until release() names
  /// them (or handoff_timeout passes); while unset, it stops serving and
  /// releases them at once.
  std::function<void(std::uint64_t epoch, std::vector<std::uint32_t> shards)>
      on_revoke;
  /// Optional: the view read in every tick (for the operator view).
  std::function<void(const persistence::cluster_view&)> on_view;
  /// Optional: these shards' leases were released in the database (after
  /// on_revoke and release()), so their new owners can take them now.
  std::function<void(std::vector<std::uint32_t> shards)> on_released;
};

class membership {
public:
  /// Checks the options (throws std::invalid_argument on an empty node id,
  /// no shards, or timings that cannot keep a lease); starts nothing. Give
  /// it a pool of its own (two connections are plenty): behind a queue of
  /// entity writes its heartbeats would be late. `pool` must outlive this.
  membership(persistence::db_pool& pool, membership_options options,
             membership_callbacks callbacks);

  /// Ends the loop without leaving, as a crash would: the row stays until
  /// the others declare it dead and the leases expire. Call stop() first to
  /// leave cleanly. Blocks until the loop's current tick ends.
  ~membership();

  membership(const membership&) = delete;
  membership& operator=(const membership&) = delete;

  /// Starts the loop thread, which registers a new incarnation, becomes
  /// active and ticks every heartbeat; database failures are retried on
  /// the next tick. Never blocks. Call once.
  void start();

  /// Asks the loop to mark the node draining at its next tick, so that its
  /// shards move away. Never blocks; any thread.
  void drain();

  /// After on_revoke: the node has stopped serving these shards, so the
  /// loop releases their leases now. Shards it owns again are kept. Never
  /// blocks; any thread.
  void release(std::vector<std::uint32_t> shards);

  /// Leaves cleanly: stops serving (on_leases({})), releases every lease and
  /// marks the node dead, so its shards move at once instead of after the
  /// failure timeout; the row stays so a restart gets the next incarnation.
  /// Blocks for a few round trips (each bounded by the failure timeout).
  /// Idempotent. Not from a callback.
  void stop();

  /// Asks the loop to tick now rather than at the next heartbeat (another
  /// node released leases this one may take). Never blocks; any thread.
  void poke();

  /// This node's incarnation; 0 before it registered or while rejoining.
  std::int64_t incarnation() const;

  /// The newest epoch this node has read; 0 before the first.
  std::uint64_t epoch() const;

  /// The leases held now, as last passed to on_leases.
  std::vector<held_lease> leases() const;

  /// The view read in the last successful tick.
  persistence::cluster_view view() const;

  /// Tests only: while paused the loop skips its ticks (no heartbeat, no
  /// renewal), as if the process were stopped by SIGSTOP.
  void pause_for_testing(bool paused);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::cluster
