// The router: entity key -> shard -> owner node -> that kind's supervisor.
// Everyone sends to a key through it; nobody keeps an entity's handle.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

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

  /// The actor that takes (route_atom, key, message) for `key` now; an
  /// invalid handle when the key's kind is unknown or its shard is owned by
  /// another node. Thread-safe.
  caf::actor route_for(std::string_view key) const;

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
