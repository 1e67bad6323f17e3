#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/connection>

#include "cluster/membership.hpp"
#include "cluster/rendezvous.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::cluster {
namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;
namespace db = persistence;

constexpr std::uint32_t shard_count = 64;
constexpr milliseconds heartbeat{50};
constexpr milliseconds failure_timeout{300};
constexpr milliseconds lease{500};

/// One membership with its own pool, recording what its callbacks say.
struct test_node {
  std::string id;
  std::unique_ptr<db::db_pool> pool;
  std::unique_ptr<membership> m;

  std::mutex mu;
  std::map<std::uint64_t, std::vector<std::string>> assignments;
  std::vector<std::pair<std::uint64_t, std::vector<std::uint32_t>>> revokes;
  int deaths = 0;

  test_node(const std::string& conninfo, std::string node_id, bool handoff)
      : id(std::move(node_id)) {
    pool = std::make_unique<db::db_pool>(db::pool_options{conninfo, 2, 100, {}},
                                         nullptr);
    membership_options o;
    o.node_id = id;
    o.http_address = "127.0.0.1:80";
    o.cluster_address = "127.0.0.1:1080";
    o.shards = shard_count;
    o.heartbeat = heartbeat;
    o.failure_timeout = failure_timeout;
    o.lease = lease;
    membership_callbacks cb;
    cb.on_assignment = [this](std::uint64_t e, std::vector<std::string> o) {
      std::lock_guard lock{mu};
      assignments[e] = std::move(o);
    };
    cb.on_declared_dead = [this](db::heartbeat_result::status) {
      std::lock_guard lock{mu};
      ++deaths;
    };
    if (handoff)
      cb.on_revoke = [this](std::uint64_t e, std::vector<std::uint32_t> s) {
        std::lock_guard lock{mu};
        revokes.emplace_back(e, std::move(s));
      };
    m = std::make_unique<membership>(*pool, o, std::move(cb));
  }

  /// Shards this node may serve at `now` by its own clock.
  std::map<std::uint32_t, held_lease> serving(steady::time_point now) const {
    std::map<std::uint32_t, held_lease> out;
    for (auto& l : m->leases())
      if (now < l.serve_until)
        out[l.shard] = l;
    return out;
  }

  int death_count() {
    std::lock_guard lock{mu};
    return deaths;
  }
};

/// Runs beside every test: checks, every few milliseconds, that no shard is
/// served by two nodes at once by their own clocks, and that a shard a node
/// serves is leased to it in the database.
class lease_checker {
public:
  lease_checker(std::string conninfo, std::vector<test_node*>* nodes,
                std::mutex* nodes_mu)
      : conninfo_(std::move(conninfo)), nodes_(nodes), nodes_mu_(nodes_mu) {
    thread_ = std::thread{[this] { run(); }};
  }
  ~lease_checker() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable())
      thread_.join();
  }

  std::vector<std::string> violations() {
    std::lock_guard lock{mu_};
    return violations_;
  }
  int observations() const { return observations_; }
  int db_checks() const { return db_checks_; }

  /// Every node that served `shard` at some check.
  std::set<std::string> served_by(std::uint32_t shard) {
    std::lock_guard lock{mu_};
    return served_by_[shard];
  }

  void forget_history() {
    std::lock_guard lock{mu_};
    served_by_.clear();
  }

private:
  using snapshot = std::map<std::string, std::map<std::uint32_t, held_lease>>;

  snapshot take() {
    std::lock_guard lock{*nodes_mu_};
    const auto now = steady::now();
    snapshot out;
    for (auto* n : *nodes_)
      out[n->id] = n->serving(now);
    return out;
  }

  void fail(const std::string& what) {
    std::lock_guard lock{mu_};
    if (violations_.size() < 20)
      violations_.push_back(what);
  }

  void check_disjoint(const snapshot& s) {
    std::map<std::uint32_t, std::string> owner;
    for (auto& [node, shards] : s)
      for (auto& [shard, l] : shards) {
        auto [it, fresh] = owner.emplace(shard, node);
        if (!fresh)
          fail("shard " + std::to_string(shard) + " served by " + it->second
               + " and " + node);
        std::lock_guard lock{mu_};
        served_by_[shard].insert(node);
      }
  }

  void run() {
    pqxx::connection c{conninfo_};
    int round = 0;
    while (!stop_) {
      auto before = take();
      check_disjoint(before);
      ++observations_;
      if (++round % 4 == 0) {
        auto rows = db::lease_holders(c);
        auto after = take();
        check_disjoint(after);
        // A shard served under the same token before and after the read
        // was served while the database answered: it must be that node's
        // valid lease there.
        for (auto& [node, shards] : before)
          for (auto& [shard, l] : shards) {
            auto& later = after[node];
            auto it = later.find(shard);
            if (it == later.end() || it->second.epoch != l.epoch
                || it->second.incarnation != l.incarnation)
              continue;
            auto row = std::find_if(rows.begin(), rows.end(),
                                    [&](auto& r) { return r.shard == shard; });
            if (row == rows.end() || !row->valid || row->node_id != node
                || row->incarnation != l.incarnation || row->epoch != l.epoch)
              fail("shard " + std::to_string(shard) + " served by " + node
                   + " without its lease in the database");
          }
        ++db_checks_;
      }
      std::this_thread::sleep_for(milliseconds{3});
    }
  }

  std::string conninfo_;
  std::vector<test_node*>* nodes_;
  std::mutex* nodes_mu_;
  std::atomic<bool> stop_{false};
  std::atomic<int> observations_{0};
  std::atomic<int> db_checks_{0};
  std::mutex mu_;
  std::vector<std::string> violations_;
  std::map<std::uint32_t, std::set<std::string>> served_by_;
  std::thread thread_;
};

class Membership : public ::testing::Test {
protected:
  void SetUp() override {
    db_ = testing::fresh_database();
    db::migrate(db_);
    conn_ = std::make_unique<pqxx::connection>(db_);
    checker_ = std::make_unique<lease_checker>(db_, &live_, &live_mu_);
  }

  void TearDown() override {
    // At least a few checks against the database, however slow the machine,
    // so that a test cannot pass because the checker never looked.
    const int seen = checker_->db_checks();
    eventually([&] { return checker_->db_checks() >= std::max(seen + 2, 4); });
    checker_->stop();
    EXPECT_GE(checker_->observations(), 16);
    EXPECT_GE(checker_->db_checks(), 4);
    for (auto& v : checker_->violations())
      ADD_FAILURE() << v;
    std::lock_guard lock{live_mu_};
    live_.clear();
    nodes_.clear();
  }

  test_node& add(const std::string& id, bool handoff = false) {
    auto n = std::make_unique<test_node>(db_, id, handoff);
    auto& ref = *n;
    std::lock_guard lock{live_mu_};
    nodes_.push_back(std::move(n));
    live_.push_back(&ref);
    return ref;
  }

  test_node& start(const std::string& id, bool handoff = false) {
    auto& n = add(id, handoff);
    n.m->start();
    return n;
  }

  /// Destroys the node's membership as a crash would (no leave).
  void crash(test_node& n) {
    std::lock_guard lock{live_mu_};
    live_.erase(std::find(live_.begin(), live_.end(), &n));
    n.m.reset();
  }

  std::int64_t db_epoch() { return db::read_view(*conn_).epoch; }

  /// True when exactly `ids` are active, every node knows the newest epoch,
  /// and every shard is served by its rendezvous owner and nobody else.
  bool settled(const std::vector<std::string>& ids,
               std::string* why = nullptr) {
    auto view = db::read_view(*conn_);
    std::vector<std::string> want = ids;
    std::sort(want.begin(), want.end());
    if (view.active_nodes() != want)
      return explain(why, "active nodes differ");
    auto owners = assign_shards(shard_count, want);
    std::lock_guard lock{live_mu_};
    const auto now = steady::now();
    std::map<std::uint32_t, std::string> served;
    for (auto* n : live_) {
      if (std::find(want.begin(), want.end(), n->id) == want.end())
        continue;
      if (n->m->epoch() != static_cast<std::uint64_t>(view.epoch))
        return explain(why, n->id + " is at an older epoch");
      for (auto& [s, l] : n->serving(now))
        served[s] = n->id;
    }
    for (std::uint32_t s = 0; s < shard_count; ++s)
      if (served[s] != owners[s])
        return explain(why, "shard " + std::to_string(s) + " served by '"
                                + served[s] + "', owner " + owners[s]);
    return true;
  }

  static bool explain(std::string* why, const std::string& what) {
    if (why)
      *why = what;
    return false;
  }

  /// Waits for settled(ids); returns how long it took.
  milliseconds settle(const std::vector<std::string>& ids,
                      milliseconds limit = milliseconds{3000}) {
    auto t0 = steady::now();
    std::string why;
    while (!settled(ids, &why)) {
      if (steady::now() - t0 > limit) {
        ADD_FAILURE() << "not settled on " << ids.size() << " nodes: " << why;
        break;
      }
      std::this_thread::sleep_for(milliseconds{5});
    }
    return std::chrono::duration_cast<milliseconds>(steady::now() - t0);
  }

  template <class F>
  bool eventually(F f, milliseconds limit = milliseconds{3000}) {
    auto t0 = steady::now();
    while (!f()) {
      if (steady::now() - t0 > limit)
        return false;
      std::this_thread::sleep_for(milliseconds{5});
    }
    return true;
  }

  /// Who serves each shard now.
  std::map<std::uint32_t, std::string> servers() {
    std::lock_guard lock{live_mu_};
    const auto now = steady::now();
    std::map<std::uint32_t, std::string> out;
    for (auto* n : live_)
      for (auto& [s, l] : n->serving(now))
        out[s] = n->id;
    return out;
  }

  db::node_state state_of(const std::string& id) {
    for (auto& n : db::read_view(*conn_).nodes)
      if (n.node_id == id)
        return n.state;
    return db::node_state::dead;
  }

  std::string db_;
  std::unique_ptr<pqxx::connection> conn_;
  std::mutex live_mu_;
  std::vector<std::unique_ptr<test_node>> nodes_; // owned, in start order
  std::vector<test_node*> live_;                  // those the checker reads
  std::unique_ptr<lease_checker> checker_;
};

TEST_F(Membership, all_nodes_agree_on_one_epoch_and_one_assignment) {
  auto& a = start("a");
  auto& b = start("b");
  auto& c = start("c");
  settle({"a", "b", "c"});
  const auto e = static_cast<std::uint64_t>(db_epoch());
  const auto want = assign_shards(shard_count, {"a", "b", "c"});
  // Every epoch any two nodes saw maps to the same owners on both.
  std::map<std::uint64_t, std::vector<std::string>> seen;
  for (auto* n : {&a, &b, &c}) {
    std::lock_guard lock{n->mu};
    ASSERT_TRUE(n->assignments.count(e)) << n->id;
    EXPECT_EQ(n->assignments[e], want) << n->id;
    for (auto& [epoch, owners] : n->assignments) {
      auto [it, fresh] = seen.emplace(epoch, owners);
      EXPECT_EQ(it->second, owners) << "epoch " << epoch << " on " << n->id;
    }
  }
  for (auto& l : db::lease_holders(*conn_)) {
    EXPECT_TRUE(l.valid) << l.shard;
    EXPECT_EQ(l.node_id, want[l.shard]) << l.shard;
  }
  EXPECT_EQ(db::lease_holders(*conn_).size(), shard_count);
}

TEST_F(Membership, a_join_moves_shards_only_to_the_joiner) {
  start("a");
  start("b");
  settle({"a", "b"});
  auto before = servers();
  checker_->forget_history();
  start("c");
  settle({"a", "b", "c"});
  auto after = servers();
  int moved = 0;
  for (std::uint32_t s = 0; s < shard_count; ++s) {
    if (before[s] == after[s]) {
      // Not moving means never served by anyone else meanwhile.
      EXPECT_EQ(checker_->served_by(s), std::set<std::string>{before[s]})
          << "shard " << s;
      continue;
    }
    ++moved;
    EXPECT_EQ(after[s], "c") << "shard " << s << " moved from " << before[s];
  }
  EXPECT_GT(moved, 10);
  EXPECT_LT(moved, 32);
}

TEST_F(Membership, a_clean_stop_moves_its_shards_at_once) {
  start("a");
  start("b");
  auto& c = start("c");
  settle({"a", "b", "c"});
  c.m->stop();
  auto took = settle({"a", "b"});
  // Far below failure timeout + lease, which a crash would take.
  EXPECT_LT(took, failure_timeout) << took.count() << " ms";
  EXPECT_TRUE(c.m->leases().empty());
  EXPECT_EQ(c.m->incarnation(), 0);
  EXPECT_EQ(state_of("c"), db::node_state::dead);
  RecordProperty("moved_ms", static_cast<int>(took.count()));
}

TEST_F(Membership, a_silent_node_is_declared_dead_and_rejoins_when_it_resumes) {
  start("a");
  start("b");
  auto& c = start("c");
  settle({"a", "b", "c"});
  const auto old_incarnation = c.m->incarnation();
  c.m->pause_for_testing(true); // as SIGSTOP: no heartbeat, no renewal
  auto took = settle({"a", "b"});
  EXPECT_GE(took, failure_timeout) << took.count() << " ms";
  EXPECT_EQ(state_of("c"), db::node_state::dead);
  // Paused, c has served nothing since its leases ran out by its own clock.
  EXPECT_TRUE(c.serving(steady::now()).empty());

  c.m->pause_for_testing(false);
  ASSERT_TRUE(eventually([&] { return c.death_count() == 1; }));
  settle({"a", "b", "c"});
  EXPECT_EQ(c.m->incarnation(), old_incarnation + 1);
  EXPECT_EQ(c.death_count(), 1);
  RecordProperty("moved_ms", static_cast<int>(took.count()));
}

TEST_F(Membership, a_crashed_node_loses_its_shards_after_the_timeout) {
  start("a");
  auto& b = start("b");
  settle({"a", "b"});
  crash(b); // destroyed without stop(): its row stays active
  auto took = settle({"a"});
  EXPECT_GE(took, failure_timeout) << took.count() << " ms";
  EXPECT_EQ(state_of("b"), db::node_state::dead);
  RecordProperty("moved_ms", static_cast<int>(took.count()));
}

TEST_F(Membership, a_drained_node_keeps_running_without_shards) {
  start("a");
  auto& b = start("b");
  start("c");
  settle({"a", "b", "c"});
  b.m->drain();
  settle({"a", "c"});
  EXPECT_EQ(state_of("b"), db::node_state::draining);
  EXPECT_TRUE(b.m->leases().empty());
  EXPECT_NE(b.m->incarnation(), 0);
}

TEST_F(Membership, a_revoked_shard_moves_only_once_the_old_owner_releases_it) {
  auto& a = start("a", /*handoff=*/true);
  settle({"a"});
  start("b");
  auto owners = assign_shards(shard_count, {"a", "b"});
  std::vector<std::uint32_t> moving;
  for (std::uint32_t s = 0; s < shard_count; ++s)
    if (owners[s] == "b")
      moving.push_back(s);
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock{a.mu};
    return !a.revokes.empty();
  }));
  {
    std::lock_guard lock{a.mu};
    ASSERT_EQ(a.revokes.size(), 1u);
    EXPECT_EQ(a.revokes[0].second, moving);
  }
  // a keeps the revoked shards (renewing them past one lease) until it
  // says it has handed them off.
  std::this_thread::sleep_for(lease + milliseconds{100});
  auto now = servers();
  for (auto s : moving)
    EXPECT_EQ(now[s], "a") << "shard " << s;
  a.m->release(moving);
  auto took = settle({"a", "b"});
  EXPECT_LT(took, failure_timeout) << took.count() << " ms";
  RecordProperty("moved_ms", static_cast<int>(took.count()));
}

} // namespace
} // namespace karvon::cluster
