// Benchmarks of the entity runtime against raw CAF and raw PostgreSQL on the
// same machine in the same run:
//   entity_request  round trips to 10,000 entities through the router, next
//                   to request/response between plain CAF actors;
//   activation      activations per second of entities with a small state
//                   row, next to the same SELECTs straight on the pool;
//   entity_memory   heap bytes per active idle entity with 100,000 active,
//                   next to a plain idle CAF actor.
#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include <caf/all.hpp>
#include <malloc.h>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "actors/entity.hpp"
#include "actors/messages.hpp"
#include "actors/supervisor.hpp"
#include "bench/caf_load.hpp"
#include "bench/scenario.hpp"
#include "cluster/router.hpp"
#include "cluster/shard_map.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/embedded_postgres.hpp"

namespace karvon::bench {

namespace {

using namespace std::chrono_literals;

constexpr int request_entities = 10000;
constexpr int memory_entities = 100000;
constexpr int state_rows = 300000;
constexpr const char* select_state
    = "SELECT value FROM bench_state WHERE id = $1";

// A bench entity: a small state row read at activation, an echo handler.
class bench_logic final : public actors::entity_logic {
public:
  explicit bench_logic(bool with_state) : with_state_(with_state) {}

  void load(pqxx::connection_base& c, const std::string& key) override {
    if (!with_state_)
      return;
    pqxx::nontransaction tx{c};
    auto id = std::stol(key.substr(key.find('/') + 1));
    auto r = tx.exec_params(select_state, id);
    if (!r.empty())
      value_ = r[0][0].as<long>();
  }

  caf::message_handler handlers(caf::event_based_actor*) override {
    return {[this](caf::ping_atom, int x) { return x + value_; }};
  }

private:
  bool with_state_;
  int value_ = 0;
};

// An embedded PostgreSQL in a temporary folder, a pool, an actor system and
// a supervisor of "bench" entities: what a node runs, minus HTTP.
class runtime {
public:
  explicit runtime(bool with_state) {
    dir_ = std::filesystem::temp_directory_path()
           / ("karvon-bench-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    db_ = std::make_unique<persistence::embedded_postgres>(
        dir_.string(), persistence::ownership::owner);
    {
      pqxx::connection c{db_->connection_string()};
      pqxx::nontransaction tx{c};
      tx.exec("DROP TABLE IF EXISTS bench_state");
      tx.exec("CREATE TABLE bench_state (id bigint PRIMARY KEY, value int)");
      tx.exec("INSERT INTO bench_state SELECT g, g % 100 FROM "
              "generate_series(0, "
              + std::to_string(state_rows) + ") g");
      tx.exec("ANALYZE bench_state");
    }
    pool_ = std::make_unique<persistence::db_pool>(
        persistence::pool_options{db_->connection_string(), 4, 1000000, {}},
        nullptr);
    cfg_.set("scheduler.max-threads", 2);
    actors::add_message_types(cfg_);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    map_ = std::make_unique<cluster::shard_map>(1024, "bench");
    start_kind(with_state);
  }

  ~runtime() {
    router_->stop(120s);
    router_.reset();
    sys_.reset();
    pool_.reset();
    db_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void start_kind(bool with_state) {
    actors::supervisor_options so;
    so.max_active = 10'000'000;
    router_ = std::make_unique<cluster::router>(*sys_, *map_);
    router_->add_kind("bench",
                      actors::spawn_supervisor(
                          *sys_,
                          {"bench",
                           [with_state](const std::string&) {
                             return std::make_unique<bench_logic>(with_state);
                           }},
                          so, *pool_, nullptr));
  }

  // Passivates everything and starts afresh (between memory runs).
  void restart_kind(bool with_state) {
    router_->stop(120s);
    start_kind(with_state);
  }

  caf::actor_system& sys() { return *sys_; }
  cluster::router& router() { return *router_; }
  persistence::db_pool& pool() { return *pool_; }

private:
  std::filesystem::path dir_;
  std::unique_ptr<persistence::embedded_postgres> db_;
  std::unique_ptr<persistence::db_pool> pool_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<cluster::shard_map> map_;
  std::unique_ptr<cluster::router> router_;
};

std::size_t heap_in_use() {
  auto m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

scenario_result run_entity_request(const options& o) {
  std::vector<figure> figures
      = {{"rt_per_s", "1/s", "raw_caf", better::higher}};
  std::vector<figure> spread_figures
      = {{"rt_per_s", "1/s", "raw_caf_10k", better::higher}};
  runtime rt{false};
  auto keys = bench_keys(request_entities);
  activate_all(rt.sys(), rt.router(), keys);
  auto sup = rt.router().route_for("bench/0");
  auto server = rt.sys().spawn(echo);
  constexpr int clients = 4;
  constexpr int window = 16;
  side karvon = [&](std::chrono::milliseconds d) {
    return run_load(
        rt.sys(),
        [&keys, sup](std::mt19937& rng) {
          auto& key = keys[rng() % keys.size()];
          return std::make_pair(
              sup,
              caf::make_message(actors::route_atom::value, key,
                                caf::make_message(caf::ping_atom::value, 1)));
        },
        clients, window, d);
  };
  side raw = [&](std::chrono::milliseconds d) {
    return run_load(
        rt.sys(),
        [server](std::mt19937&) {
          return std::make_pair(server,
                                caf::make_message(caf::ping_atom::value, 1));
        },
        clients, window, d);
  };
  // The same load straight to 10,000 plain actors: what spreading it over
  // as many actors costs CAF itself, without the router and supervisor.
  std::vector<caf::actor> plain;
  for (int i = 0; i < request_entities; ++i)
    plain.push_back(rt.sys().spawn(echo));
  side raw_spread = [&](std::chrono::milliseconds d) {
    return run_load(
        rt.sys(),
        [&plain](std::mt19937& rng) {
          return std::make_pair(plain[rng() % plain.size()],
                                caf::make_message(caf::ping_atom::value, 1));
        },
        clients, window, d);
  };
  auto result = measure_interleaved(figures, o, karvon, raw);
  auto spread = measure_interleaved(spread_figures, o, karvon, raw_spread);
  for (auto& f : spread.figures)
    result.figures.push_back(std::move(f));
  for (auto& p : spread.problems)
    result.problems.push_back(std::move(p));
  caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
  for (auto& a : plain)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  return result;
}

scenario_result run_activation(const options& o) {
  std::vector<figure> figures
      = {{"activations_per_s", "1/s", "raw_select", better::higher}};
  runtime rt{true};
  int next_key = 0;
  side karvon = [&](std::chrono::milliseconds d) {
    auto sup = rt.router().route_for("bench/0");
    // Every request names a key never seen: each is one activation.
    auto counter = std::make_shared<std::atomic<int>>(next_key);
    auto s = run_load(
        rt.sys(),
        [sup, counter](std::mt19937&) {
          auto key
              = "bench/"
                + std::to_string(counter->fetch_add(1) % (state_rows * 10));
          return std::make_pair(
              sup,
              caf::make_message(actors::route_atom::value, std::move(key),
                                caf::make_message(caf::ping_atom::value, 0)));
        },
        4, 16, d);
    next_key = counter->load();
    // Start each run with few entities active, as the first one did.
    rt.restart_kind(true);
    return s;
  };
  side raw = [&](std::chrono::milliseconds d) {
    // The same SELECT by primary key, straight on the same pool, with as
    // many in flight.
    struct counts {
      std::atomic<std::uint64_t> done{0};
      std::atomic<std::uint64_t> errors{0};
    };
    auto st = std::make_shared<counts>();
    std::atomic<int> in_flight{0};
    std::mt19937 rng{1};
    auto started = std::chrono::steady_clock::now();
    auto deadline = started + d;
    while (std::chrono::steady_clock::now() < deadline) {
      if (in_flight.load() >= 64) {
        std::this_thread::yield();
        continue;
      }
      ++in_flight;
      long id = static_cast<long>(rng() % state_rows);
      bool queued = rt.pool().submit(
          [id](pqxx::connection_base& c) {
            pqxx::nontransaction tx{c};
            tx.exec_params(select_state, id);
          },
          [st, &in_flight](auto err) {
            if (err)
              st->errors++;
            else
              st->done++;
            --in_flight;
          });
      if (!queued)
        --in_flight;
    }
    auto counted = st->done.load();
    auto elapsed = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - started)
                       .count();
    while (in_flight.load() > 0)
      std::this_thread::sleep_for(1ms);
    sample s;
    s.values = {static_cast<double>(counted) / elapsed};
    s.errors = st->errors.load();
    return s;
  };
  return measure_interleaved(figures, o, karvon, raw);
}

scenario_result run_entity_memory(const options& o) {
  std::vector<figure> figures
      = {{"bytes_per_entity", "B", "raw_caf_actor", better::lower}};
  runtime rt{false};
  auto keys = bench_keys(memory_entities);
  side karvon = [&](std::chrono::milliseconds) {
    rt.restart_kind(false);
    std::this_thread::sleep_for(50ms);
    auto before = heap_in_use();
    activate_all(rt.sys(), rt.router(), keys);
    auto after = heap_in_use();
    sample s;
    s.values = {static_cast<double>(after - before) / memory_entities};
    auto totals = rt.router().stats(10s);
    if (totals.active != static_cast<std::uint64_t>(memory_entities)) {
      s.errors = 1;
      s.first_error = "expected " + std::to_string(memory_entities)
                      + " active entities, found "
                      + std::to_string(totals.active);
    }
    return s;
  };
  side raw = [&](std::chrono::milliseconds) {
    std::this_thread::sleep_for(50ms);
    auto before = heap_in_use();
    std::vector<caf::actor> actors;
    actors.reserve(memory_entities);
    for (int i = 0; i < memory_entities; ++i)
      actors.push_back(rt.sys().spawn(echo));
    auto after = heap_in_use();
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    actors.clear();
    sample s;
    s.values = {static_cast<double>(after - before) / memory_entities};
    return s;
  };
  // One measured run of each side is enough (and each builds 100,000
  // actors); no warm-up: the first activation is what is measured.
  options once = o;
  once.warmup_ms = 0;
  once.runs = std::min(o.runs, 3);
  return measure_interleaved(figures, once, karvon, raw);
}

} // namespace

scenario entity_request_scenario() {
  return {"entity_request",
          "round trips to 10,000 entities through the router vs raw CAF "
          "request/response to one plain actor and to 10,000 (4 clients x 16 "
          "in flight)",
          {{"rt_per_s", "1/s", "raw_caf", better::higher},
           {"rt_per_s", "1/s", "raw_caf_10k", better::higher}},
          run_entity_request};
}

scenario activation_scenario() {
  return {"activation",
          "activations per second of entities with a state row vs the same "
          "SELECTs straight on the pool",
          {{"activations_per_s", "1/s", "raw_select", better::higher}},
          run_activation};
}

scenario entity_memory_scenario() {
  return {"entity_memory",
          "heap bytes per active idle entity with 100,000 active vs a plain "
          "idle CAF actor",
          {{"bytes_per_entity", "B", "raw_caf_actor", better::lower}},
          run_entity_memory};
}

} // namespace karvon::bench
