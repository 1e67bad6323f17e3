// The entity runtime with a real actor system and a real PostgreSQL: one
// activation per key, passivation, supervision, shutdown.
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "actors/chat.hpp"
#include "actors/entity.hpp"
#include "actors/errors.hpp"
#include "actors/messages.hpp"
#include "actors/supervisor.hpp"
#include "cluster/ask.hpp"
#include "cluster/router.hpp"
#include "cluster/shard.hpp"
#include "cluster/shard_map.hpp"
#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

using crash_atom = caf::atom_constant<caf::atom("tcrash")>;
using seq_atom = caf::atom_constant<caf::atom("tseq")>;
using lazy_atom = caf::atom_constant<caf::atom("tlazy")>;
using hold_atom = caf::atom_constant<caf::atom("thold")>;
using late_atom = caf::atom_constant<caf::atom("tlate")>;

// What every counter entity has seen, across activations: the test's view
// of the world, shared by all threads.
struct observations {
  std::mutex mutex;
  std::map<std::string, int> loads;
  std::map<std::string, std::vector<std::pair<int, int>>> sequence;
  std::atomic<int> live{0}; // entities alive right now, all keys
  std::map<std::string, int> live_per_key;
  int max_live_per_key = 0;
  // For database work that waits: it starts, waits for the gate, then
  // says what fence() answered ("token", "lease lost").
  std::promise<void> work_started;
  std::shared_future<void> gate;
  std::promise<std::string> fence_seen;
};

// A test entity kind: a counter whose adds are committed before they are
// acknowledged; "lazy" adds are kept in memory and saved at passivation.
class counter_logic final : public entity_logic {
public:
  counter_logic(std::string key, observations& seen, std::atomic<bool>& busy)
      : key_(std::move(key)), seen_(seen), busy_flag_(busy) {
    std::lock_guard lock{seen_.mutex};
    auto& n = seen_.live_per_key[key_];
    ++n;
    seen_.max_live_per_key = std::max(seen_.max_live_per_key, n);
  }
  ~counter_logic() override {
    std::lock_guard lock{seen_.mutex};
    --seen_.live_per_key[key_];
  }

  void load(pqxx::connection_base& c, const std::string& key) override {
    pqxx::nontransaction tx{c};
    auto r = tx.exec_params("SELECT value FROM counters WHERE key = $1", key);
    value_ = r.empty() ? 0 : r[0][0].as<int>();
    std::lock_guard lock{seen_.mutex};
    ++seen_.loads[key];
  }

  caf::message_handler handlers(caf::event_based_actor* self) override {
    return {
        [this, self](caf::add_atom, int n) -> caf::result<int> {
          value_ += n;
          auto v = value_;
          auto rp = self->make_response_promise<int>();
          in_database(
              [key = key_, v](pqxx::connection_base& c) {
                pqxx::work tx{c};
                tx.exec_params(
                    "INSERT INTO counters (key, value) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET value = $2",
                    key, v);
                tx.commit();
              },
              [rp, v](std::optional<persistence::db_error> err) mutable {
                if (err)
                  rp.deliver(make_error(errc::unavailable, err->message));
                else
                  rp.deliver(v);
              });
          return rp;
        },
        [this](lazy_atom, int n) {
          value_ += n;
          dirty_ = true;
          return value_;
        },
        [this](late_atom) {
          // The work reads the logic after it waited: fence() uses it.
          in_database(
              [this](pqxx::connection_base&) {
                seen_.work_started.set_value();
                seen_.gate.wait();
                try {
                  fence();
                  seen_.fence_seen.set_value("token");
                } catch (const lease_lost&) {
                  seen_.fence_seen.set_value("lease lost");
                }
              },
              [](std::optional<persistence::db_error>) {});
          return value_;
        },
        [this](caf::get_atom) { return value_; },
        [](crash_atom) -> int { throw std::runtime_error("crash on request"); },
        [this](seq_atom, int sender, int i) {
          std::lock_guard lock{seen_.mutex};
          seen_.sequence[key_].emplace_back(sender, i);
          return i;
        },
    };
  }

  bool busy() const override { return busy_flag_.load(); }
  bool dirty() const override { return dirty_; }

  void save(pqxx::connection_base& c, const std::string& key) override {
    pqxx::work tx{c};
    tx.exec_params("INSERT INTO counters (key, value) VALUES ($1, $2) "
                   "ON CONFLICT (key) DO UPDATE SET value = $2",
                   key, value_);
    tx.commit();
    dirty_ = false;
  }

private:
  std::string key_;
  observations& seen_;
  std::atomic<bool>& busy_flag_;
  int value_ = 0;
  bool dirty_ = false;
};

class EntityRuntime : public ::testing::Test {
protected:
  EntityRuntime() {
    conninfo_ = testing::fresh_database();
    testing::execute(conninfo_, "CREATE TABLE counters (key text PRIMARY KEY, "
                                "value int NOT NULL)");
    pool_ = std::make_unique<persistence::db_pool>(
        persistence::pool_options{conninfo_, 4, 10000, {}}, &metrics_);
  }

  ~EntityRuntime() override {
    if (router_)
      router_->stop(10s);
    router_.reset();
    sys_.reset();
    pool_.reset();
  }

  void start(supervisor_options options = {}) {
    cfg_.set("scheduler.max-threads", 2);
    add_message_types(cfg_);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    if (!map_)
      map_ = std::make_unique<cluster::shard_map>(1024, "test-node");
    router_ = std::make_unique<cluster::router>(*sys_, *map_);
    entity_kind kind{"counter", [this](const std::string& key) {
                       return std::make_unique<counter_logic>(key, seen_,
                                                              busy_);
                     }};
    supervisor_ = spawn_supervisor(*sys_, kind, options, *pool_, &metrics_);
    router_->add_kind("counter", supervisor_);
  }

  // A request through the router from a scoped actor; the reply or error.
  template <class R, class... Ts>
  caf::expected<R> ask(const std::string& key, Ts... xs) {
    caf::scoped_actor self{*sys_};
    caf::expected<R> out = caf::sec::request_timeout;
    self->request(router_->route_for(key), 10s, route_atom::value, key,
                  caf::make_message(xs...))
        .receive([&](R& x) { out = std::move(x); },
                 [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  int stored(const std::string& key) {
    auto v = testing::query_value(
        conninfo_, "SELECT value FROM counters WHERE key = '" + key + "'");
    return v.empty() ? -1 : std::stoi(v);
  }

  cluster::router::totals totals() { return router_->stats(5s); }

  std::string conninfo_;
  metrics::registry metrics_;
  std::unique_ptr<persistence::db_pool> pool_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<cluster::shard_map> map_;
  std::unique_ptr<cluster::router> router_;
  caf::actor supervisor_;
  observations seen_;
  std::atomic<bool> busy_{false};
};

TEST_F(EntityRuntime, a_message_activates_the_entity_with_its_stored_state) {
  testing::execute(conninfo_, "INSERT INTO counters VALUES ('counter/a', 41)");
  start();
  auto v = ask<int>("counter/a", caf::add_atom::value, 1);
  ASSERT_TRUE(v) << sys_->render(v.error());
  EXPECT_EQ(*v, 42);
  EXPECT_EQ(stored("counter/a"), 42);
}

TEST_F(EntityRuntime,
       a_thousand_concurrent_first_messages_activate_one_actor_in_order) {
  start();
  constexpr int senders = 4;
  constexpr int per_sender = 250;
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, s] {
      caf::scoped_actor self{*sys_};
      auto dest = router_->route_for("counter/hot");
      // All requests leave before any answer is read: they race the
      // activation.
      for (int i = 0; i < per_sender; ++i)
        self->send(dest, route_atom::value, std::string{"counter/hot"},
                   caf::make_message(seq_atom::value, s, i));
      for (int i = 0; i < per_sender; ++i)
        self->receive([&](int) { ++answered; },
                      [&](caf::error&) { ADD_FAILURE(); },
                      caf::after(10s) >> [] { ADD_FAILURE() << "timeout"; });
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(answered.load(), senders * per_sender);
  std::lock_guard lock{seen_.mutex};
  EXPECT_EQ(seen_.loads["counter/hot"], 1);
  EXPECT_EQ(seen_.max_live_per_key, 1);
  auto& seq = seen_.sequence["counter/hot"];
  ASSERT_EQ(seq.size(), static_cast<size_t>(senders * per_sender));
  std::map<int, int> next;
  for (auto& [sender, i] : seq) {
    EXPECT_EQ(i, next[sender]) << "sender " << sender;
    next[sender] = i + 1;
  }
  EXPECT_EQ(totals().activations, 1u);
}

TEST_F(EntityRuntime, passivation_racing_with_messages_loses_nothing) {
  supervisor_options o;
  o.idle_timeout = 20ms;
  o.sweep_interval = 5ms;
  start(o);
  std::mt19937 rng{7};
  int adds = 0;
  for (int round = 0; round < 60; ++round) {
    auto v = ask<int>("counter/racy", caf::add_atom::value, 1);
    ASSERT_TRUE(v) << sys_->render(v.error());
    ++adds;
    ASSERT_EQ(*v, adds);
    // Sleep around the idle timeout so some messages meet a passivation.
    std::this_thread::sleep_for(
        std::chrono::milliseconds{15 + static_cast<int>(rng() % 20)});
  }
  EXPECT_EQ(stored("counter/racy"), adds);
  auto t = totals();
  EXPECT_GT(t.passivations, 5u);
  EXPECT_GT(t.activations, 5u);
  std::lock_guard lock{seen_.mutex};
  EXPECT_EQ(seen_.max_live_per_key, 1);
}

TEST_F(EntityRuntime,
       messages_sent_while_an_entity_passivates_wake_it_in_order) {
  supervisor_options o;
  o.idle_timeout = 10ms;
  o.sweep_interval = 2ms;
  start(o);
  caf::scoped_actor self{*sys_};
  auto dest = router_->route_for("counter/burst");
  for (int burst = 0; burst < 20; ++burst) {
    for (int i = 0; i < 20; ++i)
      self->send(dest, route_atom::value, std::string{"counter/burst"},
                 caf::make_message(seq_atom::value, 0, burst * 20 + i));
    for (int i = 0; i < 20; ++i)
      self->receive([](int) {}, [](caf::error&) { ADD_FAILURE(); },
                    caf::after(10s) >> [] { ADD_FAILURE(); });
    std::this_thread::sleep_for(12ms);
  }
  std::lock_guard lock{seen_.mutex};
  auto& seq = seen_.sequence["counter/burst"];
  ASSERT_EQ(seq.size(), 400u);
  for (size_t i = 0; i < seq.size(); ++i)
    ASSERT_EQ(seq[i].second, static_cast<int>(i));
}

TEST_F(EntityRuntime, a_crashed_entity_comes_back_with_its_committed_state) {
  start();
  ASSERT_EQ(ask<int>("counter/fragile", caf::add_atom::value, 5).value(), 5);
  ASSERT_EQ(ask<int>("counter/steady", caf::add_atom::value, 1).value(), 1);
  auto crashed = ask<int>("counter/fragile", crash_atom::value);
  EXPECT_FALSE(crashed);
  // Its neighbour never noticed.
  EXPECT_EQ(ask<int>("counter/steady", caf::add_atom::value, 1).value(), 2);
  auto back = ask<int>("counter/fragile", caf::get_atom::value);
  ASSERT_TRUE(back) << sys_->render(back.error());
  EXPECT_EQ(*back, 5);
  EXPECT_EQ(totals().crashes, 1u);
  std::lock_guard lock{seen_.mutex};
  EXPECT_EQ(seen_.loads["counter/fragile"], 2);
  EXPECT_EQ(seen_.loads["counter/steady"], 1);
}

TEST_F(EntityRuntime,
       a_crash_loop_is_refused_for_a_while_without_harming_others) {
  supervisor_options o;
  o.crash_limit = 3;
  o.crash_backoff = 300ms;
  start(o);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(ask<int>("counter/loop", crash_atom::value));
    // The crash reply can overtake the supervisor's news of the crash; a
    // message sent in between would meet the dead actor, not a new one.
    for (int wait = 0; wait < 200 && totals().crashes < i + 1u; ++wait)
      std::this_thread::sleep_for(1ms);
  }
  auto refused = ask<int>("counter/loop", caf::get_atom::value);
  ASSERT_FALSE(refused);
  EXPECT_EQ(errc_of(refused.error()), errc::unavailable);
  EXPECT_EQ(ask<int>("counter/other", caf::add_atom::value, 1).value(), 1);
  std::this_thread::sleep_for(350ms);
  auto again = ask<int>("counter/loop", caf::get_atom::value);
  ASSERT_TRUE(again) << sys_->render(again.error());
  EXPECT_EQ(*again, 0);
}

TEST_F(EntityRuntime, the_least_recently_used_make_room_beyond_the_cap) {
  supervisor_options o;
  o.max_active = 10;
  start(o);
  for (int i = 0; i < 30; ++i)
    ASSERT_EQ(ask<int>("counter/k" + std::to_string(i), caf::add_atom::value, i)
                  .value(),
              i);
  auto t = totals();
  EXPECT_LE(t.active, 11u);
  EXPECT_GE(t.passivations, 19u);
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(
        ask<int>("counter/k" + std::to_string(i), caf::get_atom::value).value(),
        i);
}

TEST_F(EntityRuntime, a_busy_entity_is_not_passivated) {
  supervisor_options o;
  o.idle_timeout = 10ms;
  o.sweep_interval = 5ms;
  start(o);
  busy_ = true;
  ASSERT_TRUE(ask<int>("counter/busy", caf::get_atom::value));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(totals().active, 1u);
  busy_ = false;
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(totals().active, 0u);
}

TEST_F(EntityRuntime,
       dirty_state_is_saved_when_entities_passivate_at_shutdown) {
  start();
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(
        ask<int>("counter/lazy" + std::to_string(i), lazy_atom::value, 10 + i)
            .value(),
        10 + i);
  EXPECT_EQ(stored("counter/lazy0"), -1); // not written yet
  router_->stop(10s);
  router_.reset();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(stored("counter/lazy" + std::to_string(i)), 10 + i);
}

TEST_F(EntityRuntime,
       a_failed_load_answers_an_error_and_the_next_message_retries) {
  testing::execute(conninfo_, "ALTER TABLE counters RENAME TO counters_away");
  start();
  auto failed = ask<int>("counter/x", caf::get_atom::value);
  ASSERT_FALSE(failed);
  testing::execute(conninfo_, "ALTER TABLE counters_away RENAME TO counters");
  auto ok = ask<int>("counter/x", caf::get_atom::value);
  ASSERT_TRUE(ok) << sys_->render(ok.error());
  EXPECT_EQ(*ok, 0);
}

TEST_F(EntityRuntime,
       an_unexpected_message_gets_an_error_and_the_entity_lives_on) {
  start();
  ASSERT_EQ(ask<int>("counter/u", caf::add_atom::value, 3).value(), 3);
  auto wrong = ask<int>("counter/u", std::string{"what is this"});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(errc_of(wrong.error()), errc::invalid_input);
  EXPECT_EQ(ask<int>("counter/u", caf::get_atom::value).value(), 3);
  EXPECT_EQ(totals().crashes, 0u);
}

TEST_F(EntityRuntime, code_outside_actors_asks_through_a_callback) {
  start();
  std::promise<caf::expected<int>> answer;
  cluster::ask<int>(*router_, "counter/cb",
                    caf::make_message(caf::add_atom::value, 7), 5s,
                    [&](caf::expected<int> v) { answer.set_value(v); });
  auto v = answer.get_future().get();
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 7);

  std::promise<caf::expected<int>> unknown;
  cluster::ask<int>(*router_, "nokind/1",
                    caf::make_message(caf::get_atom::value), 5s,
                    [&](caf::expected<int> v) { unknown.set_value(v); });
  auto u = unknown.get_future().get();
  ASSERT_FALSE(u);
  EXPECT_EQ(errc_of(u.error()), errc::not_found);
}

TEST_F(EntityRuntime, the_router_asks_the_shard_map_on_every_send) {
  start();
  ASSERT_TRUE(router_->route_for("counter/moving"));
  std::vector<std::string> owners(1024, "test-node");
  owners[cluster::shard_of("counter/moving", 1024)] = "other-node";
  ASSERT_TRUE(map_->assign(owners, 2));
  EXPECT_FALSE(router_->route_for("counter/moving"));
  EXPECT_TRUE(router_->route_for("counter/staying"));
}

// The cluster's rules on one node: every shard leased, then one moved away
// or lost.
class EntityHandOff : public EntityRuntime {
protected:
  void start_leased() {
    map_ = std::make_unique<cluster::shard_map>(1024, "test-node");
    map_->require_leases();
    lease_all_but({});
    supervisor_options o;
    o.rules = cluster::ownership_rules_of(*map_);
    start(o);
  }
  void lease_all_but(std::vector<std::uint32_t> except) {
    std::vector<cluster::shard_map::lease> leases;
    for (std::uint32_t s = 0; s < 1024; ++s)
      if (std::find(except.begin(), except.end(), s) == except.end())
        leases.push_back({s, 1, 1, std::chrono::steady_clock::now() + 1h});
    map_->set_leases(leases);
  }
  void move_away(const std::string& key) {
    std::vector<std::string> owners(1024, "test-node");
    owners[cluster::shard_of(key, 1024)] = "other-node";
    ASSERT_TRUE(map_->assign(owners, map_->epoch() + 1));
  }
  // A message straight to the supervisor, as from a sender whose route
  // was resolved before the shard moved.
  caf::expected<int> ask_supervisor(const std::string& key) {
    caf::scoped_actor self{*sys_};
    caf::expected<int> out = caf::sec::request_timeout;
    self->request(supervisor_, 5s, route_atom::value, key,
                  caf::make_message(caf::get_atom::value))
        .receive([&](int x) { out = x; }, [&](caf::error& e) { out = e; });
    return out;
  }
  bool hand_off() {
    std::promise<bool> done;
    std::vector<std::uint32_t> all(1024);
    std::iota(all.begin(), all.end(), 0u);
    router_->hand_off(all, 5s, [&](bool ok) { done.set_value(ok); });
    return done.get_future().get();
  }
};

TEST_F(EntityHandOff, a_hand_off_saves_and_stops_only_the_moved_entities) {
  start_leased();
  ASSERT_EQ(ask<int>("counter/moving", lazy_atom::value, 5).value(), 5);
  ASSERT_EQ(ask<int>("counter/staying", lazy_atom::value, 6).value(), 6);
  ASSERT_NE(cluster::shard_of("counter/moving", 1024),
            cluster::shard_of("counter/staying", 1024));
  move_away("counter/moving");
  // Until the hand-off, the active entity goes on serving under its lease.
  EXPECT_EQ(ask_supervisor("counter/moving").value(), 5);
  EXPECT_TRUE(hand_off());
  EXPECT_EQ(stored("counter/moving"), 5);   // saved on the way out
  EXPECT_EQ(stored("counter/staying"), -1); // untouched, still active
  EXPECT_EQ(totals().active, 1u);
}

TEST_F(EntityHandOff, a_moved_key_is_never_activated_again_on_the_old_owner) {
  start_leased();
  move_away("counter/gone");
  auto r = ask_supervisor("counter/gone");
  ASSERT_FALSE(r); // no node router here to pass it on to
  EXPECT_EQ(errc_of(r.error()), errc::unavailable);
  std::lock_guard lock{seen_.mutex};
  EXPECT_EQ(seen_.loads["counter/gone"], 0);
}

TEST_F(EntityHandOff, an_entity_whose_lease_is_lost_stops_without_saving) {
  start_leased();
  ASSERT_EQ(ask<int>("counter/lost", lazy_atom::value, 7).value(), 7);
  lease_all_but({cluster::shard_of("counter/lost", 1024)});
  router_->drop_unserved();
  for (int i = 0; i < 200 && totals().active > 0; ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(totals().active, 0u);
  // Its next owner must load the committed state, not this node's memory.
  EXPECT_EQ(stored("counter/lost"), -1);
  EXPECT_FALSE(ask_supervisor("counter/lost"));
}

TEST_F(EntityHandOff,
       database_work_still_queued_when_its_entity_is_dropped_runs_safely) {
  start_leased();
  std::promise<void> open;
  seen_.gate = open.get_future().share();
  ASSERT_EQ(ask<int>("counter/late", late_atom::value).value(), 0);
  seen_.work_started.get_future().wait();
  // The lease goes while the work waits: the entity is stopped and its
  // actor gone, but the work still holds on to the logic.
  lease_all_but({cluster::shard_of("counter/late", 1024)});
  router_->drop_unserved();
  for (int i = 0; i < 200 && totals().active > 0; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(totals().active, 0u);
  open.set_value();
  auto seen = seen_.fence_seen.get_future();
  ASSERT_EQ(seen.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(seen.get(), "lease lost");
}

TEST_F(EntityHandOff, fences_carry_the_lease_and_fail_without_it) {
  start_leased();
  auto rules = cluster::ownership_rules_of(*map_);
  auto token = rules->fence("counter/f");
  ASSERT_TRUE(token);
  EXPECT_EQ(token->shard, cluster::shard_of("counter/f", 1024));
  EXPECT_EQ(token->node_id, "test-node");
  lease_all_but({cluster::shard_of("counter/f", 1024)});
  EXPECT_THROW(rules->fence("counter/f"), lease_lost);
}

TEST_F(EntityRuntime, activations_and_active_entities_are_in_the_metrics) {
  start();
  ask<int>("counter/m1", caf::get_atom::value);
  ask<int>("counter/m2", caf::get_atom::value);
  auto text = metrics_.render();
  EXPECT_NE(text.find("karvon_entities_active{kind=\"counter\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("karvon_entity_activations_total{kind=\"counter\"} 2"),
            std::string::npos);
}

TEST(EntityMessages, a_routed_message_survives_the_binary_serializer) {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  auto original = caf::make_message(
      route_atom::value, std::string{"user/tg:shopbot:5123"},
      caf::make_message(caf::add_atom::value, 5, std::string{"ўзбек"}));
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  auto err = sink(original);
  ASSERT_FALSE(err) << sys.render(err);
  caf::binary_deserializer source{sys, buf};
  caf::message copy;
  err = source(copy);
  ASSERT_FALSE(err) << sys.render(err);
  EXPECT_EQ(caf::to_string(copy), caf::to_string(original));
  auto inner = copy.get_as<caf::message>(2);
  EXPECT_EQ(inner.get_as<std::string>(2), "ўзбек");
}

TEST(EntityMessages,
     karvon_errors_keep_their_code_and_message_across_the_wire) {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  auto original = make_error(errc::overloaded, "queue full");
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  ASSERT_FALSE(sink(original));
  caf::binary_deserializer source{sys, buf};
  caf::error copy;
  ASSERT_FALSE(source(copy));
  EXPECT_EQ(errc_of(copy), errc::overloaded);
  EXPECT_EQ(message_of(copy), "queue full");
  EXPECT_EQ(sys.render(copy), "karvon.overloaded: queue full");
}

TEST(EntityMessages, chat_asks_and_replies_survive_the_binary_serializer) {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  add_chat_message_types(cfg);
  caf::actor_system sys{cfg};
  chat_reply reply{"s1", "Доставка бесплатная.",
                   "ru", "kb",
                   0.5,  {{7, "Доставка", 3.25}, {9, "Оплата", 1.5}}};
  auto original = caf::make_message(
      ask_atom::value, chat_request{"доставка?", "s1", "ru"}, reply);
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  ASSERT_FALSE(sink(original));
  caf::binary_deserializer source{sys, buf};
  caf::message copy;
  ASSERT_FALSE(source(copy));
  auto& r = copy.get_as<chat_reply>(2);
  EXPECT_EQ(r.answer, "Доставка бесплатная.");
  ASSERT_EQ(r.sources.size(), 2u);
  EXPECT_EQ(r.sources[1].document_id, 9);
  EXPECT_EQ(r.sources[1].title, "Оплата");
  EXPECT_EQ(copy.get_as<chat_request>(1).question, "доставка?");
}

TEST(EntityKeys, keys_have_a_kind_and_an_id) {
  EXPECT_EQ(kind_of("user/tg:shopbot:5123"), "user");
  EXPECT_EQ(kind_of("partner/acme"), "partner");
  EXPECT_EQ(kind_of("nokind"), "");
  EXPECT_TRUE(valid_entity_key("channel/tg:shopbot:-100123"));
  EXPECT_FALSE(valid_entity_key("user/"));
  EXPECT_FALSE(valid_entity_key("/x"));
  EXPECT_FALSE(valid_entity_key("User/x"));
  EXPECT_FALSE(valid_entity_key("user/a b"));
}

} // namespace
} // namespace karvon::actors
