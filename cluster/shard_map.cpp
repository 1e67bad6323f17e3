#include "cluster/shard_map.hpp"

#include <atomic>

#include "cluster/shard.hpp"

namespace karvon::cluster {

struct shard_map::assignment {
  std::vector<std::string> owners;
  std::uint64_t epoch = 0;
};

shard_map::shard_map(std::uint32_t shards, std::string local_node)
    : shards_(shards), local_node_(std::move(local_node)) {
  auto a = std::make_shared<assignment>();
  a->owners.assign(shards_, local_node_);
  a->epoch = 1;
  current_ = std::move(a);
}

shard_map::~shard_map() = default;

std::uint64_t shard_map::epoch() const {
  return std::atomic_load(&current_)->epoch;
}

std::string shard_map::owner(std::uint32_t shard) const {
  return std::atomic_load(&current_)->owners.at(shard);
}

bool shard_map::owns_key(std::string_view key) const {
  auto a = std::atomic_load(&current_);
  return a->owners[shard_of(key, shards_)] == local_node_;
}

bool shard_map::assign(std::vector<std::string> owners, std::uint64_t epoch) {
  if (owners.size() != shards_)
    return false;
  auto next = std::make_shared<assignment>();
  next->owners = std::move(owners);
  next->epoch = epoch;
  auto expected = std::atomic_load(&current_);
  do {
    if (epoch <= expected->epoch)
      return false;
  } while (!std::atomic_compare_exchange_weak(
      &current_, &expected, std::shared_ptr<const assignment>{next}));
  return true;
}

} // namespace karvon::cluster
