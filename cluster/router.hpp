// The router: entity key -> shard -> owner node -> that kind's supervisor.
// Everyone sends to a key through it; nobody keeps an entity's handle.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

namespace karvon::metrics {
class registry;
class counter;
} // namespace karvon::metrics

namespace karvon::cluster {

class shard_map;

class router {
public:
  /// `map` must outlive the router.
  router(caf::actor_system& sys, const shard_map& map);
  ~router();

  router(const router&) = delete;
  router& operator=(const router&) = delete;

  /// Registers the supervisor of an entity kind. Call before traffic; not
  /// thread-safe.
  void add_kind(const std::string& kind, caf::actor supervisor);

  /// Where a key goes now.
  struct route {
    caf::actor target;  //!< invalid: no route (unknown kind, owner unknown)
    bool local = false; //!< target is this node's supervisor of the kind
  };

  /// This node's supervisor of the key's kind when this node owns the
  /// key's shard, else the router actor of the owning node (see
  /// set_peer); when neither is known (a hand-off under way, a peer not yet
  /// connected), the fallback (see set_fallback), which holds the message
  /// until one is. Invalid only for a key of no known kind, or with no
  /// fallback. Thread-safe; called on every send.
  route resolve(std::string_view key) const;

  /// resolve() without the fallback: the target is invalid when no node
  /// serves the key now. For the node router itself.
  route lookup(std::string_view key) const;

  /// This node's node router, which waits for a route on behalf of the
  /// sender. Call before traffic; not thread-safe.
  void set_fallback(caf::actor node_router);

  /// Counts every send resolve() routes to another node in
  /// karvon_forwarded_messages_total. Call before traffic.
  void count_forwards(metrics::registry& metrics);

  /// The actor that takes (route_atom, key, message) for `key` now:
  /// resolve(key).target. Thread-safe.
  caf::actor route_for(std::string_view key) const;

  /// Sets the router actor of another node, or forgets it (invalid handle).
  /// Thread-safe.
  void set_peer(const std::string& node_id, caf::actor node_router);

  /// The router actor of another node; invalid when not connected.
  /// Thread-safe.
  caf::actor peer(const std::string& node_id) const;

  /// The epoch of this node's shard map.
  std::uint64_t epoch() const;

  /// True when `kind` has a supervisor here.
  bool knows_kind(std::string_view kind) const;

  /// Every kind's supervisor.
  std::vector<caf::actor> supervisors() const;

  /// Hand-off: asks every supervisor to passivate the entities of `shards`
  /// that this node no longer owns, then calls `done` once, on a CAF
  /// thread: true when they all stopped within `timeout`. Never blocks.
  void hand_off(std::vector<std::uint32_t> shards,
                std::chrono::milliseconds timeout,
                std::function<void(bool)> done) const;

  /// Tells every supervisor to stop, without saving, the entities whose
  /// shard lease this node lost. Never blocks.
  void drop_unserved() const;

  /// Passivates every entity of every kind and waits, up to `timeout`, so
  /// that all state is saved; then stops the supervisors. Blocking: for
  /// shutdown, from main.
  void stop(std::chrono::milliseconds timeout);

  caf::actor_system& system() const;

  /// The supervisors' (active, activations, passivations, crashes), summed,
  /// by asking each within `timeout`. Blocking.
  struct totals {
    std::uint64_t active = 0, activations = 0, passivations = 0, crashes = 0;
  };
  totals stats(std::chrono::milliseconds timeout) const;

  /// Asks every supervisor for its stats within `timeout`, then calls
  /// `done` once, on a CAF thread: the totals, or the first error. Never
  /// blocks (for health checks).
  void ping(std::chrono::milliseconds timeout,
            std::function<void(caf::expected<totals>)> done) const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::cluster
