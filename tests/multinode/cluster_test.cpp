// The cluster as separate `karvon serve` processes on one PostgreSQL: nodes
// join, drain, die and pause under a probe load, and every acknowledged
// write is counted exactly once, with no entity ever active on two nodes.
#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "tests/multinode/cluster_harness.hpp"

namespace karvon::testing::multinode {
namespace {

using nlohmann::json;
using std::chrono::steady_clock;

/// Acks a test's load must reach, so that the checks never pass on a
/// trickle: about 3 per key.
constexpr std::int64_t min_acks = 3000;

std::int64_t ms_since(steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             steady_clock::now() - t)
      .count();
}

/// The number of keys the load got at least one ack for: each must have
/// been activated somewhere.
int keys_acked(const load_results& r) {
  int n = 0;
  for (auto& k : r.keys)
    n += k.acked > 0;
  return n;
}

http_reply drain(test_cluster& c, const node_process& via,
                 const std::string& node_id) {
  return http_request(via.http_port, "POST",
                      "/admin/cluster/nodes/" + node_id + "/drain", "{}",
                      bearer(c.admin_key(), true));
}

/// A thread that is joined when it goes out of scope, so that a failed
/// ASSERT never leaves one running.
struct joined_thread {
  template <class F>
  explicit joined_thread(F f) : thread(std::move(f)) {}
  ~joined_thread() {
    if (thread.joinable())
      thread.join();
  }
  std::thread thread;
};

TEST(Cluster, nodes_that_join_under_load_take_shards_and_lose_nothing) {
  test_cluster c{"join"};
  ASSERT_TRUE(c.start(1));
  auto& n1 = c.node(1);
  probe_load load{c.admin_key(), {n1.http_port}};
  ASSERT_TRUE(wait_acks(load, 500, 15s, "on n1 alone"));

  auto& n2 = c.launch(2);
  auto& n3 = c.launch(3);
  ASSERT_TRUE(c.wait_ready(n2));
  ASSERT_TRUE(c.wait_ready(n3));
  load.set_targets({n1.http_port, n2.http_port, n3.http_port});
  auto joined = steady_clock::now();
  cluster_view settled;
  ASSERT_TRUE(c.wait_balanced(n1, {"n1", "n2", "n3"}, 30s, &settled));
  std::cout << "[ info ] three nodes balanced " << ms_since(joined)
            << " ms after n2 and n3 answered /health: " << settled.body << "\n";

  ASSERT_TRUE(wait_acks(load, 200, 2s, "in the 2 s after the rebalance"));
  EXPECT_TRUE(keep_load(load, 2s, min_acks));
  auto results = load.stop();
  c.stop_all();

  std::cout << "[ info ] answers: " << results.describe_statuses()
            << "; acked by owner: " << describe(results.owners) << "\n";
  EXPECT_TRUE(exactly_once(c.conninfo(), results, min_acks));
  EXPECT_TRUE(activations_never_overlap(c.conninfo(), keys_acked(results)));
  auto owners = counter_owners(c.conninfo());
  EXPECT_GE(owners.size(), 2u)
      << "every key was last written by one node: " << describe(owners);
  EXPECT_EQ(results.owners.size(), 3u)
      << "acks should name all three nodes as owners: "
      << describe(results.owners);
}

TEST(Cluster, a_drained_node_hands_its_shards_over_and_exits_cleanly) {
  test_cluster c{"drain"};
  ASSERT_TRUE(c.start_nodes(3));
  auto& n1 = c.node(1);
  auto& n2 = c.node(2);
  auto& n3 = c.node(3);
  probe_load load{c.admin_key(), {n1.http_port, n2.http_port, n3.http_port}};
  ASSERT_TRUE(wait_acks(load, 500, 15s, "on three nodes"));

  auto unknown = drain(c, n1, "n9");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  auto r = drain(c, n1, "n2");
  ASSERT_EQ(r.status, 202) << r.body;
  auto j = json::parse(r.body, nullptr, false);
  EXPECT_EQ(j.value("node_id", ""), "n2") << r.body;
  EXPECT_EQ(j.value("state", ""), "draining") << r.body;

  auto drained_at = steady_clock::now();
  cluster_view handed;
  ASSERT_TRUE(c.wait_view(
      n1,
      [](const cluster_view& v) {
        auto* n = v.find("n2");
        return n && n->shards == 0
               && v.shards_of({"n1", "n3"}) == cluster_shards
               && v.total_shards() == cluster_shards;
      },
      20s, "n2 holds no shard and n1+n3 hold them all", &handed));
  std::cout << "[ info ] n2 handed its shards over in " << ms_since(drained_at)
            << " ms: " << handed.body << "\n";
  EXPECT_TRUE(handed.is("n2", "draining")) << handed.body;
  EXPECT_TRUE(handed.is("n1", "active") && handed.is("n3", "active"))
      << handed.body;

  load.set_targets({n1.http_port, n3.http_port});
  ASSERT_TRUE(c.stop(n2, 15s));
  ASSERT_TRUE(wait_acks(load, 100, 1s, "after n2 exited"));
  EXPECT_TRUE(keep_load(load, 1s, min_acks));
  auto results = load.stop();
  c.stop_all();

  std::cout << "[ info ] answers: " << results.describe_statuses()
            << "; acked by owner: " << describe(results.owners) << "\n";
  EXPECT_TRUE(exactly_once(c.conninfo(), results, min_acks));
  EXPECT_TRUE(activations_never_overlap(c.conninfo(), keys_acked(results)));
  EXPECT_EQ(results.owners.size(), 3u)
      << "acks should name all three nodes as owners: "
      << describe(results.owners);
}

TEST(Cluster, a_node_killed_under_load_loses_no_acknowledged_write) {
  test_cluster c{"kill"};
  ASSERT_TRUE(c.start_nodes(3));
  auto& n1 = c.node(1);
  auto& n3 = c.node(3);
  probe_load load{c.admin_key(),
                  {n1.http_port, c.node(2).http_port, n3.http_port}};
  ASSERT_TRUE(wait_acks(load, 1000, 15s, "on three nodes"));

  // The load threads on n3 find it gone and move to the others.
  c.signal(n3, SIGKILL);
  auto killed = steady_clock::now();
  EXPECT_EQ(c.wait_exit(n3, 5s), 128 + SIGKILL);

  cluster_view after;
  ASSERT_TRUE(c.wait_view(
      n1,
      [](const cluster_view& v) {
        return v.is("n3", "dead") && is_balanced(v, {"n1", "n2"});
      },
      failure_timeout + lease + 10s,
      "n3 dead, n1 and n2 active holding all shards", &after));
  std::cout << "[ info ] n3 declared dead and its shards taken over "
            << ms_since(killed) << " ms after SIGKILL: " << after.body << "\n";

  auto dead = drain(c, n1, "n3");
  EXPECT_EQ(dead.status, 409) << dead.body;
  ASSERT_TRUE(wait_acks(load, 100, 2s, "after the take-over"));
  EXPECT_TRUE(keep_load(load, 1s, min_acks));
  auto results = load.stop();
  c.stop_all();

  std::cout << "[ info ] answers: " << results.describe_statuses()
            << "; acked by owner: " << describe(results.owners) << "\n";
  EXPECT_TRUE(exactly_once(c.conninfo(), results, min_acks));
  EXPECT_TRUE(activations_never_overlap(c.conninfo(), keys_acked(results)));
  EXPECT_EQ(results.owners.size(), 3u)
      << "acks should name all three nodes as owners: "
      << describe(results.owners);
}

TEST(Cluster, two_nodes_started_at_once_migrate_once_and_agree_on_the_epoch) {
  test_cluster c{"together"};
  auto& a = c.launch(1);
  auto& b = c.launch(2);
  ASSERT_TRUE(c.wait_ready(a));
  ASSERT_TRUE(c.wait_ready(b));
  EXPECT_EQ(c.admin_keys_printed(), 1)
      << "exactly one of the two nodes prints the first admin key";
  ASSERT_FALSE(c.admin_key().empty())
      << "no node printed the first admin key:\n"
      << c.log_tail(a) << "\n"
      << c.log_tail(b);

  // Migrations: each version once, and the nodes together applied as many
  // as the table holds (the one that lost the race applied none).
  auto rows = std::stoll(
      query_value(c.conninfo(), "SELECT count(*) FROM schema_migrations"));
  auto versions = std::stoll(query_value(
      c.conninfo(), "SELECT count(DISTINCT version) FROM schema_migrations"));
  EXPECT_GT(rows, 0);
  EXPECT_EQ(rows, versions);
  EXPECT_EQ(query_value(c.conninfo(),
                        "SELECT string_agg(version::text, ',') FROM "
                        "(SELECT version FROM schema_migrations GROUP BY "
                        "version HAVING count(*) > 1) twice"),
            "");
  std::int64_t logged = 0;
  int logging_nodes = 0;
  std::regex applied{"applied ([0-9]+) schema migration"};
  for (auto* n : {&a, &b}) {
    auto out = c.output(*n);
    bool any = false;
    for (std::sregex_iterator it{out.begin(), out.end(), applied}, end;
         it != end; ++it) {
      logged += std::stoll((*it)[1].str());
      any = true;
    }
    logging_nodes += any;
  }
  EXPECT_EQ(logged, rows) << "migrations applied per the nodes' logs";
  EXPECT_EQ(logging_nodes, 1) << "one node applies the migrations";

  ASSERT_TRUE(c.wait_active(a));
  ASSERT_TRUE(c.wait_active(b));
  std::optional<cluster_view> va, vb;
  auto deadline = steady_clock::now() + 30s;
  while (true) {
    va = c.view(a);
    vb = c.view(b);
    if (va && vb && is_balanced(*va, {"n1", "n2"})
        && is_balanced(*vb, {"n1", "n2"}) && va->epoch == vb->epoch)
      break;
    ASSERT_LT(steady_clock::now(), deadline)
        << "within 30 s the two nodes did not settle on one epoch with "
        << "both active and all shards held:\n  n1: "
        << (va ? va->body : "no view")
        << "\n  n2: " << (vb ? vb->body : "no view");
    std::this_thread::sleep_for(100ms);
  }
  std::cout << "[ info ] settled at epoch " << va->epoch << ": " << va->body
            << "\n";
  // Both see every node in the same state.
  for (auto& n : va->nodes) {
    auto* other = vb->find(n.id);
    EXPECT_TRUE(other && n.state == other->state)
        << n.id << ": n1 says " << va->body << "\n n2 says " << vb->body;
  }

  probe_load load{c.admin_key(), {a.http_port, b.http_port}};
  ASSERT_TRUE(wait_acks(load, 300, 10s, "on two nodes"));
  EXPECT_TRUE(keep_load(load, 1s, min_acks / 3));
  auto results = load.stop();
  c.stop_all();
  EXPECT_TRUE(exactly_once(c.conninfo(), results, min_acks / 3));
  EXPECT_TRUE(activations_never_overlap(c.conninfo(), keys_acked(results)));
  EXPECT_EQ(results.owners.size(), 2u)
      << "acks should name both nodes as owners: " << describe(results.owners);
}

TEST(Cluster,
     a_paused_node_is_declared_dead_and_rejoins_with_a_new_incarnation) {
  test_cluster c{"pause"};
  ASSERT_TRUE(c.start_nodes(3));
  auto& n1 = c.node(1);
  auto& n2 = c.node(2);
  auto& n3 = c.node(3);
  auto first = c.view(n1);
  ASSERT_TRUE(first && first->find("n2"));
  auto old_incarnation = first->find("n2")->incarnation;

  probe_load load{c.admin_key(), {n1.http_port, n2.http_port, n3.http_port}};
  ASSERT_TRUE(wait_acks(load, 1000, 15s, "on three nodes"));
  load.set_targets({n1.http_port, n3.http_port});

  c.signal(n2, SIGSTOP);
  auto paused = steady_clock::now();
  // Requests that reach n2 while it is paused: it answers them, if at all,
  // after it resumes.
  load_results stray;
  joined_thread sender{[&] {
    stray = send_at_once(n2.http_port, c.admin_key(),
                         {3, 101, 202, 303, 404, 505, 606, 707}, 25s);
  }};

  cluster_view dead;
  auto declared = c.wait_view(
      n1,
      [](const cluster_view& v) {
        return v.is("n2", "dead") && is_balanced(v, {"n1", "n3"});
      },
      failure_timeout + lease + 10s,
      "paused n2 dead, n1 and n3 active holding all shards", &dead);
  auto dead_seen_at = c.database_now();
  EXPECT_TRUE(declared);
  if (declared)
    std::cout << "[ info ] paused n2 declared dead and its shards taken over "
              << ms_since(paused) << " ms after SIGSTOP: " << dead.body << "\n";
  if (auto left = 4s - (steady_clock::now() - paused); left > 0s)
    std::this_thread::sleep_for(left);
  c.signal(n2, SIGCONT);
  auto resumed = steady_clock::now();

  cluster_view back;
  EXPECT_TRUE(c.wait_view(
      n1,
      [&](const cluster_view& v) {
        auto* n = v.find("n2");
        return n && n->state == "active" && n->incarnation > old_incarnation;
      },
      10s,
      "n2 active again with an incarnation above "
          + std::to_string(old_incarnation),
      &back));
  std::cout << "[ info ] n2 rejoined " << ms_since(resumed)
            << " ms after SIGCONT: " << back.body << "\n";

  sender.thread.join();
  std::cout << "[ info ] requests sent to the paused n2: "
            << stray.describe_statuses() << "\n";
  load.set_targets({n1.http_port, n2.http_port, n3.http_port});
  EXPECT_TRUE(wait_acks(load, 100, 2s, "after n2 resumed"));
  EXPECT_TRUE(keep_load(load, 1s, min_acks));
  auto results = load.stop();
  results.merge(stray);
  c.stop_all();

  std::cout << "[ info ] answers: " << results.describe_statuses()
            << "; acked by owner: " << describe(results.owners) << "\n";
  EXPECT_TRUE(exactly_once(c.conninfo(), results, min_acks));
  EXPECT_TRUE(activations_never_overlap(c.conninfo(), keys_acked(results)));
  EXPECT_EQ(results.owners.size(), 3u)
      << "acks should name all three nodes as owners: "
      << describe(results.owners);

  // n2's old incarnation wrote before the pause, and never after it was
  // seen dead: its leases had run out, the fencing token stops it.
  auto old = std::to_string(old_incarnation);
  EXPECT_NE(query_value(c.conninfo(),
                        "SELECT count(*) FROM probe_activations WHERE node_id "
                        "= 'n2' AND incarnation = "
                            + old + " AND last_write_at IS NOT NULL"),
            "0")
      << "n2 wrote nothing under incarnation " << old
      << ": the check below would be vacuous";
  auto late = query_value(
      c.conninfo(),
      "SELECT string_agg(format('#%s %s inc %s activated %s last write %s "
      "passivated %s', id, key, coalesce(incarnation::text, 'null'), "
      "activated_at, last_write_at, coalesce(passivated_at::text, 'never')), "
      "E'\\n  ') FROM probe_activations WHERE node_id = 'n2' AND "
      "(incarnation IS NULL OR incarnation <= "
          + old + ") AND last_write_at > '" + dead_seen_at + "'::timestamptz");
  EXPECT_EQ(late, "") << "n2's old incarnation " << old
                      << " wrote after it was seen dead (or the wait for that "
                      << "ended) at " << dead_seen_at << ", long after its "
                      << "leases ran out:\n  " << late;
}

} // namespace
} // namespace karvon::testing::multinode
