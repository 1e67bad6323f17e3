#include "cluster/rendezvous.hpp"

#include <algorithm>

#include <xxhash.h>

namespace karvon::cluster {

namespace {

// The same seed as key_hash's. Changing it, or the byte layout below,
// moves most shards to another node on the next deploy: never change them
// (rendezvous_test pins both).
constexpr XXH64_hash_t seed = 0x6b6172766f6e; // "karvon"

} // namespace

std::uint64_t rendezvous_weight(std::uint32_t shard, std::string_view node_id) {
  // Explicit little-endian bytes, not the in-memory representation, so a
  // big-endian machine computes the same weights. One buffer and one XXH64
  // call: xxhash's streaming state is opaque in its public header.
  std::string bytes;
  bytes.reserve(4 + node_id.size());
  for (int i = 0; i < 4; ++i)
    bytes.push_back(static_cast<char>((shard >> (8 * i)) & 0xff));
  bytes.append(node_id);
  return XXH64(bytes.data(), bytes.size(), seed);
}

std::vector<std::string>
assign_shards(std::uint32_t shards,
              const std::vector<std::string>& active_nodes) {
  // Sorted and unique first: the tie-break then depends on ids only, not on
  // the order the caller read them in.
  std::vector<std::string> nodes = active_nodes;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());

  std::vector<std::string> owners(shards);
  if (nodes.empty())
    return owners;
  for (std::uint32_t s = 0; s < shards; ++s) {
    const std::string* best = &nodes.front();
    std::uint64_t best_weight = rendezvous_weight(s, nodes.front());
    for (std::size_t i = 1; i < nodes.size(); ++i) {
      // Strictly greater: on equal weights the earlier (smaller) id stays.
      auto w = rendezvous_weight(s, nodes[i]);
      if (w > best_weight) {
        best_weight = w;
        best = &nodes[i];
      }
    }
    owners[s] = *best;
  }
  return owners;
}

} // namespace karvon::cluster
