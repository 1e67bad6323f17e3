#include "cluster/shard.hpp"

#include <xxhash.h>

namespace karvon::cluster {

namespace {
// Changing the seed moves every entity to another shard: never change it.
constexpr XXH64_hash_t seed = 0x6b6172766f6e; // "karvon"
} // namespace

std::uint64_t key_hash(std::string_view key) {
  return XXH64(key.data(), key.size(), seed);
}

std::uint32_t shard_of(std::string_view key, std::uint32_t shards) {
  return static_cast<std::uint32_t>(key_hash(key) % shards);
}

} // namespace karvon::cluster
