#include <map>

#include <gtest/gtest.h>

#include "cluster/shard.hpp"
#include "cluster/shard_map.hpp"

namespace karvon::cluster {
namespace {

// These numbers are what every build on every machine must compute: a key
// that moved shard would move its entity and strand its state. If this test
// fails, the hash or its seed changed; change them back.
TEST(ShardHash, is_pinned_to_fixed_vectors) {
  EXPECT_EQ(key_hash("user/tg:shopbot:5123"), 16014127936887059784ull);
  EXPECT_EQ(key_hash("user/api:u1"), 13027248995809269143ull);
  EXPECT_EQ(key_hash("channel/tg:shopbot:-1001234567890"),
            12192113248762409604ull);
  EXPECT_EQ(key_hash("partner/acme"), 5184881072934793433ull);
  EXPECT_EQ(key_hash(""), 4591330781384162960ull);
  EXPECT_EQ(shard_of("user/tg:shopbot:5123", 1024), 328u);
  EXPECT_EQ(shard_of("partner/acme", 1024), 217u);
}

TEST(ShardHash, spreads_keys_evenly_over_shards) {
  std::map<std::uint32_t, int> counts;
  for (int i = 0; i < 102400; ++i)
    ++counts[shard_of("user/api:" + std::to_string(i), 1024)];
  ASSERT_EQ(counts.size(), 1024u);
  for (auto& [shard, n] : counts) {
    EXPECT_GT(n, 50) << shard; // 100 expected
    EXPECT_LT(n, 160) << shard;
  }
}

TEST(ShardMap, starts_with_every_shard_on_the_local_node) {
  shard_map m{16, "node-a"};
  EXPECT_EQ(m.epoch(), 1u);
  for (std::uint32_t s = 0; s < 16; ++s)
    EXPECT_EQ(m.owner(s), "node-a");
  EXPECT_TRUE(m.owns_key("user/x"));
}

TEST(ShardMap, takes_only_newer_assignments) {
  shard_map m{4, "node-a"};
  EXPECT_TRUE(m.assign({"node-a", "node-b", "node-a", "node-b"}, 5));
  EXPECT_EQ(m.epoch(), 5u);
  EXPECT_EQ(m.owner(1), "node-b");
  EXPECT_FALSE(m.assign({"node-b", "node-b", "node-b", "node-b"}, 5));
  EXPECT_FALSE(m.assign({"node-b", "node-b", "node-b", "node-b"}, 4));
  EXPECT_FALSE(m.assign({"node-b"}, 9)); // wrong size
  EXPECT_EQ(m.owner(0), "node-a");
}

TEST(ShardMap, with_leases_required_serves_only_shards_it_holds_a_lease_on) {
  shard_map m{4, "node-a"};
  m.require_leases();
  auto key = std::string{"user/x"};
  auto shard = shard_of(key, 4);
  EXPECT_FALSE(m.owns_key(key)); // assigned, but no lease yet
  EXPECT_FALSE(m.fence(key));
  auto later = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  m.set_leases({{shard, 3, 7, later}});
  EXPECT_TRUE(m.owns_key(key));
  auto token = m.fence(key);
  ASSERT_TRUE(token);
  EXPECT_EQ(token->shard, shard);
  EXPECT_EQ(token->node_id, "node-a");
  EXPECT_EQ(token->incarnation, 3);
  EXPECT_EQ(token->epoch, 7);
  EXPECT_EQ(m.held_shards(), std::vector<std::uint32_t>{shard});
  m.set_leases({});
  EXPECT_FALSE(m.owns_key(key));
  EXPECT_FALSE(m.holds_lease(key));
  EXPECT_FALSE(m.fence(key));
}

TEST(ShardMap, a_lease_past_its_serve_until_time_is_not_served) {
  shard_map m{4, "node-a"};
  m.require_leases();
  auto key = std::string{"user/x"};
  m.set_leases(
      {{shard_of(key, 4), 1, 1,
        std::chrono::steady_clock::now() - std::chrono::milliseconds{1}}});
  EXPECT_FALSE(m.owns_key(key));
  EXPECT_FALSE(m.fence(key));
}

TEST(ShardMap, the_old_owner_keeps_serving_its_lease_while_the_shard_moves) {
  shard_map m{1, "node-a"};
  m.require_leases();
  m.set_leases(
      {{0, 1, 1, std::chrono::steady_clock::now() + std::chrono::seconds{5}}});
  ASSERT_TRUE(m.assign({"node-b"}, 2));
  EXPECT_FALSE(m.owns_key("user/x"));   // new messages go to node-b
  EXPECT_TRUE(m.holds_lease("user/x")); // active entities finish here
  EXPECT_TRUE(m.fence("user/x"));
}

TEST(ShardMap, without_leases_required_ownership_alone_counts) {
  shard_map m{4, "node-a"};
  EXPECT_TRUE(m.holds_lease("user/x"));
  EXPECT_FALSE(m.fence("user/x"));
  EXPECT_EQ(m.held_shards().size(), 4u);
}

} // namespace
} // namespace karvon::cluster
