// How nodes reach each other: CAF's middleman (BASP over TCP). Each node
// publishes one actor, its node router, at cluster.listen; a send for a
// shard another node owns goes to that node's router, which hands it to
// its own supervisor (or forwards it on, a bounded number of hops, when
// the shard has moved again).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

namespace karvon::metrics {
class registry;
}

namespace karvon::cluster {

class router;

struct node_router_options {
  /// Hand-overs between nodes before a message is refused (maps that
  /// disagree for good must not bounce a message forever).
  int max_hops = 3;
  /// How long a message may wait for a node to serve its key (a hand-off,
  /// a failed node's shards not yet taken over), then errc::unavailable.
  std::chrono::milliseconds max_wait{10000};
  /// Messages waiting at once; beyond it errc::overloaded at once.
  std::size_t max_waiting = 100000;
  /// Called (on a CAF thread) when another node says it released shard
  /// leases: look for leases to take now.
  std::function<void()> on_released;
  /// karvon_forwarded_messages_total, karvon_cluster_waiting_messages and
  /// karvon_cluster_delayed_messages_total.
  metrics::registry* metrics = nullptr;
};

/// The node router actor: takes (route_atom, key, message) and (forward,
/// key, message, hops) for a key; delegates to the kind's supervisor when
/// this node serves the key, forwards to the owner's node router when
/// another node does, and holds the message (up to max_wait) while no node
/// does. Answers (stats_atom) with this node's active entities, and takes
/// (released_atom) from other nodes. `r` must outlive the actor.
caf::actor spawn_node_router(caf::actor_system& sys, const router& r,
                             node_router_options options = {});

class transport {
public:
  /// `sys` must have the middleman loaded; `r` must outlive the transport.
  /// Registers the node router as actors::node_router_name and as the
  /// router's fallback.
  transport(caf::actor_system& sys, router& r,
            node_router_options options = {});
  /// Stops connecting and unpublishes.
  ~transport();

  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  /// Publishes the node router at host:port (port 0: any free port) and
  /// returns the bound port. Throws std::runtime_error naming the address
  /// when it cannot. Blocking: for start-up.
  std::uint16_t start(const std::string& host, std::uint16_t port);

  /// Connects to the node router at `address` ("HOST:PORT") of `node_id`'s
  /// `incarnation` in the background and registers it with the router; a
  /// failed attempt is retried at the next call. Idempotent; never blocks.
  void connect(const std::string& node_id, const std::string& address,
               std::int64_t incarnation = 0);

  /// Forgets the node (it died or left).
  void disconnect(const std::string& node_id);

  /// The published node router (for tests and benchmarks).
  caf::actor node_router() const;

  /// Stops the background thread and unpublishes. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::cluster
