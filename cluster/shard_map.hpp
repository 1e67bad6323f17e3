// Which node owns each shard, at which epoch. On one node it owns them all;
// the cluster changes the map, and the router reads it on every send, so
// that no workload knows where an entity lives.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/entity.hpp"
#include "persistence/cluster_store.hpp"

namespace karvon::cluster {

class shard_map {
public:
  /// Every shard owned by `local_node`, epoch 1.
  shard_map(std::uint32_t shards, std::string local_node);
  ~shard_map();

  shard_map(const shard_map&) = delete;
  shard_map& operator=(const shard_map&) = delete;

  std::uint32_t shards() const { return shards_; }
  const std::string& local_node() const { return local_node_; }

  /// The epoch of the current assignment; grows with every change.
  std::uint64_t epoch() const;

  /// The node owning `shard` now. Thread-safe.
  std::string owner(std::uint32_t shard) const;

  /// True when this node owns the shard of `key` now. Thread-safe.
  bool owns_key(std::string_view key) const;

  /// True while this node holds a valid lease on the shard of `key` by its
  /// own clock, whoever the assignment names now (during a hand-off the old
  /// owner still serves its active entities); true when leases are not
  /// required. Thread-safe.
  bool holds_lease(std::string_view key) const;

  /// Replaces the assignment (one owner per shard) if `epoch` is newer than
  /// the current one; false otherwise. Thread-safe.
  bool assign(std::vector<std::string> owners, std::uint64_t epoch);

  /// A lease this node holds on a shard: its fencing token and until when
  /// this node may serve the shard by its own steady clock.
  struct lease {
    std::uint32_t shard = 0;
    std::int64_t incarnation = 0;
    std::int64_t epoch = 0;
    std::chrono::steady_clock::time_point serve_until{};
  };

  /// From now on a shard is this node's only while it also holds a valid
  /// lease on it (the cluster's rule); before, ownership alone counts (one
  /// node, tests). Call before traffic.
  void require_leases();

  /// Replaces the leases this node holds. Thread-safe; takes effect for
  /// every send that starts after it returns.
  void set_leases(const std::vector<lease>& leases);

  /// The fencing token for a write to `key`'s state, while this node holds
  /// the key's shard; nullopt otherwise (and when leases are not required).
  std::optional<persistence::fencing_token> fence(std::string_view key) const;

  /// True after require_leases().
  bool leases_required() const { return leases_required_; }

  /// The shards this node holds a valid lease on now, by its own clock.
  std::vector<std::uint32_t> held_shards() const;

private:
  bool lease_valid(std::uint32_t shard) const;

  struct assignment;
  struct lease_slot;
  std::uint32_t shards_;
  std::string local_node_;
  std::shared_ptr<const assignment> current_;
  bool leases_required_ = false;
  std::unique_ptr<lease_slot[]> leases_;
};

/// The rules supervisors follow on this node: activate where owns_key(),
/// serve while holds_lease(), fence every write with fence() (lease_lost
/// when required and not held). `map` must outlive the supervisors.
std::shared_ptr<const actors::ownership_rules>
ownership_rules_of(const shard_map& map);

} // namespace karvon::cluster
