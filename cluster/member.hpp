// This node as a member of the cluster: the transport (its node router
// published at cluster.listen) and the membership loop, wired to the shard
// map, the router and the supervisors. It moves the map when the epoch
// changes, serves shards only under their leases, hands shards off when
// they move (entities passivate, then the lease is released and the new
// owner told), drops entities whose lease is lost, and drains on leave.
// The node uses it; so does the rebalance benchmark.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

namespace karvon::metrics {
class registry;
}

namespace karvon::cluster {

class shard_map;
class router;
class operations;

struct member_options {
  std::string node_id;
  std::string conninfo;     //!< the database; the member opens its own pool
  std::string http_address; //!< advertised to operators
  std::string listen_host;  //!< cluster.listen
  std::uint16_t listen_port = 0;
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds failure_timeout{10000};
  std::chrono::milliseconds lease{10000};
  /// How long start() waits to be registered and active.
  std::chrono::milliseconds join_timeout{30000};
  /// How long leave() waits for this node's shards to be handed off.
  std::chrono::milliseconds drain_timeout{30000};
  /// Called when another process registered this node id (this one must
  /// stop); unset: only logged.
  std::function<void()> on_replaced;
};

class member {
public:
  /// `map` (with require_leases() already called), `r` (with every kind
  /// added) and `metrics` (may be null) must outlive this; the actor system
  /// needs the middleman. Starts nothing.
  member(caf::actor_system& sys, shard_map& map, router& r,
         member_options options, metrics::registry* metrics);
  /// Stops the loop and the transport without leaving (as a crash would);
  /// call leave() first for a clean exit. Destroy before the actor system.
  ~member();

  member(const member&) = delete;
  member& operator=(const member&) = delete;

  /// Publishes the node router, starts the membership loop and returns
  /// once this node is registered and active at some epoch, having waited
  /// up to two heartbeats for its first leases. Throws std::runtime_error
  /// (cluster.listen cannot be bound, or no membership in time).
  void start();

  /// Drains (this node's shards move to the others; alone, its entities
  /// passivate), waits up to drain_timeout, then leaves the cluster and
  /// stops the transport. Blocking. Idempotent.
  void leave();

  /// The cluster port actually bound.
  std::uint16_t port() const;

  /// 0 while not a member (before start, while rejoining).
  std::int64_t incarnation() const;

  /// Shards the current assignment gives this node, and shards it holds a
  /// lease on now.
  std::uint32_t shards_owned() const;
  std::uint32_t shards_held() const;

  /// The operator view and the drain of any node.
  operations& ops();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::cluster
