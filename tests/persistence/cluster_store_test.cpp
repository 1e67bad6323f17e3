#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include "persistence/cluster_store.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

using status = heartbeat_result::status;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

constexpr std::int64_t long_lease_ms = 10000;

class ClusterStore : public ::testing::Test {
protected:
  void SetUp() override {
    db_ = testing::fresh_database();
    migrate(db_);
    conn_ = std::make_unique<pqxx::connection>(db_);
  }

  std::int64_t epoch() {
    return std::stoll(testing::query_value(
        db_, "SELECT epoch FROM cluster_state WHERE id = 1"));
  }

  /// Registers `id` and makes it active; returns its incarnation.
  std::int64_t active_node(const std::string& id) {
    auto reg = register_node(*conn_, id, "127.0.0.1:8080", "127.0.0.1:9080");
    EXPECT_TRUE(
        set_node_state(*conn_, id, reg.incarnation, node_state::active));
    return reg.incarnation;
  }

  /// Moves the node's heartbeat `ms` into the past, as if it had stopped
  /// heartbeating that long ago, without waiting for it.
  void age_heartbeat(const std::string& id, int ms) {
    testing::execute(db_, "UPDATE cluster_nodes SET heartbeat_at = now() - "
                          "interval '"
                              + std::to_string(ms) + " ms' WHERE node_id = '"
                              + id + "'");
  }

  /// Ends the lease of `shard` a moment ago without releasing it.
  void expire_lease(std::uint32_t shard) {
    testing::execute(db_, "UPDATE shard_leases SET expires_at = "
                          "clock_timestamp() - interval '1 ms' WHERE shard = "
                              + std::to_string(shard));
  }

  static std::vector<std::uint32_t>
  shards_of(const std::vector<lease_grant>& g) {
    std::vector<std::uint32_t> out;
    for (auto& x : g)
      out.push_back(x.shard);
    return out;
  }

  std::string holder(std::uint32_t shard) {
    for (auto& l : lease_holders(*conn_))
      if (l.shard == shard && l.valid)
        return l.node_id + "#" + std::to_string(l.incarnation);
    return "";
  }

  std::string db_;
  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(ClusterStore, registers_a_new_node_as_incarnation_one_then_counts_up) {
  auto first = register_node(*conn_, "a", "10.0.0.1:8080", "10.0.0.1:9080");
  EXPECT_EQ(first.incarnation, 1);
  EXPECT_EQ(first.epoch, 1); // joining changes no owner
  auto v = read_view(*conn_);
  ASSERT_EQ(v.nodes.size(), 1u);
  EXPECT_EQ(v.nodes[0].node_id, "a");
  EXPECT_EQ(v.nodes[0].state, node_state::joining);
  EXPECT_EQ(v.nodes[0].http_address, "10.0.0.1:8080");
  EXPECT_EQ(v.nodes[0].cluster_address, "10.0.0.1:9080");

  ASSERT_EQ(set_node_state(*conn_, "a", 1, node_state::active), 2);
  // A restart while still active: the old incarnation stops being active,
  // which changes the owners, so the epoch moves.
  auto second = register_node(*conn_, "a", "10.0.0.2:8080", "10.0.0.2:9080");
  EXPECT_EQ(second.incarnation, 2);
  EXPECT_EQ(second.epoch, 3);
  v = read_view(*conn_);
  ASSERT_EQ(v.nodes.size(), 1u);
  EXPECT_EQ(v.nodes[0].incarnation, 2);
  EXPECT_EQ(v.nodes[0].state, node_state::joining);
  EXPECT_EQ(v.nodes[0].http_address, "10.0.0.2:8080");
  EXPECT_EQ(register_node(*conn_, "b", "", "").incarnation, 1);
}

TEST_F(ClusterStore, heartbeat_tells_alive_declared_dead_and_replaced) {
  auto inc = active_node("a");
  auto hb = heartbeat(*conn_, "a", inc);
  EXPECT_EQ(hb.what, status::alive);
  EXPECT_EQ(hb.state, node_state::active);

  age_heartbeat("a", 5000);
  ASSERT_EQ(declare_dead(*conn_, 1000), std::vector<std::string>{"a"});
  EXPECT_EQ(heartbeat(*conn_, "a", inc).what, status::declared_dead);
  // Being dead is final for an incarnation: only a new one comes back.
  EXPECT_FALSE(set_node_state(*conn_, "a", inc, node_state::active));

  auto again = register_node(*conn_, "a", "", "").incarnation;
  EXPECT_EQ(again, inc + 1);
  EXPECT_EQ(heartbeat(*conn_, "a", again).what, status::alive);
  EXPECT_EQ(heartbeat(*conn_, "a", inc).what, status::replaced);
  EXPECT_EQ(heartbeat(*conn_, "nobody", 1).what, status::declared_dead);
}

TEST_F(ClusterStore, bumps_the_epoch_only_when_the_active_nodes_change) {
  EXPECT_EQ(epoch(), 1);
  auto a = register_node(*conn_, "a", "", "").incarnation;
  auto b = register_node(*conn_, "b", "", "").incarnation;
  EXPECT_EQ(epoch(), 1);
  EXPECT_EQ(set_node_state(*conn_, "a", a, node_state::active), 2);
  EXPECT_EQ(set_node_state(*conn_, "a", a, node_state::active), 2); // again
  EXPECT_EQ(set_node_state(*conn_, "b", b, node_state::active), 3);
  EXPECT_EQ(set_node_state(*conn_, "a", a, node_state::draining), 4);
  EXPECT_EQ(set_node_state(*conn_, "a", a, node_state::dead), 4);
  EXPECT_EQ(set_node_state(*conn_, "b", b, node_state::dead), 5);
  EXPECT_EQ(epoch(), 5);
  // Refusals change nothing.
  EXPECT_FALSE(set_node_state(*conn_, "b", b, node_state::active));
  EXPECT_FALSE(set_node_state(*conn_, "b", b + 1, node_state::active));
  EXPECT_FALSE(set_node_state(*conn_, "nobody", 1, node_state::active));
  auto c = register_node(*conn_, "c", "", "").incarnation;
  EXPECT_FALSE(set_node_state(*conn_, "c", c, node_state::joining));
  EXPECT_EQ(epoch(), 5);
  EXPECT_EQ(read_view(*conn_).active_nodes(), std::vector<std::string>{});
}

TEST_F(ClusterStore, declares_dead_only_nodes_whose_heartbeat_is_late) {
  active_node("a");
  active_node("b");
  register_node(*conn_, "c", "", ""); // joining
  const auto before = epoch();
  EXPECT_TRUE(declare_dead(*conn_, 1000).empty());
  age_heartbeat("b", 1500);
  age_heartbeat("c", 1500);
  EXPECT_EQ(declare_dead(*conn_, 1000), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(epoch(), before + 1); // once, for two deaths
  EXPECT_TRUE(declare_dead(*conn_, 1000).empty());
  EXPECT_EQ(epoch(), before + 1);

  // A joining node's death changes no owner.
  register_node(*conn_, "d", "", "");
  age_heartbeat("d", 1500);
  EXPECT_EQ(declare_dead(*conn_, 1000), std::vector<std::string>{"d"});
  EXPECT_EQ(epoch(), before + 1);
  EXPECT_EQ(read_view(*conn_).active_nodes(), std::vector<std::string>{"a"});
}

TEST_F(ClusterStore, declares_each_death_once_under_concurrent_declarers) {
  constexpr int rounds = 15;
  std::atomic<int> ready{0};
  auto declarer = [this, &ready](int round_count) {
    pqxx::connection c{db_};
    std::vector<std::vector<std::string>> out;
    for (int r = 0; r < round_count; ++r) {
      // Both threads start each round together.
      ready.fetch_add(1);
      while (ready.load() < 2 * (r + 1))
        std::this_thread::yield();
      out.push_back(declare_dead(c, 1000));
    }
    return out;
  };
  for (int r = 0; r < rounds; ++r) {
    for (int n = 0; n < 3; ++n) {
      auto id = "r" + std::to_string(r) + "n" + std::to_string(n);
      active_node(id);
      age_heartbeat(id, 2000);
    }
  }
  // Every round the two race for what is late; fresh late nodes arrive
  // only once, so after round 0 they race over nothing but the lock.
  auto one = std::async(std::launch::async, declarer, rounds);
  auto two = std::async(std::launch::async, declarer, rounds);
  auto a = one.get();
  auto b = two.get();
  std::multiset<std::string> declared;
  for (auto* side : {&a, &b})
    for (auto& round : *side)
      declared.insert(round.begin(), round.end());
  EXPECT_EQ(declared.size(), 3u * rounds);
  for (auto& id : declared)
    EXPECT_EQ(declared.count(id), 1u) << id;
  EXPECT_EQ(testing::query_value(
                db_, "SELECT count(*) FROM cluster_nodes WHERE state = 'dead'"),
            std::to_string(3 * rounds));
  // The 3 * rounds activations bumped the epoch once each; the deaths,
  // declared in one UPDATE by whichever declarer came first, once more.
  EXPECT_EQ(epoch(), 1 + 3 * rounds + 1);
}

TEST_F(ClusterStore, declares_concurrently_late_nodes_once_each_round) {
  // The same race, but with fresh late nodes every round, so both threads
  // find candidates and contend for the same rows.
  constexpr int rounds = 10;
  pqxx::connection c1{db_}, c2{db_};
  for (int r = 0; r < rounds; ++r) {
    std::set<std::string> late;
    for (int n = 0; n < 3; ++n) {
      auto id = "r" + std::to_string(r) + "n" + std::to_string(n);
      active_node(id);
      age_heartbeat(id, 2000);
      late.insert(id);
    }
    const auto before = epoch();
    std::promise<void> go;
    auto start = go.get_future().share();
    auto run = [start](pqxx::connection& c) {
      start.wait();
      return declare_dead(c, 1000);
    };
    auto f1 = std::async(std::launch::async, run, std::ref(c1));
    auto f2 = std::async(std::launch::async, run, std::ref(c2));
    go.set_value();
    auto d1 = f1.get();
    auto d2 = f2.get();
    std::multiset<std::string> all(d1.begin(), d1.end());
    all.insert(d2.begin(), d2.end());
    EXPECT_EQ(std::set<std::string>(all.begin(), all.end()), late);
    EXPECT_EQ(all.size(), late.size()) << "a death was declared twice";
    EXPECT_EQ(epoch(), before + 1);
  }
}

TEST_F(ClusterStore, reads_epoch_and_nodes_with_heartbeat_age) {
  auto v = read_view(*conn_);
  EXPECT_EQ(v.epoch, 1);
  EXPECT_TRUE(v.nodes.empty());
  active_node("b");
  active_node("a");
  age_heartbeat("b", 4000);
  v = read_view(*conn_);
  EXPECT_EQ(v.epoch, 3);
  ASSERT_EQ(v.nodes.size(), 2u);
  EXPECT_EQ(v.nodes[0].node_id, "a");
  EXPECT_EQ(v.nodes[1].node_id, "b");
  EXPECT_LT(v.nodes[0].heartbeat_age_ms, 2000);
  EXPECT_GE(v.nodes[1].heartbeat_age_ms, 4000);
  EXPECT_LT(v.nodes[1].heartbeat_age_ms, 6000);
  EXPECT_EQ(v.nodes[0].started_at.size(), 27u) << v.nodes[0].started_at;
  EXPECT_EQ(v.nodes[0].started_at.back(), 'Z');
  EXPECT_EQ(v.active_nodes(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(ClusterStore, acquires_free_leases_and_never_steals_a_valid_one) {
  auto a = active_node("a");
  auto b = active_node("b");
  const auto e = epoch();
  auto got = acquire_leases(*conn_, "a", a, e, {3, 1, 2, 1}, long_lease_ms);
  ASSERT_EQ(shards_of(got), (std::vector<std::uint32_t>{1, 2, 3}));
  for (auto& g : got) {
    EXPECT_EQ(g.epoch, e);
    EXPECT_GT(g.remaining_ms, long_lease_ms - 2000);
    EXPECT_LE(g.remaining_ms, long_lease_ms);
  }
  // b asks for a's shards and a free one: it gets the free one only.
  got = acquire_leases(*conn_, "b", b, e, {2, 3, 4}, long_lease_ms);
  EXPECT_EQ(shards_of(got), std::vector<std::uint32_t>{4});
  EXPECT_EQ(holder(2), "a#" + std::to_string(a));
  EXPECT_EQ(holder(4), "b#" + std::to_string(b));
  // A new incarnation of a is another holder too.
  auto a2 = register_node(*conn_, "a", "", "").incarnation;
  ASSERT_TRUE(set_node_state(*conn_, "a", a2, node_state::active));
  EXPECT_TRUE(
      acquire_leases(*conn_, "a", a2, epoch(), {1}, long_lease_ms).empty());
  EXPECT_EQ(holder(1), "a#" + std::to_string(a));
}

TEST_F(ClusterStore, takes_an_expired_lease_with_the_new_epoch) {
  auto a = active_node("a");
  auto e1 = epoch();
  ASSERT_EQ(acquire_leases(*conn_, "a", a, e1, {7}, long_lease_ms).size(), 1u);
  auto b = active_node("b");
  auto e2 = epoch();
  EXPECT_TRUE(acquire_leases(*conn_, "b", b, e2, {7}, long_lease_ms).empty());
  expire_lease(7);
  auto got = acquire_leases(*conn_, "b", b, e2, {7}, long_lease_ms);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].epoch, e2);
  EXPECT_EQ(holder(7), "b#" + std::to_string(b));
}

TEST_F(ClusterStore, keeps_the_fencing_epoch_of_a_lease_it_already_holds) {
  auto a = active_node("a");
  auto e1 = epoch();
  ASSERT_EQ(acquire_leases(*conn_, "a", a, e1, {5}, long_lease_ms).size(), 1u);
  active_node("b");
  auto got = acquire_leases(*conn_, "a", a, epoch(), {5}, long_lease_ms);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].epoch, e1); // writes in flight under e1 stay valid
}

TEST_F(ClusterStore, grants_nothing_at_a_stale_epoch_or_to_a_node_not_active) {
  auto a = active_node("a");
  auto stale = epoch();
  active_node("b");
  EXPECT_TRUE(
      acquire_leases(*conn_, "a", a, stale, {1}, long_lease_ms).empty());
  auto c = register_node(*conn_, "c", "", "").incarnation; // joining
  EXPECT_TRUE(
      acquire_leases(*conn_, "c", c, epoch(), {1}, long_lease_ms).empty());
  ASSERT_TRUE(set_node_state(*conn_, "a", a, node_state::draining));
  EXPECT_TRUE(
      acquire_leases(*conn_, "a", a, epoch(), {1}, long_lease_ms).empty());
  EXPECT_TRUE(lease_holders(*conn_).empty());
}

TEST_F(ClusterStore, release_lets_the_next_owner_take_a_lease_at_once) {
  auto a = active_node("a");
  auto b = active_node("b");
  const auto e = epoch();
  ASSERT_EQ(acquire_leases(*conn_, "a", a, e, {1, 2}, long_lease_ms).size(),
            2u);
  // b's shards are not a's to release.
  ASSERT_EQ(acquire_leases(*conn_, "b", b, e, {3}, long_lease_ms).size(), 1u);
  EXPECT_EQ(release_leases(*conn_, "a", a, {1, 3, 9}),
            std::vector<std::uint32_t>{1});
  auto rows = lease_holders(*conn_);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].valid);
  EXPECT_TRUE(rows[0].released);
  EXPECT_EQ(rows[0].remaining_ms, 0);
  EXPECT_TRUE(rows[1].valid);
  EXPECT_EQ(holder(3), "b#" + std::to_string(b));
  // A released lease is not renewed: it is the next owner's.
  EXPECT_EQ(shards_of(renew_leases(*conn_, "a", a, long_lease_ms)),
            std::vector<std::uint32_t>{2});
  auto got = acquire_leases(*conn_, "b", b, e, {1}, long_lease_ms);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(holder(1), "b#" + std::to_string(b));
}

TEST_F(ClusterStore, renew_extends_valid_leases_and_resurrects_none) {
  auto a = active_node("a");
  auto b = active_node("b");
  const auto e = epoch();
  ASSERT_EQ(acquire_leases(*conn_, "a", a, e, {1, 2, 3}, 1000).size(), 3u);
  auto renewed = renew_leases(*conn_, "a", a, long_lease_ms);
  ASSERT_EQ(shards_of(renewed), (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_GT(renewed[0].remaining_ms, long_lease_ms - 2000);
  EXPECT_EQ(renewed[0].epoch, e);

  // Shard 2 expires and b takes it; shard 3 expires and nobody takes it.
  expire_lease(2);
  expire_lease(3);
  ASSERT_EQ(acquire_leases(*conn_, "b", b, e, {2}, long_lease_ms).size(), 1u);
  EXPECT_EQ(shards_of(renew_leases(*conn_, "a", a, long_lease_ms)),
            std::vector<std::uint32_t>{1});
  EXPECT_EQ(holder(2), "b#" + std::to_string(b));
  EXPECT_EQ(holder(3), "");

  // A dead node renews nothing, even a lease still valid.
  age_heartbeat("a", 5000);
  ASSERT_EQ(declare_dead(*conn_, 1000), std::vector<std::string>{"a"});
  EXPECT_TRUE(renew_leases(*conn_, "a", a, long_lease_ms).empty());
  EXPECT_EQ(holder(1), "a#" + std::to_string(a)); // until it expires
}

TEST_F(ClusterStore, a_draining_node_renews_but_takes_nothing_new) {
  auto a = active_node("a");
  ASSERT_EQ(acquire_leases(*conn_, "a", a, epoch(), {1}, long_lease_ms).size(),
            1u);
  ASSERT_TRUE(set_node_state(*conn_, "a", a, node_state::draining));
  EXPECT_EQ(shards_of(renew_leases(*conn_, "a", a, long_lease_ms)),
            std::vector<std::uint32_t>{1});
  EXPECT_TRUE(
      acquire_leases(*conn_, "a", a, epoch(), {2}, long_lease_ms).empty());
}

TEST_F(ClusterStore, the_fencing_check_refuses_a_stale_owners_write) {
  testing::execute(db_, "CREATE TABLE entity_state (key text PRIMARY KEY, "
                        "shard int NOT NULL, value text NOT NULL)");
  auto a = active_node("a");
  auto b = active_node("b");
  const auto e = epoch();
  ASSERT_EQ(acquire_leases(*conn_, "a", a, e, {4}, long_lease_ms).size(), 1u);
  const fencing_token a_token{4, "a", a, e};
  const std::string write_sql
      = "INSERT INTO entity_state (key, shard, value) SELECT $1, $2::int, $3 "
        "WHERE "
        + fence_condition(4)
        + " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";
  auto write = [&](pqxx::connection& c, const fencing_token& t,
                   const std::string& value) {
    pqxx::work tx{c};
    auto n = tx.exec_params(write_sql, "user/1", t.shard, value, t.shard,
                            t.node_id, t.incarnation, t.epoch)
                 .affected_rows();
    tx.commit();
    return n;
  };
  pqxx::connection old_owner{db_};
  EXPECT_EQ(write(old_owner, a_token, "from a"), 1u);

  // a's lease runs out (a is paused, say) and b takes the shard.
  expire_lease(4);
  auto got = acquire_leases(*conn_, "b", b, e, {4}, long_lease_ms);
  ASSERT_EQ(got.size(), 1u);
  const fencing_token b_token{4, "b", b, got[0].epoch};
  EXPECT_EQ(write(*conn_, b_token, "from b"), 1u);

  // a wakes up and writes with its old token: refused both ways.
  EXPECT_EQ(write(old_owner, a_token, "stale a"), 0u);
  {
    pqxx::work tx{old_owner};
    EXPECT_FALSE(holds_lease(tx, a_token));
  }
  // Another token for the right holder but a wrong epoch is refused too.
  EXPECT_EQ(write(old_owner, fencing_token{4, "b", b, e + 7}, "bad epoch"), 0u);
  EXPECT_EQ(testing::query_value(
                db_, "SELECT value FROM entity_state WHERE key = 'user/1'"),
            "from b");
}

// a writes under its lease in an open transaction; the lease runs out;
// b keeps trying to take it. b must get it only after a commits, and then
// see a's write. `fenced_write` does a's write and returns whether the
// check passed.
void check_lease_held_until_commit(
    const std::string& db, std::int64_t a, std::int64_t b, std::int64_t e,
    const std::function<bool(pqxx::work&, const fencing_token&)>&
        fenced_write) {
  constexpr std::uint32_t shard = 6;
  // Both connections first, so the short lease is not spent connecting.
  pqxx::connection granter{db};
  pqxx::connection writer{db};
  pqxx::work tx{writer};
  // A short lease that runs out while a's write is still open.
  ASSERT_EQ(acquire_leases(granter, "a", a, e, {shard}, 250).size(), 1u);
  ASSERT_TRUE(fenced_write(tx, fencing_token{shard, "a", a, e}));

  auto taker = std::async(std::launch::async, [&] {
    pqxx::connection c{db};
    std::vector<lease_grant> got;
    while (got.empty()) { // the lease is still valid for a moment at first
      got = acquire_leases(c, "b", b, e, {shard}, long_lease_ms);
      if (got.empty())
        std::this_thread::sleep_for(milliseconds{10});
    }
    // What b reads after its grant must include a's committed write.
    return testing::query_value(
        db, "SELECT value FROM entity_state WHERE key = 'user/6'");
  });
  std::this_thread::sleep_for(milliseconds{400}); // well past a's lease
  EXPECT_EQ(taker.wait_for(milliseconds{0}), std::future_status::timeout)
      << "b took the lease while a's fenced write was open";
  tx.commit();
  EXPECT_EQ(taker.get(), "from a");
}

TEST_F(ClusterStore, holds_lease_keeps_the_lease_until_the_write_commits) {
  testing::execute(db_, "CREATE TABLE entity_state (key text PRIMARY KEY, "
                        "value text NOT NULL)");
  auto a = active_node("a");
  auto b = active_node("b");
  check_lease_held_until_commit(
      db_, a, b, epoch(), [](pqxx::work& tx, const fencing_token& t) {
        if (!holds_lease(tx, t))
          return false;
        tx.exec("INSERT INTO entity_state VALUES ('user/6', 'from a')");
        return true;
      });
  EXPECT_EQ(holder(6), "b#" + std::to_string(b));
}

TEST_F(ClusterStore, a_fenced_statement_keeps_the_lease_until_it_commits) {
  testing::execute(db_, "CREATE TABLE entity_state (key text PRIMARY KEY, "
                        "value text NOT NULL)");
  auto a = active_node("a");
  auto b = active_node("b");
  check_lease_held_until_commit(
      db_, a, b, epoch(), [](pqxx::work& tx, const fencing_token& t) {
        return tx.exec_params("INSERT INTO entity_state SELECT 'user/6', "
                              "'from a' WHERE "
                                  + fence_condition(1),
                              t.shard, t.node_id, t.incarnation, t.epoch)
                   .affected_rows()
               == 1;
      });
  EXPECT_EQ(holder(6), "b#" + std::to_string(b));
}

TEST_F(ClusterStore, a_renewal_does_not_wait_for_the_holders_own_writes) {
  // A steady stream of fenced writes must never starve the renewal of the
  // lease they write under (it would lapse under load).
  auto a = active_node("a");
  ASSERT_EQ(acquire_leases(*conn_, "a", a, epoch(), {6}, long_lease_ms).size(),
            1u);
  pqxx::connection writer{db_};
  pqxx::work tx{writer};
  ASSERT_TRUE(holds_lease(tx, fencing_token{6, "a", a, epoch()}));
  auto renewal = std::async(std::launch::async, [&] {
    pqxx::connection c{db_};
    return renew_leases(c, "a", a, long_lease_ms).size();
  });
  ASSERT_EQ(renewal.wait_for(std::chrono::seconds{5}),
            std::future_status::ready)
      << "the renewal waited for a fenced write";
  EXPECT_EQ(renewal.get(), 1u);
  tx.commit();
}

TEST_F(ClusterStore, lease_holders_lists_every_leased_shard) {
  auto a = active_node("a");
  EXPECT_TRUE(lease_holders(*conn_).empty());
  ASSERT_EQ(
      acquire_leases(*conn_, "a", a, epoch(), {2, 0}, long_lease_ms).size(),
      2u);
  expire_lease(2);
  auto rows = lease_holders(*conn_);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].shard, 0u);
  EXPECT_TRUE(rows[0].valid);
  EXPECT_GT(rows[0].remaining_ms, 0);
  EXPECT_EQ(rows[1].shard, 2u);
  EXPECT_FALSE(rows[1].valid);
  EXPECT_FALSE(rows[1].released);
  EXPECT_EQ(rows[1].node_id, "a");
}

TEST(NodeState, round_trips_through_its_name) {
  for (auto s : {node_state::joining, node_state::active, node_state::draining,
                 node_state::dead})
    EXPECT_EQ(parse_node_state(to_string(s)), s);
  EXPECT_FALSE(parse_node_state("alive"));
}

} // namespace
} // namespace karvon::persistence
