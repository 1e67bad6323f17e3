// cluster_request: entity round trips per second when the entity lives on
// another node (a second process, reached over CAF's middleman on
// loopback), next to the same entities on this node, and next to raw CAF
// remote request/response between the same two processes.
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/entity.hpp"
#include "actors/messages.hpp"
#include "actors/supervisor.hpp"
#include "bench/caf_load.hpp"
#include "bench/scenario.hpp"
#include "cluster/router.hpp"
#include "cluster/shard_map.hpp"
#include "cluster/transport.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/embedded_postgres.hpp"

namespace karvon::bench {

namespace {

using namespace std::chrono_literals;

constexpr int entities = 10000;
constexpr std::uint32_t shards = 1024;

// Echoes (ping, x) with x: no state, so activation needs no table.
class echo_logic final : public actors::entity_logic {
public:
  void load(pqxx::connection_base&, const std::string&) override {}
  caf::message_handler handlers(caf::event_based_actor*) override {
    return {[](caf::ping_atom, int x) { return x; }};
  }
};

actors::entity_kind bench_kind() {
  return {"bench",
          [](const std::string&) { return std::make_unique<echo_logic>(); }};
}

// One node's runtime: its actor system (with the middleman), a pool, a
// shard map where `owner` owns every shard, and a router with the kind.
struct node_runtime {
  node_runtime(const std::string& conninfo, const std::string& self,
               const std::string& owner) {
    cfg.set("scheduler.max-threads", 2);
    cfg.load<caf::io::middleman>();
    actors::add_message_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    pool = std::make_unique<persistence::db_pool>(
        persistence::pool_options{conninfo, 2, 100000, {}}, nullptr);
    map = std::make_unique<cluster::shard_map>(shards, self);
    map->assign(std::vector<std::string>(shards, owner), 2);
    router = std::make_unique<cluster::router>(*sys, *map);
    router->add_kind("bench", actors::spawn_supervisor(*sys, bench_kind(), {},
                                                       *pool, nullptr));
    transport = std::make_unique<cluster::transport>(*sys, *router);
  }

  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<persistence::db_pool> pool;
  std::unique_ptr<cluster::shard_map> map;
  std::unique_ptr<cluster::router> router;
  std::unique_ptr<cluster::transport> transport;
};

// The other process: node "b", owning every shard, plus a plain echo actor
// for the raw figure. Reports its two ports, then serves until its parent
// closes `control`.
[[noreturn]] void peer_main(const std::string& conninfo, int control,
                            int report) {
  node_runtime b{conninfo, "b", "b"};
  auto node_port = b.transport->start("127.0.0.1", 0);
  auto echo_actor = b.sys->spawn(echo);
  auto echo_port = b.sys->middleman().publish(echo_actor, 0, "127.0.0.1");
  auto line = std::to_string(node_port) + " "
              + std::to_string(echo_port ? *echo_port : 0) + "\n";
  if (::write(report, line.data(), line.size()) < 0)
    std::_Exit(1);
  char byte;
  while (::read(control, &byte, 1) > 0)
    ;
  // The parent is done; nothing here needs an orderly end.
  std::_Exit(0);
}

scenario_result run_cluster_request(const options& o) {
  std::vector<figure> vs_local
      = {{"rt_per_s", "1/s", "same_node", better::higher}};
  std::vector<figure> vs_raw
      = {{"rt_per_s", "1/s", "raw_caf_remote", better::higher}};

  auto dir = std::filesystem::temp_directory_path()
             / ("karvon-bench-cluster-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto db = std::make_unique<persistence::embedded_postgres>(
      dir.string(), persistence::ownership::owner);
  auto conninfo = db->connection_string();

  // Fork before this process starts any thread of its own for the
  // scenario: the child builds its own actor system.
  int control[2], report[2];
  if (::pipe(control) != 0 || ::pipe(report) != 0)
    throw std::runtime_error("pipe failed");
  auto pid = ::fork();
  if (pid < 0)
    throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(control[1]);
    ::close(report[0]);
    peer_main(conninfo, control[0], report[1]);
  }
  ::close(control[0]);
  ::close(report[1]);
  auto finish_peer = [&] {
    ::close(control[1]);
    int status = 0;
    ::waitpid(pid, &status, 0);
  };

  char buf[64] = {};
  auto n = ::read(report[0], buf, sizeof buf - 1);
  ::close(report[0]);
  unsigned node_port = 0, echo_port = 0;
  if (n <= 0 || std::sscanf(buf, "%u %u", &node_port, &echo_port) != 2
      || node_port == 0 || echo_port == 0) {
    finish_peer();
    throw std::runtime_error("the peer process did not start");
  }

  scenario_result result;
  {
    // This node: one router that sends every key to "b", one that keeps
    // them here.
    node_runtime here{conninfo, "a", "a"};
    node_runtime far{conninfo, "a", "b"};
    far.transport->connect("b", "127.0.0.1:" + std::to_string(node_port));
    for (int i = 0; i < 500 && !far.router->lookup("bench/0").target; ++i)
      std::this_thread::sleep_for(10ms);
    auto remote_echo = here.sys->middleman().remote_actor(
        "127.0.0.1", static_cast<std::uint16_t>(echo_port));
    if (!far.router->lookup("bench/0").target || !remote_echo) {
      finish_peer();
      throw std::runtime_error("could not reach the peer process");
    }
    auto keys = bench_keys(entities);
    activate_all(*here.sys, *here.router, keys);
    activate_all(*far.sys, *far.router, keys);

    constexpr int clients = 4;
    constexpr int window = 16;
    auto through = [&](node_runtime& rt) {
      auto dest = rt.router->lookup("bench/0").target; // one target for all
      return [&keys, dest, &rt](std::chrono::milliseconds d) {
        return run_load(
            *rt.sys,
            [&keys, dest](std::mt19937& rng) {
              auto& key = keys[rng() % keys.size()];
              return std::make_pair(
                  dest, caf::make_message(
                            actors::route_atom::value, key,
                            caf::make_message(caf::ping_atom::value, 1)));
            },
            clients, window, d);
      };
    };
    side remote = through(far);
    side local = through(here);
    side raw = [&](std::chrono::milliseconds d) {
      auto dest = *remote_echo;
      return run_load(
          *here.sys,
          [dest](std::mt19937&) {
            return std::make_pair(dest,
                                  caf::make_message(caf::ping_atom::value, 1));
          },
          clients, window, d);
    };
    result = measure_interleaved(vs_local, o, remote, local);
    auto second = measure_interleaved(vs_raw, o, remote, raw);
    for (auto& f : second.figures)
      result.figures.push_back(std::move(f));
    for (auto& p : second.problems)
      result.problems.push_back(std::move(p));
    here.router->stop(30s);
    far.router->stop(30s);
    here.transport->stop();
    far.transport->stop();
  }
  finish_peer();
  db.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return result;
}

} // namespace

scenario cluster_request_scenario() {
  return {"cluster_request",
          "round trips to 10,000 entities on another node (a second process "
          "over CAF's middleman) vs the same on this node and vs raw CAF "
          "remote request/response",
          {{"rt_per_s", "1/s", "same_node", better::higher},
           {"rt_per_s", "1/s", "raw_caf_remote", better::higher}},
          run_cluster_request};
}

} // namespace karvon::bench
