#include "cluster/member.hpp"

#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "cluster/membership.hpp"
#include "cluster/operations.hpp"
#include "cluster/router.hpp"
#include "cluster/shard_map.hpp"
#include "cluster/transport.hpp"
#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::cluster {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The membership loop as seen from CAF threads (hand-offs finishing, peers
// saying they released shards): they may run while the member goes away,
// so they reach the loop only through this.
struct loop_slot {
  std::mutex mutex;
  std::weak_ptr<membership> loop;
  std::shared_ptr<membership> get() {
    std::lock_guard lock{mutex};
    return loop.lock();
  }
};

struct member::impl {
  caf::actor_system* sys;
  shard_map* map;
  router* r;
  member_options options;
  metrics::registry* metrics;
  std::uint16_t port = 0;
  bool left = false;

  std::unique_ptr<transport> net;
  // The membership loop has a pool of its own, so that a queue of entity
  // writes never delays its heartbeats.
  std::unique_ptr<persistence::db_pool> pool;
  std::shared_ptr<membership> loop;
  std::shared_ptr<loop_slot> slot = std::make_shared<loop_slot>();
  std::unique_ptr<operations> operator_view;

  // The membership thread's own.
  std::set<std::uint32_t> held_before;
  std::vector<std::string> owners_before;

  metrics::counter* moves = nullptr;
  metrics::gauge* epoch_gauge = nullptr;
  metrics::family<metrics::gauge>* nodes_gauge = nullptr;

  void on_assignment(std::uint64_t epoch, std::vector<std::string> owners) {
    std::size_t moved = 0, mine = 0;
    for (std::size_t s = 0; s < owners.size(); ++s) {
      if (s < owners_before.size() && owners_before[s] != owners[s])
        ++moved;
      if (owners[s] == map->local_node())
        ++mine;
    }
    if (moves)
      moves->inc(moved);
    if (epoch_gauge)
      epoch_gauge->set(static_cast<double>(epoch));
    owners_before = owners;
    map->assign(std::move(owners), epoch);
    spdlog::info("cluster: epoch {}: this node owns {} shards ({} moved)",
                 epoch, mine, moved);
  }

  void on_leases(std::vector<held_lease> leases) {
    std::vector<shard_map::lease> out;
    std::set<std::uint32_t> now;
    for (auto& l : leases) {
      out.push_back({l.shard, l.incarnation, l.epoch, l.serve_until});
      now.insert(l.shard);
    }
    map->set_leases(out);
    bool lost = false;
    for (auto s : held_before)
      lost = lost || !now.count(s);
    held_before = std::move(now);
    // Entities of a lost shard stop without saving: the database would
    // refuse their writes now anyway.
    if (lost)
      r->drop_unserved();
  }

  void on_revoke(std::uint64_t epoch, std::vector<std::uint32_t> moving) {
    spdlog::info("cluster: epoch {}: handing off {} shards", epoch,
                 moving.size());
    hand_off_from(
        r, slot,
        std::make_shared<std::vector<std::uint32_t>>(std::move(moving)), 0);
  }

  // Hands the shards off in batches, one after the other, each released as
  // soon as its entities have stopped: the new owner serves the first
  // shards while the entities of the last still save. `r` outlives the
  // member; the loop is reached through `slot`.
  static void hand_off_from(router* r, std::shared_ptr<loop_slot> slot,
                            std::shared_ptr<std::vector<std::uint32_t>> moving,
                            std::size_t from) {
    constexpr std::size_t batch = 16;
    if (from >= moving->size())
      return;
    auto to = std::min(moving->size(), from + batch);
    std::vector<std::uint32_t> part(
        moving->begin() + static_cast<std::ptrdiff_t>(from),
        moving->begin() + static_cast<std::ptrdiff_t>(to));
    r->hand_off(part, std::chrono::seconds{25},
                [r, slot, part, moving, to](bool all) mutable {
                  if (!all)
                    spdlog::warn("cluster: some entities did not stop in "
                                 "time for a hand-off");
                  auto m = slot->get();
                  if (!m)
                    return; // the member is going away
                  m->release(std::move(part));
                  hand_off_from(r, slot, moving, to);
                });
  }

  // Tells the new owners, so they take the leases now rather than at their
  // next heartbeat.
  void on_released(const std::vector<std::uint32_t>& released) {
    std::set<std::string> owners;
    for (auto s : released)
      owners.insert(map->owner(s));
    for (auto& o : owners)
      if (o != map->local_node())
        if (auto peer = r->peer(o))
          caf::anon_send(peer, actors::released_atom::value);
  }

  void on_view(const persistence::cluster_view& v) {
    std::map<std::string, int> by_state{
        {"joining", 0}, {"active", 0}, {"draining", 0}, {"dead", 0}};
    for (auto& n : v.nodes) {
      ++by_state[persistence::to_string(n.state)];
      if (n.node_id == map->local_node())
        continue;
      if (n.state == persistence::node_state::dead)
        net->disconnect(n.node_id);
      else
        net->connect(n.node_id, n.cluster_address, n.incarnation);
    }
    if (nodes_gauge)
      for (auto& [state, n] : by_state)
        nodes_gauge->with({state}).set(n);
  }

  void on_declared_dead(persistence::heartbeat_result::status why) {
    if (why == persistence::heartbeat_result::status::replaced) {
      spdlog::critical("cluster: another process registered node id {}; "
                       "this one stops serving",
                       options.node_id);
      if (options.on_replaced)
        options.on_replaced();
    } else {
      spdlog::error("cluster: this node was declared dead (too long without "
                    "a heartbeat); it dropped its entities and rejoins as a "
                    "new incarnation");
    }
  }
};

member::member(caf::actor_system& sys, shard_map& map, router& r,
               member_options options, metrics::registry* metrics)
    : impl_(std::make_unique<impl>()) {
  impl_->sys = &sys;
  impl_->map = &map;
  impl_->r = &r;
  impl_->options = std::move(options);
  impl_->metrics = metrics;
}

member::~member() {
  {
    std::lock_guard lock{impl_->slot->mutex};
    impl_->slot->loop.reset();
  }
  impl_->loop.reset(); // ends the loop without leaving
  if (impl_->net)
    impl_->net->stop();
  if (impl_->pool)
    impl_->pool->stop();
  impl_->operator_view.reset();
  impl_->net.reset();
}

void member::start() {
  auto& i = *impl_;
  auto& o = i.options;
  node_router_options nro;
  // A message waits this long for its shard to move before the sender
  // hears "retry"; a hand-off takes a heartbeat or two.
  nro.max_wait = std::max(milliseconds{5000}, 4 * o.heartbeat);
  nro.on_released = [slot = i.slot] {
    if (auto m = slot->get())
      m->poke();
  };
  nro.metrics = i.metrics;
  i.net = std::make_unique<transport>(*i.sys, *i.r, std::move(nro));
  i.port = i.net->start(o.listen_host, o.listen_port);
  spdlog::info("cluster: listening on {}:{}", o.listen_host, i.port);

  if (auto* m = i.metrics) {
    i.moves
        = &m->counters("karvon_cluster_shard_moves_total",
                       "Shards whose owner changed, as seen by this node.", {})
               .with({});
    i.epoch_gauge
        = &m->gauges("karvon_cluster_epoch", "The cluster's epoch.", {})
               .with({});
    i.nodes_gauge = &m->gauges("karvon_cluster_nodes",
                               "Nodes in the cluster, by state.", {"state"});
    auto* map = i.map;
    m->callback_gauge("karvon_cluster_shards_held",
                      "Shards this node holds a lease on and serves.", [map] {
                        return static_cast<double>(map->held_shards().size());
                      });
  }

  // A lock held by a stopped process (SIGSTOP inside a transaction) would
  // stall the loop; its statements give up after a heartbeat instead and
  // are tried again at the next tick.
  persistence::pool_options po{o.conninfo, 2, 100, {}};
  po.session = {{"lock_timeout",
                 std::to_string(std::max<long>(100, o.heartbeat.count()))}};
  i.pool = std::make_unique<persistence::db_pool>(po, nullptr);
  membership_options mo;
  mo.node_id = o.node_id;
  mo.http_address = o.http_address;
  mo.cluster_address = o.listen_host + ":" + std::to_string(i.port);
  mo.shards = i.map->shards();
  mo.heartbeat = o.heartbeat;
  mo.failure_timeout = o.failure_timeout;
  mo.lease = o.lease;
  mo.handoff_timeout = std::chrono::seconds{30};
  membership_callbacks cb;
  cb.on_assignment = [&i](std::uint64_t e, std::vector<std::string> owners) {
    i.on_assignment(e, std::move(owners));
  };
  cb.on_leases = [&i](std::vector<held_lease> l) { i.on_leases(std::move(l)); };
  cb.on_revoke = [&i](std::uint64_t e, std::vector<std::uint32_t> s) {
    i.on_revoke(e, std::move(s));
  };
  cb.on_released = [&i](std::vector<std::uint32_t> s) { i.on_released(s); };
  cb.on_view = [&i](const persistence::cluster_view& v) { i.on_view(v); };
  cb.on_declared_dead = [&i](persistence::heartbeat_result::status why) {
    i.on_declared_dead(why);
  };
  i.loop = std::make_shared<membership>(*i.pool, mo, std::move(cb));
  {
    std::lock_guard lock{i.slot->mutex};
    i.slot->loop = i.loop;
  }
  i.loop->start();

  // A member once registered and active at some epoch; shards follow at
  // once on a fresh cluster, or as their old owners hand them over.
  auto deadline = steady::now() + o.join_timeout;
  while (i.loop->epoch() == 0 || i.loop->incarnation() == 0) {
    if (steady::now() > deadline)
      throw std::runtime_error("could not join the cluster within "
                               + std::to_string(o.join_timeout.count())
                               + " ms (see the membership warnings above)");
    std::this_thread::sleep_for(milliseconds{5});
  }
  auto leases_by = steady::now() + 2 * o.heartbeat;
  while (i.loop->leases().empty() && steady::now() < leases_by)
    std::this_thread::sleep_for(milliseconds{5});
  spdlog::info("cluster: node {} joined as incarnation {} at epoch {}, "
               "holding {} shards",
               o.node_id, i.loop->incarnation(), i.loop->epoch(),
               i.loop->leases().size());
  i.operator_view = std::make_unique<operations>(
      *i.pool, *i.r, i.net->node_router(), o.node_id, [slot = i.slot] {
        if (auto m = slot->get())
          m->poke();
      });
}

void member::leave() {
  auto& i = *impl_;
  if (i.left || !i.loop)
    return;
  i.left = true;
  if (i.loop->incarnation() != 0) {
    i.loop->drain();
    auto deadline = steady::now() + i.options.drain_timeout;
    while (!i.loop->leases().empty() && steady::now() < deadline)
      std::this_thread::sleep_for(milliseconds{5});
    if (!i.loop->leases().empty())
      spdlog::warn("cluster: {} shards were not handed off within {} ms",
                   i.loop->leases().size(), i.options.drain_timeout.count());
  }
  i.loop->stop();
  i.net->stop();
}

std::uint16_t member::port() const {
  return impl_->port;
}

std::int64_t member::incarnation() const {
  return impl_->loop ? impl_->loop->incarnation() : 0;
}

std::uint32_t member::shards_owned() const {
  std::uint32_t n = 0;
  for (std::uint32_t s = 0; s < impl_->map->shards(); ++s)
    n += impl_->map->owner(s) == impl_->map->local_node() ? 1 : 0;
  return n;
}

std::uint32_t member::shards_held() const {
  return static_cast<std::uint32_t>(impl_->map->held_shards().size());
}

operations& member::ops() {
  return *impl_->operator_view;
}

} // namespace karvon::cluster
