// Two nodes in one process, each with its own actor system and middleman,
// talking BASP over loopback: a send for a shard the other node owns
// reaches that node's entity, and its reply comes back.
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <gtest/gtest.h>

#include "actors/entity.hpp"
#include "actors/errors.hpp"
#include "actors/messages.hpp"
#include "actors/supervisor.hpp"
#include "cluster/router.hpp"
#include "cluster/shard.hpp"
#include "cluster/shard_map.hpp"
#include "cluster/transport.hpp"
#include "persistence/db_pool.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::cluster {
namespace {

using namespace std::chrono_literals;

// Answers (get) with the name of the node it lives on.
class where_logic final : public actors::entity_logic {
public:
  explicit where_logic(std::string node) : node_(std::move(node)) {}
  void load(pqxx::connection_base&, const std::string&) override {}
  caf::message_handler handlers(caf::event_based_actor*) override {
    return {[this](caf::get_atom) { return node_; }};
  }

private:
  std::string node_;
};

struct test_node {
  test_node(const std::string& name, persistence::db_pool& pool) {
    cfg.set("scheduler.max-threads", 2);
    cfg.load<caf::io::middleman>();
    actors::add_message_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    map = std::make_unique<shard_map>(64, name);
    r = std::make_unique<router>(*sys, *map);
    r->add_kind("where", actors::spawn_supervisor(
                             *sys,
                             {"where",
                              [name](const std::string&) {
                                return std::make_unique<where_logic>(name);
                              }},
                             {}, pool, nullptr));
    node_router_options o;
    o.max_wait = 1s; // messages without a route wait this long
    t = std::make_unique<transport>(*sys, *r, o);
    port = t->start("127.0.0.1", 0);
  }
  ~test_node() {
    t->stop();
    r->stop(5s);
    t.reset();
    r.reset();
    sys.reset();
  }

  caf::expected<std::string> ask(const std::string& key) {
    caf::scoped_actor self{*sys};
    caf::expected<std::string> out = caf::sec::request_timeout;
    auto dest = r->route_for(key);
    if (!dest)
      return actors::make_error(actors::errc::unavailable, "no route");
    self->request(dest, 5s, actors::route_atom::value, key,
                  caf::make_message(caf::get_atom::value))
        .receive([&](std::string& x) { out = x; },
                 [&](caf::error& e) { out = e; });
    return out;
  }

  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<shard_map> map;
  std::unique_ptr<router> r;
  std::unique_ptr<transport> t;
  std::uint16_t port = 0;
};

// Half the shards to each node, by shard number.
std::vector<std::string> split(std::uint32_t shards) {
  std::vector<std::string> owners;
  for (std::uint32_t s = 0; s < shards; ++s)
    owners.push_back(s % 2 == 0 ? "a" : "b");
  return owners;
}

// A key of the given kind whose shard is owned by `owner` under split().
std::string key_on(const std::string& owner, int n = 0) {
  for (int i = 0;; ++i) {
    auto key = "where/" + std::to_string(i);
    if ((shard_of(key, 64) % 2 == 0) == (owner == "a") && n-- == 0)
      return key;
  }
}

class Transport : public ::testing::Test {
protected:
  Transport() {
    pool = std::make_unique<persistence::db_pool>(
        persistence::pool_options{testing::fresh_database(), 2, 1000, {}},
        nullptr);
    a = std::make_unique<test_node>("a", *pool);
    b = std::make_unique<test_node>("b", *pool);
    a->map->assign(split(64), 2);
    b->map->assign(split(64), 2);
  }
  ~Transport() override {
    a.reset();
    b.reset();
    pool.reset();
  }

  void connect_both() {
    a->t->connect("b", "127.0.0.1:" + std::to_string(b->port));
    b->t->connect("a", "127.0.0.1:" + std::to_string(a->port));
    for (int i = 0; i < 500; ++i) {
      if (a->r->lookup(key_on("b")).target && b->r->lookup(key_on("a")).target)
        return;
      std::this_thread::sleep_for(10ms);
    }
    FAIL() << "the nodes did not connect";
  }

  std::unique_ptr<persistence::db_pool> pool;
  std::unique_ptr<test_node> a, b;
};

TEST_F(Transport, a_key_owned_by_the_other_node_is_served_there) {
  connect_both();
  for (int n = 0; n < 5; ++n) {
    auto there = a->ask(key_on("b", n));
    ASSERT_TRUE(there) << a->sys->render(there.error());
    EXPECT_EQ(*there, "b");
    auto here = a->ask(key_on("a", n));
    ASSERT_TRUE(here);
    EXPECT_EQ(*here, "a");
  }
}

TEST_F(Transport, without_a_connection_messages_wait_then_fail_unavailable) {
  EXPECT_FALSE(a->r->lookup(key_on("b")).target);
  // Senders go to the node router, which holds the message for a while.
  EXPECT_EQ(a->r->route_for(key_on("b")), a->t->node_router());
  EXPECT_TRUE(a->r->lookup(key_on("a")).target);
  auto started = std::chrono::steady_clock::now();
  auto reply = a->ask(key_on("b"));
  ASSERT_FALSE(reply);
  EXPECT_EQ(actors::to_failure(reply.error()).code, actors::errc::unavailable);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 900ms);
}

TEST_F(Transport, a_message_waiting_for_a_connection_is_delivered_once_it_is) {
  caf::expected<std::string> reply = caf::sec::request_timeout;
  std::thread asking{[&] { reply = a->ask(key_on("b")); }};
  std::this_thread::sleep_for(200ms);
  connect_both();
  asking.join();
  ASSERT_TRUE(reply) << a->sys->render(reply.error());
  EXPECT_EQ(*reply, "b");
}

TEST_F(Transport, a_lost_connection_is_forgotten_so_messages_wait_again) {
  connect_both();
  auto key = key_on("b");
  ASSERT_TRUE(a->r->lookup(key).target);
  b.reset(); // the node stops; its connection drops
  for (int i = 0; i < 500 && a->r->lookup(key).target; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(a->r->lookup(key).target);
}

TEST_F(Transport,
       a_message_reaching_a_node_that_no_longer_owns_its_key_is_forwarded) {
  connect_both();
  auto key = key_on("b");
  // A sender picked b's router; then the shard moved to a, and both maps
  // say so before the message lands.
  auto stale = a->r->route_for(key);
  ASSERT_TRUE(stale);
  auto moved = split(64);
  moved[shard_of(key, 64)] = "a";
  a->map->assign(moved, 3);
  b->map->assign(moved, 3);
  caf::scoped_actor self{*a->sys};
  caf::expected<std::string> reply = caf::sec::request_timeout;
  self->request(stale, 5s, actors::route_atom::value, key,
                caf::make_message(caf::get_atom::value))
      .receive([&](std::string& x) { reply = x; },
               [&](caf::error& e) { reply = e; });
  ASSERT_TRUE(reply) << a->sys->render(reply.error());
  EXPECT_EQ(*reply, "a"); // b forwarded it to the new owner
}

TEST_F(Transport, maps_that_disagree_for_good_end_in_an_error_not_a_loop) {
  connect_both();
  auto key = key_on("b");
  auto to_a = split(64), to_b = split(64);
  to_a[shard_of(key, 64)] = "a";
  to_b[shard_of(key, 64)] = "b";
  // Each thinks the other owns it.
  a->map->assign(to_b, 3);
  b->map->assign(to_a, 3);
  auto reply = a->ask(key);
  ASSERT_FALSE(reply);
  EXPECT_EQ(actors::errc_of(reply.error()), actors::errc::unavailable);
}

} // namespace
} // namespace karvon::cluster
