// How nodes reach each other: CAF's middleman (BASP over TCP). Each node
// publishes one actor, its node router, at cluster.listen; a send for a
// shard another node owns goes to that node's router, which hands it to
// its own supervisor (or forwards it on, a bounded number of hops, when
// the shard has moved again).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

namespace karvon::cluster {

class router;

/// The node router actor: takes (route_atom, key, message) for keys this
/// node owns and delegates to the kind's supervisor; forwards keys owned
/// elsewhere, at most `max_hops` times, then answers errc::unavailable.
/// `r` must outlive the actor.
caf::actor spawn_node_router(caf::actor_system& sys, const router& r,
                             int max_hops = 3);

class transport {
public:
  /// `sys` must have the middleman loaded; `r` must outlive the transport.
  transport(caf::actor_system& sys, router& r);
  /// Stops connecting and unpublishes.
  ~transport();

  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  /// Publishes the node router at host:port (port 0: any free port) and
  /// returns the bound port. Throws std::runtime_error naming the address
  /// when it cannot. Blocking: for start-up.
  std::uint16_t start(const std::string& host, std::uint16_t port);

  /// Connects to the node router at `address` ("HOST:PORT") of `node_id` in
  /// the background and registers it with the router; a failed attempt is
  /// retried at the next call. Idempotent; never blocks.
  void connect(const std::string& node_id, const std::string& address);

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
