// Shards to nodes by rendezvous (highest random weight) hashing: each shard
// goes to the node with the largest weight(shard, node). A node that joins
// wins only the shards where its weight beats the old winner's, and a node
// that leaves gives up only its own, so a change moves about 1/N of the
// shards and never between two nodes that stayed. The weight is XXH64 over
// a fixed byte layout with a fixed seed, never std::hash, so every node of
// every build computes the same map from the same list of nodes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace karvon::cluster {

/// The weight of `node_id` for `shard`: XXH64 of the shard as 4 bytes
/// little-endian followed by the node id's bytes, with a fixed seed. Pure.
std::uint64_t rendezvous_weight(std::uint32_t shard, std::string_view node_id);

/// The owner of each shard in [0, shards) among `active_nodes`: the node
/// with the highest weight, the smaller id on a tie. The order of
/// `active_nodes` and repeated ids do not matter. With no nodes every owner
/// is "" (nobody may serve; callers treat it as "no owner"), never a throw,
/// because a cluster with every node draining is a state to show, not a
/// bug. Pure; any thread.
std::vector<std::string>
assign_shards(std::uint32_t shards,
              const std::vector<std::string>& active_nodes);

} // namespace karvon::cluster
