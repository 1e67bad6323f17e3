// What operators see of the cluster and what they may do to it: the
// report behind GET /admin/cluster and the drain of a node. Reads come from
// PostgreSQL (the source of truth) and, for the entities each node has
// active, from the nodes themselves.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "persistence/cluster_store.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::cluster {

class router;

struct node_report {
  persistence::node_row node;
  std::uint32_t shards = 0; //!< valid shard leases it holds
  /// Entities active there; nullopt when it is dead or did not answer.
  std::optional<std::uint64_t> active;
};

struct cluster_report {
  std::int64_t epoch = 0;
  std::vector<node_report> nodes; //!< by node id
};

enum class drain_outcome { draining, not_found, dead, failed };

class operations {
public:
  /// `pool`, `r` and the node router (this node's, for its own count) must
  /// outlive this. `local_changed` is called when this node's own state was
  /// changed (so its membership loop looks at once).
  operations(persistence::db_pool& pool, const router& r,
             caf::actor local_node_router, std::string local_node,
             std::function<void()> local_changed);
  ~operations();

  operations(const operations&) = delete;
  operations& operator=(const operations&) = delete;

  /// Reads nodes, epoch and leases, then asks every node not dead for its
  /// active entities within `timeout`; calls `done` once, on a pool or CAF
  /// thread, with the report or the database's error. Never blocks.
  void report(std::chrono::milliseconds timeout,
              std::function<void(std::optional<cluster_report>, std::string)>
                  done) const;

  /// Marks the node draining (its shards then move to the active nodes);
  /// `done` once, with the outcome and a message. Never blocks.
  void drain(const std::string& node_id,
             std::function<void(drain_outcome, std::string)> done) const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::cluster
