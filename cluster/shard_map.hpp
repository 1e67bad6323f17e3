// Which node owns each shard, at which epoch. On one node it owns them all;
// the cluster changes the map, and the router reads it on every send, so
// that no workload knows where an entity lives.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

  /// Replaces the assignment (one owner per shard) if `epoch` is newer than
  /// the current one; false otherwise. Thread-safe.
  bool assign(std::vector<std::string> owners, std::uint64_t epoch);

private:
  struct assignment;
  std::uint32_t shards_;
  std::string local_node_;
  std::shared_ptr<const assignment> current_;
};

} // namespace karvon::cluster
