#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cluster/rendezvous.hpp"

namespace karvon::cluster {
namespace {

std::vector<std::string> nodes(int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i)
    out.push_back("node-" + std::to_string(i));
  return out;
}

// What every build on every machine must compute: a change here moves
// shards between nodes on a rolling deploy, where old and new builds would
// disagree on owners. If this test fails, the weight's hash, seed or byte
// layout changed; change them back.
TEST(Rendezvous, is_pinned_to_fixed_vectors) {
  // Cross-checked with an independent XXH64 over bytes
  // shard.to_bytes(4, "little") + node_id, seed 0x6b6172766f6e.
  EXPECT_EQ(rendezvous_weight(0, "node-1"), 14832688087506878323ull);
  EXPECT_EQ(rendezvous_weight(1023, "node-2"), 13500361805304528868ull);
  auto three = assign_shards(1024, nodes(3));
  EXPECT_EQ(three[0], "node-2");
  EXPECT_EQ(three[1], "node-3");
  EXPECT_EQ(three[2], "node-1");
  EXPECT_EQ(three[511], "node-3");
  EXPECT_EQ(three[1023], "node-2");
  EXPECT_EQ(assign_shards(8, {"a", "b"}),
            (std::vector<std::string>{"b", "b", "a", "b", "b", "b", "a", "b"}));
}

TEST(Rendezvous, spreads_shards_evenly_over_nodes) {
  for (int n : {2, 3, 5}) {
    std::map<std::string, int> counts;
    for (auto& owner : assign_shards(1024, nodes(n)))
      ++counts[owner];
    ASSERT_EQ(counts.size(), static_cast<std::size_t>(n));
    const double fair = 1024.0 / n;
    for (auto& [node, count] : counts) {
      EXPECT_GT(count, fair * 0.85) << node << " of " << n;
      EXPECT_LT(count, fair * 1.15) << node << " of " << n;
    }
  }
}

TEST(Rendezvous, a_join_moves_about_one_nth_and_only_to_the_joiner) {
  for (int n : {1, 2, 3, 7}) {
    auto before = assign_shards(1024, nodes(n));
    auto after = assign_shards(1024, nodes(n + 1));
    const std::string joiner = "node-" + std::to_string(n + 1);
    int moved = 0;
    for (std::size_t s = 0; s < before.size(); ++s) {
      if (before[s] == after[s])
        continue;
      ++moved;
      EXPECT_EQ(after[s], joiner)
          << "shard " << s << " moved from " << before[s] << " to " << after[s];
    }
    const double expected = 1024.0 / (n + 1);
    EXPECT_GT(moved, expected * 0.8) << n << " -> " << n + 1;
    EXPECT_LT(moved, expected * 1.2) << n << " -> " << n + 1;
  }
}

TEST(Rendezvous, a_leave_moves_only_the_leavers_shards) {
  auto before = assign_shards(1024, nodes(4));
  auto without = nodes(4);
  without.erase(without.begin() + 1); // node-2 leaves
  auto after = assign_shards(1024, without);
  int moved = 0;
  for (std::size_t s = 0; s < before.size(); ++s) {
    if (before[s] == "node-2") {
      EXPECT_NE(after[s], "node-2");
      ++moved;
    } else {
      EXPECT_EQ(after[s], before[s]) << "shard " << s;
    }
  }
  EXPECT_GT(moved, 0);
}

TEST(Rendezvous, ignores_the_order_and_repeats_of_the_node_list) {
  auto sorted = assign_shards(512, {"alpha", "bravo", "charlie"});
  EXPECT_EQ(assign_shards(512, {"charlie", "alpha", "bravo"}), sorted);
  EXPECT_EQ(assign_shards(512, {"bravo", "charlie", "alpha", "bravo"}), sorted);
}

TEST(Rendezvous, gives_no_owner_without_nodes) {
  auto owners = assign_shards(16, {});
  ASSERT_EQ(owners.size(), 16u);
  for (auto& o : owners)
    EXPECT_EQ(o, "");
  EXPECT_TRUE(assign_shards(0, nodes(3)).empty());
}

TEST(Rendezvous, gives_every_shard_to_a_single_node) {
  for (auto& o : assign_shards(64, {"solo"}))
    EXPECT_EQ(o, "solo");
}

} // namespace
} // namespace karvon::cluster
