#include "cluster/transport.hpp"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/entity.hpp"
#include "actors/errors.hpp"
#include "actors/messages.hpp"
#include "cluster/router.hpp"
#include "config/settings.hpp"
#include "metrics/registry.hpp"

namespace karvon::cluster {

namespace {

using steady = std::chrono::steady_clock;

/// Node router to itself: look again for routes of waiting messages.
using retry_atom = caf::atom_constant<caf::atom("kretry")>;

constexpr std::chrono::milliseconds retry_interval{20};

// How long a message that bounced max_hops times waits before each further
// hop: about the time the nodes' maps take to agree again.
constexpr std::chrono::milliseconds bounce_pause{250};

struct waiting_message {
  caf::response_promise rp;
  std::string key;
  caf::message msg;
  int hops = 0;
  steady::time_point deadline;
  /// A message that bounced max_hops times waits at least until then
  /// before it is forwarded again.
  steady::time_point not_before;
};

struct node_router_state {
  const router* r = nullptr;
  node_router_options options;
  std::deque<waiting_message> waiting;
  bool retry_scheduled = false;
  metrics::counter* forwarded = nullptr;
  metrics::gauge* waiting_gauge = nullptr;
  metrics::counter* delayed = nullptr;
  static inline const char* name = "karvon.node_router";
};

using node_router_actor = caf::stateful_actor<node_router_state>;

enum class outcome { done, wait };

// Sends the message on if some node serves the key now; `wait` otherwise.
outcome try_route(node_router_actor* self, caf::response_promise& rp,
                  const std::string& key, caf::message& msg, int hops,
                  bool may_bounce = false) {
  auto& st = self->state;
  auto where = st.r->lookup(key);
  if (!where.target) {
    if (!st.r->knows_kind(actors::kind_of(key))) {
      rp.deliver(actors::make_error(actors::errc::not_found,
                                    "no entity kind for " + key));
      return outcome::done;
    }
    return outcome::wait;
  }
  if (where.local) {
    rp.delegate(where.target, actors::route_atom::value, key, std::move(msg));
  } else if (hops >= 4 * st.options.max_hops) {
    // Maps that disagree for good: refused instead of circling.
    rp.deliver(actors::make_error(actors::errc::unavailable,
                                  key + " is moving; retry"));
  } else if (hops >= st.options.max_hops && !may_bounce) {
    // Nodes disagree while a shard moves (one has seen the new epoch, the
    // other not yet): the message waits a while for the maps to agree
    // instead of bouncing between them.
    return outcome::wait;
  } else {
    if (st.forwarded)
      st.forwarded->inc();
    rp.delegate(where.target, actors::forward_atom::value, key, std::move(msg),
                hops + 1);
  }
  return outcome::done;
}

void schedule_retry(node_router_actor* self) {
  auto& st = self->state;
  if (st.waiting_gauge)
    st.waiting_gauge->set(static_cast<double>(st.waiting.size()));
  if (st.retry_scheduled || st.waiting.empty())
    return;
  st.retry_scheduled = true;
  self->delayed_send(self, retry_interval, retry_atom::value);
}

caf::result<caf::message> route(node_router_actor* self, const std::string& key,
                                caf::message& msg, int hops) {
  auto& st = self->state;
  auto rp = self->make_response_promise();
  if (try_route(self, rp, key, msg, hops) == outcome::wait) {
    if (st.waiting.size() >= st.options.max_waiting)
      return actors::make_error(actors::errc::overloaded,
                                "too many messages wait for a shard to move");
    if (st.delayed)
      st.delayed->inc();
    auto now = steady::now();
    st.waiting.push_back({rp, key, std::move(msg), hops,
                          now + st.options.max_wait, now + bounce_pause});
    schedule_retry(self);
  }
  return rp;
}

void retry_waiting(node_router_actor* self) {
  auto& st = self->state;
  st.retry_scheduled = false;
  auto now = steady::now();
  std::deque<waiting_message> still;
  for (auto& w : st.waiting) {
    if (try_route(self, w.rp, w.key, w.msg, w.hops, now >= w.not_before)
        == outcome::done)
      continue;
    if (now >= w.deadline) {
      w.rp.deliver(actors::make_error(
          actors::errc::unavailable,
          "no node serves " + w.key + " yet (its shard is moving); retry"));
      continue;
    }
    still.push_back(std::move(w));
  }
  st.waiting.swap(still);
  schedule_retry(self);
}

caf::behavior node_router_main(node_router_actor* self, const router* r,
                               node_router_options options) {
  auto& st = self->state;
  st.r = r;
  st.options = std::move(options);
  if (auto* m = st.options.metrics) {
    st.forwarded
        = &m->counters("karvon_forwarded_messages_total",
                       "Entity messages this node passed on to the node "
                       "serving their key.",
                       {})
               .with({});
    st.delayed = &m->counters("karvon_cluster_delayed_messages_total",
                              "Entity messages that had to wait for their "
                              "shard to move.",
                              {})
                      .with({});
    st.waiting_gauge
        = &m->gauges("karvon_cluster_waiting_messages",
                     "Entity messages held while their shard moves.", {})
               .with({});
  }
  return {
      [self](actors::route_atom, const std::string& key, caf::message& msg) {
        return route(self, key, msg, 0);
      },
      [self](actors::forward_atom, const std::string& key, caf::message& msg,
             int hops) { return route(self, key, msg, hops); },
      [self](retry_atom) { retry_waiting(self); },
      [self](actors::released_atom) {
        if (self->state.options.on_released)
          self->state.options.on_released();
      },
      [self](actors::stats_atom) -> caf::result<std::uint64_t> {
        auto sups = self->state.r->supervisors();
        auto rp = self->make_response_promise<std::uint64_t>();
        if (sups.empty()) {
          rp.deliver(std::uint64_t{0});
          return rp;
        }
        struct sum {
          std::uint64_t active = 0;
          std::size_t pending = 0;
          bool failed = false;
        };
        auto total = std::make_shared<sum>();
        total->pending = sups.size();
        for (auto& sup : sups)
          self->request(sup, std::chrono::seconds{2}, actors::stats_atom::value)
              .then(
                  [rp, total](std::uint64_t active, std::uint64_t,
                              std::uint64_t, std::uint64_t) mutable {
                    total->active += active;
                    if (--total->pending == 0 && !total->failed)
                      rp.deliver(total->active);
                  },
                  [rp, total](caf::error& err) mutable {
                    if (!total->failed) {
                      total->failed = true;
                      rp.deliver(std::move(err));
                    }
                  });
        return rp;
      },
  };
}

} // namespace

caf::actor spawn_node_router(caf::actor_system& sys, const router& r,
                             node_router_options options) {
  return sys.spawn(node_router_main, &r, std::move(options));
}

// Called when a connected peer's connection is lost; guarded, so that a
// late down message after the transport stopped does nothing.
struct peer_down_hook {
  std::mutex mutex;
  std::function<void(const caf::actor_addr&)> call;
};

/// (watch, peer): monitor a connected peer's node router.
using watch_atom = caf::atom_constant<caf::atom("kwatch")>;

caf::behavior peer_watcher(caf::event_based_actor* self,
                           std::shared_ptr<peer_down_hook> hook) {
  self->set_down_handler([hook](caf::down_msg& msg) {
    std::lock_guard lock{hook->mutex};
    if (hook->call)
      hook->call(msg.source);
  });
  return {
      [self](watch_atom, caf::actor& peer) { self->monitor(peer); },
  };
}

struct transport::impl {
  caf::actor_system* sys;
  router* r;
  caf::actor node_router;
  caf::actor watcher;
  std::shared_ptr<peer_down_hook> down = std::make_shared<peer_down_hook>();
  struct peer_info {
    std::string id, address;
  };
  std::map<caf::actor_addr, peer_info> peer_ids; // guarded by mutex
  std::set<std::string> unreachable;             // logged once each

  // A peer's connection is gone (it died, or the network failed): new
  // messages for its shards wait in the node router rather than vanish,
  // and the worker connects again at once (it may only have lost a
  // connection); a failed attempt leaves it to the next view.
  void peer_down(const caf::actor_addr& addr) {
    std::string id;
    {
      std::lock_guard lock{mutex};
      auto it = peer_ids.find(addr);
      if (it == peer_ids.end())
        return;
      id = it->second.id;
      if (!stopping && connected.count(id)) {
        pending.emplace_back(id, it->second.address);
        cv.notify_all();
      }
      peer_ids.erase(it);
    }
    auto current = r->peer(id);
    if (current && current.address() == addr)
      r->set_peer(id, caf::actor{});
    spdlog::warn("cluster: lost the connection to node {}", id);
  }
  std::uint16_t port = 0;

  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::pair<std::string, std::string>> pending; // id, address
  std::map<std::string, std::string> connected;            // id -> address
  bool stopping = false;
  std::thread worker;

  // Connects one peer; blocking (remote_actor), so only on the worker.
  void connect_one(const std::string& id, const std::string& address) {
    config::host_port hp;
    if (!config::parse_host_port(address, hp)) {
      spdlog::warn("cluster: node {} has no usable address '{}'", id, address);
      return;
    }
    auto peer = sys->middleman().remote_actor(hp.host, hp.port);
    if (!peer) {
      std::lock_guard lock{mutex};
      // Logged once: a dead node is retried at every view until declared
      // dead.
      if (unreachable.insert(id).second)
        spdlog::warn("cluster: cannot reach node {} at {}: {}", id, address,
                     sys->render(peer.error()));
      connected.erase(id); // the next connect() tries again
      return;
    }
    {
      std::lock_guard lock{mutex};
      peer_ids[peer->address()] = {id, address};
      unreachable.erase(id);
    }
    caf::anon_send(watcher, watch_atom::value, *peer);
    r->set_peer(id, *peer);
    spdlog::info("cluster: connected to node {} at {}", id, address);
  }

  void run() {
    std::unique_lock lock{mutex};
    while (true) {
      cv.wait(lock, [this] { return stopping || !pending.empty(); });
      if (stopping)
        return;
      auto [id, address] = pending.front();
      pending.pop_front();
      lock.unlock();
      connect_one(id, address);
      lock.lock();
    }
  }
};

transport::transport(caf::actor_system& sys, router& r,
                     node_router_options options)
    : impl_(std::make_unique<impl>()) {
  impl_->sys = &sys;
  impl_->r = &r;
  impl_->node_router = spawn_node_router(sys, r, std::move(options));
  sys.registry().put(
      actors::node_router_name,
      caf::actor_cast<caf::strong_actor_ptr>(impl_->node_router));
  r.set_fallback(impl_->node_router);
  {
    auto* i = impl_.get();
    std::lock_guard lock{i->down->mutex};
    i->down->call = [i](const caf::actor_addr& a) { i->peer_down(a); };
  }
  impl_->watcher = sys.spawn(peer_watcher, impl_->down);
  impl_->worker = std::thread([i = impl_.get()] { i->run(); });
}

transport::~transport() {
  stop();
}

std::uint16_t transport::start(const std::string& host, std::uint16_t port) {
  auto bound = impl_->sys->middleman().publish(impl_->node_router, port,
                                               host.c_str(), true);
  if (!bound)
    throw std::runtime_error("cannot listen for the cluster on " + host + ":"
                             + std::to_string(port) + ": "
                             + impl_->sys->render(bound.error()));
  impl_->port = *bound;
  return *bound;
}

void transport::connect(const std::string& node_id, const std::string& address,
                        std::int64_t incarnation) {
  std::lock_guard lock{impl_->mutex};
  // A restarted node (a new incarnation) is a new process at perhaps the
  // same address: connect again.
  auto where = address + "#" + std::to_string(incarnation);
  auto it = impl_->connected.find(node_id);
  if (it != impl_->connected.end() && it->second == where)
    return;
  impl_->connected[node_id] = where;
  impl_->pending.emplace_back(node_id, address);
  impl_->cv.notify_all();
}

void transport::disconnect(const std::string& node_id) {
  {
    std::lock_guard lock{impl_->mutex};
    impl_->connected.erase(node_id);
  }
  impl_->r->set_peer(node_id, caf::actor{});
}

caf::actor transport::node_router() const {
  return impl_->node_router;
}

void transport::stop() {
  {
    std::lock_guard lock{impl_->mutex};
    if (impl_->stopping)
      return;
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->worker.joinable())
    impl_->worker.join();
  {
    std::lock_guard lock{impl_->down->mutex};
    impl_->down->call = nullptr;
  }
  caf::anon_send_exit(impl_->watcher, caf::exit_reason::user_shutdown);
  if (impl_->port != 0)
    impl_->sys->middleman().unpublish(impl_->node_router, impl_->port);
  impl_->sys->registry().erase(actors::node_router_name);
  caf::anon_send_exit(impl_->node_router, caf::exit_reason::user_shutdown);
}

} // namespace karvon::cluster
