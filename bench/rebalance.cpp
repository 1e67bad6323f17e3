// rebalance: how long a join takes to settle. Node A holds every shard and
// 100,000 active entities under load; node B joins; the figure is the time
// from starting B until every shard the new epoch gives B is served there
// and A has handed its moved entities off (passivated, leases released),
// with the messages that had to wait meanwhile and those answered "retry"
// because they waited too long. The load leaves nearly every entity with
// unsaved state, so each moved entity costs a fenced save: the worst case. The
// ceiling is the same join in a cluster with no entities and no load: the
// membership protocol alone (heartbeats, epoch, lease hand-over), on the same
// machine in the same run. Both clusters are real: cluster::member, a shared
// PostgreSQL, CAF's middleman on loopback.
#include <filesystem>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <pqxx/pqxx>
#include <unistd.h>

#include "actors/entity.hpp"
#include "actors/messages.hpp"
#include "actors/supervisor.hpp"
#include "bench/caf_load.hpp"
#include "bench/scenario.hpp"
#include "cluster/member.hpp"
#include "cluster/router.hpp"
#include "cluster/shard_map.hpp"
#include "metrics/registry.hpp"
#include "persistence/cluster_store.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/embedded_postgres.hpp"
#include "persistence/migrations.hpp"

namespace karvon::bench {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr int entities = 100000;
constexpr std::uint32_t shards = 1024;

// A counter whose state is read on activation and, when a message changed
// it, written on passivation under its shard's fencing token.
class counter_logic final : public actors::entity_logic {
public:
  void load(pqxx::connection_base& c, const std::string& key) override {
    pqxx::work tx{c};
    auto r = tx.exec_params("SELECT n FROM bench_state WHERE key = $1", key);
    n_ = r.empty() ? 0 : r[0][0].as<int>();
    tx.commit();
  }
  caf::message_handler handlers(caf::event_based_actor*) override {
    return {[this](caf::ping_atom, int x) {
      n_ += x;
      dirty_ = x > 1; // activate_all pings with 1: activation only
      return x;
    }};
  }
  bool dirty() const override { return dirty_; }
  void save(pqxx::connection_base& c, const std::string& key) override {
    pqxx::work tx{c};
    if (auto token = fence(); token && !persistence::holds_lease(tx, *token))
      throw actors::lease_lost("lease lost");
    tx.exec_params("INSERT INTO bench_state (key, n) VALUES ($1, $2) ON "
                   "CONFLICT (key) DO UPDATE SET n = EXCLUDED.n",
                   key, n_);
    tx.commit();
    dirty_ = false;
  }

private:
  int n_ = 0;
  bool dirty_ = false;
};

// One node of a bench cluster, in this process: its own actor system,
// pool, shard map, router and supervisor, and a cluster::member.
struct bench_node {
  bench_node(const std::string& conninfo, const std::string& id) {
    cfg.set("scheduler.max-threads", 2);
    cfg.load<caf::io::middleman>();
    actors::add_message_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    persistence::pool_options po{conninfo, 8, 1000000, {}};
    po.session = {{"idle_in_transaction_session_timeout", "1000"}};
    pool = std::make_unique<persistence::db_pool>(std::move(po), nullptr);
    map = std::make_unique<cluster::shard_map>(shards, id);
    map->require_leases();
    router = std::make_unique<cluster::router>(*sys, *map);
    actors::supervisor_options so;
    so.rules = cluster::ownership_rules_of(*map);
    so.max_active = 2 * entities;
    so.idle_timeout = 1h;
    router->add_kind("bench", actors::spawn_supervisor(
                                  *sys,
                                  {"bench",
                                   [](const std::string&) {
                                     return std::make_unique<counter_logic>();
                                   }},
                                  so, *pool, nullptr));
    cluster::member_options mo;
    mo.node_id = id;
    mo.conninfo = conninfo;
    mo.listen_host = "127.0.0.1";
    mo.heartbeat = 200ms;
    mo.failure_timeout = 5000ms;
    mo.lease = 5000ms;
    member
        = std::make_unique<cluster::member>(*sys, *map, *router, mo, &metrics);
    member->start();
  }
  ~bench_node() {
    member->leave();
    member.reset();
    router->stop(60s);
    router.reset();
    sys.reset();
    pool.reset();
  }

  bool settled() const {
    return member->shards_held() == member->shards_owned();
  }
  std::uint64_t delayed() {
    return metrics.counters("karvon_cluster_delayed_messages_total", "", {})
        .with({})
        .value();
  }

  metrics::registry metrics;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<persistence::db_pool> pool;
  std::unique_ptr<cluster::shard_map> map;
  std::unique_ptr<cluster::router> router;
  std::unique_ptr<cluster::member> member;
};

// A database of its own on the bench server, with the schema.
std::string make_database(const std::string& server_conninfo,
                          const std::string& name) {
  {
    pqxx::connection c{server_conninfo};
    pqxx::nontransaction tx{c};
    tx.exec("DROP DATABASE IF EXISTS " + name);
    tx.exec("CREATE DATABASE " + name);
  }
  // libpq takes the last of a repeated keyword.
  auto conninfo = server_conninfo + " dbname=" + name;
  persistence::migrate(conninfo);
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  tx.exec("CREATE TABLE bench_state (key text PRIMARY KEY, n int NOT NULL)");
  return conninfo;
}

// One join of node "b" to `a`'s cluster: milliseconds until both settled,
// and the messages that waited meanwhile. With `keys`, they are all active
// on `a` first and under load throughout.
sample join_once(bench_node& a, const std::string& conninfo,
                 const std::vector<std::string>* keys) {
  sample s;
  s.values = {0, 0, 0};
  if (keys)
    activate_all(*a.sys, *a.router, *keys);
  auto delayed_before = a.delayed();
  std::atomic<bool> loading{keys != nullptr};
  sample load;
  std::thread load_thread;
  if (keys) {
    load_thread = std::thread{[&] {
      while (loading.load()) {
        auto part = run_load(
            *a.sys,
            [&a, keys](std::mt19937& rng) {
              auto& key = (*keys)[rng() % keys->size()];
              return std::make_pair(
                  a.router->route_for(key),
                  caf::make_message(
                      actors::route_atom::value, key,
                      caf::make_message(caf::ping_atom::value, 2)));
            },
            2, 16, 250ms);
        load.errors += part.errors;
        if (load.first_error.empty())
          load.first_error = part.first_error;
      }
    }};
    std::this_thread::sleep_for(300ms);
  }
  auto started = steady::now();
  auto b = std::make_unique<bench_node>(conninfo, "b");
  while (!(b->settled() && a.settled() && b->member->shards_owned() > 0)) {
    if (steady::now() - started > 120s) {
      loading = false;
      if (load_thread.joinable())
        load_thread.join();
      throw std::runtime_error("the join did not settle within 120 s");
    }
    std::this_thread::sleep_for(1ms);
  }
  auto took
      = std::chrono::duration<double, std::milli>(steady::now() - started);
  std::this_thread::sleep_for(200ms); // load on the settled pair
  loading = false;
  if (load_thread.joinable())
    load_thread.join();
  auto delayed
      = static_cast<double>(a.delayed() - delayed_before + b->delayed());
  b.reset(); // drains back to a
  while (a.member->shards_held() != shards)
    std::this_thread::sleep_for(1ms);
  // Messages that waited past the node router's limit were answered
  // "retry" (errc::unavailable): the senders' view of a slow hand-off, a
  // figure of its own rather than a failure of the run.
  s.values = {took.count(), delayed, static_cast<double>(load.errors)};
  return s;
}

scenario_result run_rebalance(const options& o) {
  std::vector<figure> figures
      = {{"settle_ms", "ms", "no_entities", better::lower},
         {"delayed_messages", "1", "no_entities", better::lower},
         {"retry_answers", "1", "no_entities", better::lower}};
  auto dir = std::filesystem::temp_directory_path()
             / ("karvon-bench-rebalance-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto db = std::make_unique<persistence::embedded_postgres>(
      dir.string(), persistence::ownership::owner);
  scenario_result result;
  {
    auto busy_db = make_database(db->connection_string(), "rebalance_busy");
    auto idle_db = make_database(db->connection_string(), "rebalance_idle");
    bench_node busy{busy_db, "a"};
    bench_node idle{idle_db, "a"};
    auto keys = bench_keys(entities);
    side karvon = [&](std::chrono::milliseconds) {
      return join_once(busy, busy_db, &keys);
    };
    side ceiling = [&](std::chrono::milliseconds) {
      return join_once(idle, idle_db, nullptr);
    };
    auto quick = o;
    quick.runs = std::min(o.runs, 3); // each run is a whole join and leave
    result = measure_interleaved(figures, quick, karvon, ceiling);
  }
  db.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return result;
}

} // namespace

scenario rebalance_scenario() {
  return {"rebalance",
          "a node joins a node holding 100,000 active entities under load: "
          "time until every moved shard is served again, and messages "
          "delayed, vs the same join with no entities",
          {{"settle_ms", "ms", "no_entities", better::lower},
           {"delayed_messages", "1", "no_entities", better::lower},
           {"retry_answers", "1", "no_entities", better::lower}},
          run_rebalance};
}

} // namespace karvon::bench
