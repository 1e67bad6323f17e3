#include "cluster/router.hpp"

#include <map>
#include <mutex>
#include <shared_mutex>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/entity.hpp"
#include "actors/messages.hpp"
#include "cluster/shard.hpp"
#include "cluster/shard_map.hpp"
#include "metrics/registry.hpp"

namespace karvon::cluster {

struct router::impl {
  caf::actor_system* sys;
  const shard_map* map;
  std::map<std::string, caf::actor, std::less<>> supervisors;
  caf::actor fallback;
  metrics::counter* forwarded = nullptr;
  mutable std::shared_mutex peers_mutex;
  std::map<std::string, caf::actor, std::less<>> peers;
};

router::router(caf::actor_system& sys, const shard_map& map)
    : impl_(std::make_unique<impl>()) {
  impl_->sys = &sys;
  impl_->map = &map;
}

router::~router() {
  for (auto& [kind, sup] : impl_->supervisors)
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
}

void router::add_kind(const std::string& kind, caf::actor supervisor) {
  impl_->supervisors[kind] = std::move(supervisor);
}

router::route router::resolve(std::string_view key) const {
  auto r = lookup(key);
  if (r.target && !r.local && impl_->forwarded)
    impl_->forwarded->inc();
  if (!r.target && impl_->fallback && knows_kind(actors::kind_of(key)))
    r.target = impl_->fallback;
  return r;
}

void router::count_forwards(metrics::registry& metrics) {
  impl_->forwarded = &metrics
                          .counters("karvon_forwarded_messages_total",
                                    "Entity messages this node passed on to "
                                    "the node serving their key.",
                                    {})
                          .with({});
}

void router::set_fallback(caf::actor node_router) {
  impl_->fallback = std::move(node_router);
}

std::uint64_t router::epoch() const {
  return impl_->map->epoch();
}

caf::actor router::peer(const std::string& node_id) const {
  std::shared_lock lock{impl_->peers_mutex};
  auto it = impl_->peers.find(node_id);
  return it == impl_->peers.end() ? caf::actor{} : it->second;
}

std::vector<caf::actor> router::supervisors() const {
  std::vector<caf::actor> out;
  for (auto& [kind, sup] : impl_->supervisors)
    out.push_back(sup);
  return out;
}

void router::drop_unserved() const {
  for (auto& [kind, sup] : impl_->supervisors)
    caf::anon_send(sup, actors::drop_atom::value);
}

void router::hand_off(std::vector<std::uint32_t> shards,
                      std::chrono::milliseconds timeout,
                      std::function<void(bool)> done) const {
  auto sups = supervisors();
  if (sups.empty()) {
    done(true);
    return;
  }
  struct round {
    std::size_t pending;
    bool ok = true;
    std::function<void(bool)> done;
  };
  auto r = std::make_shared<round>();
  r->pending = sups.size();
  r->done = std::move(done);
  impl_->sys->spawn(
      [](caf::event_based_actor* self, std::shared_ptr<round> r,
         std::vector<caf::actor> sups, std::vector<std::uint32_t> shards,
         std::chrono::milliseconds timeout) {
        auto one = [r](bool ok) {
          r->ok = r->ok && ok;
          if (--r->pending == 0)
            r->done(r->ok);
        };
        for (auto& sup : sups)
          self->request(sup, timeout, actors::passivate_atom::value,
                        actors::moved_atom::value, shards)
              .then([one](bool ok) { one(ok); },
                    [one](caf::error&) { one(false); });
      },
      r, std::move(sups), std::move(shards), timeout);
}

router::route router::lookup(std::string_view key) const {
  auto it = impl_->supervisors.find(actors::kind_of(key));
  if (it == impl_->supervisors.end())
    return {};
  // The map decides on every send, so that moving a shard is only a change
  // of the map.
  if (impl_->map->owns_key(key))
    return {it->second, true};
  auto owner = impl_->map->owner(shard_of(key, impl_->map->shards()));
  if (owner == impl_->map->local_node())
    return {}; // ours, but the lease is not (yet, or any more)
  std::shared_lock lock{impl_->peers_mutex};
  auto peer = impl_->peers.find(owner);
  if (peer == impl_->peers.end())
    return {};
  return {peer->second, false};
}

caf::actor router::route_for(std::string_view key) const {
  return resolve(key).target;
}

void router::set_peer(const std::string& node_id, caf::actor node_router) {
  std::unique_lock lock{impl_->peers_mutex};
  if (node_router)
    impl_->peers[node_id] = std::move(node_router);
  else
    impl_->peers.erase(node_id);
}

bool router::knows_kind(std::string_view kind) const {
  return impl_->supervisors.count(kind) > 0;
}

caf::actor_system& router::system() const {
  return *impl_->sys;
}

void router::stop(std::chrono::milliseconds timeout) {
  caf::scoped_actor self{*impl_->sys};
  for (auto& [kind, sup] : impl_->supervisors) {
    self->request(sup, timeout, actors::passivate_atom::value)
        .receive(
            [&](bool) { spdlog::info("passivated every {} entity", kind); },
            [&](const caf::error& err) {
              spdlog::error("passivating {} entities: {}", kind,
                            impl_->sys->render(err));
            });
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  }
  impl_->supervisors.clear();
}

router::totals router::stats(std::chrono::milliseconds timeout) const {
  totals t;
  caf::scoped_actor self{*impl_->sys};
  for (auto& [kind, sup] : impl_->supervisors)
    self->request(sup, timeout, actors::stats_atom::value)
        .receive(
            [&](std::uint64_t active, std::uint64_t activations,
                std::uint64_t passivations, std::uint64_t crashes) {
              t.active += active;
              t.activations += activations;
              t.passivations += passivations;
              t.crashes += crashes;
            },
            [](const caf::error&) {});
  return t;
}

void router::ping(std::chrono::milliseconds timeout,
                  std::function<void(caf::expected<totals>)> done) const {
  std::vector<caf::actor> supervisors;
  for (auto& [kind, sup] : impl_->supervisors)
    supervisors.push_back(sup);
  if (supervisors.empty()) {
    done(totals{});
    return;
  }
  struct round {
    totals sum;
    std::size_t pending;
    bool answered = false;
    std::function<void(caf::expected<totals>)> done;
  };
  auto r = std::make_shared<round>();
  r->pending = supervisors.size();
  r->done = std::move(done);
  // State as spawn arguments: CAF 0.17 dereferences a null tuple when a
  // lambda actor is spawned with none.
  impl_->sys->spawn(
      [](caf::event_based_actor* self, std::shared_ptr<round> r,
         std::vector<caf::actor> supervisors,
         std::chrono::milliseconds timeout) {
        for (auto& sup : supervisors)
          self->request(sup, timeout, actors::stats_atom::value)
              .then(
                  [r](std::uint64_t active, std::uint64_t activations,
                      std::uint64_t passivations, std::uint64_t crashes) {
                    r->sum.active += active;
                    r->sum.activations += activations;
                    r->sum.passivations += passivations;
                    r->sum.crashes += crashes;
                    if (--r->pending == 0 && !r->answered) {
                      r->answered = true;
                      r->done(r->sum);
                    }
                  },
                  [r](caf::error& err) {
                    if (!r->answered) {
                      r->answered = true;
                      r->done(std::move(err));
                    }
                  });
      },
      r, std::move(supervisors), timeout);
}

} // namespace karvon::cluster
