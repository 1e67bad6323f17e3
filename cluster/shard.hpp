// Entity keys to shards. The hash must be the same on every build and
// machine (not std::hash): XXH64 with a fixed seed.
#pragma once

#include <cstdint>
#include <string_view>

namespace karvon::cluster {

/// XXH64 of the key with karvon's fixed seed.
std::uint64_t key_hash(std::string_view key);

/// The shard of an entity key, in [0, shards). `shards` > 0.
std::uint32_t shard_of(std::string_view key, std::uint32_t shards);

} // namespace karvon::cluster
