#include "cluster/transport.hpp"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "actors/messages.hpp"
#include "cluster/router.hpp"
#include "config/settings.hpp"

namespace karvon::cluster {

namespace {

/// (forward, key, message, hops): a routed message on its way to a shard's
/// new owner.
using forward_atom = caf::atom_constant<caf::atom("kforward")>;

caf::behavior node_router_main(caf::event_based_actor* self, const router* r,
                               int max_hops) {
  auto route = [self, r, max_hops](const std::string& key, caf::message& msg,
                                   int hops) -> caf::result<caf::message> {
    auto where = r->resolve(key);
    if (!where.target)
      return actors::make_error(actors::errc::unavailable,
                                "no node serves " + key + " now");
    auto rp = self->make_response_promise();
    if (where.local) {
      rp.delegate(where.target, actors::route_atom::value, key, std::move(msg));
    } else if (hops >= max_hops) {
      // Maps disagree while a shard moves; a message that keeps bouncing
      // is refused instead of circling.
      rp.deliver(actors::make_error(actors::errc::unavailable,
                                    key + " is moving; retry"));
    } else {
      rp.delegate(where.target, forward_atom::value, key, std::move(msg),
                  hops + 1);
    }
    return rp;
  };
  return {
      [route](actors::route_atom, const std::string& key, caf::message& msg) {
        return route(key, msg, 0);
      },
      [route](forward_atom, const std::string& key, caf::message& msg,
              int hops) { return route(key, msg, hops); },
  };
}

} // namespace

caf::actor spawn_node_router(caf::actor_system& sys, const router& r,
                             int max_hops) {
  return sys.spawn(node_router_main, &r, max_hops);
}

struct transport::impl {
  caf::actor_system* sys;
  router* r;
  caf::actor node_router;
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
      spdlog::warn("cluster: cannot reach node {} at {}: {}", id, address,
                   sys->render(peer.error()));
      std::lock_guard lock{mutex};
      connected.erase(id); // the next connect() tries again
      return;
    }
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

transport::transport(caf::actor_system& sys, router& r)
    : impl_(std::make_unique<impl>()) {
  impl_->sys = &sys;
  impl_->r = &r;
  impl_->node_router = spawn_node_router(sys, r);
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

void transport::connect(const std::string& node_id,
                        const std::string& address) {
  std::lock_guard lock{impl_->mutex};
  auto it = impl_->connected.find(node_id);
  if (it != impl_->connected.end() && it->second == address)
    return;
  impl_->connected[node_id] = address;
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
  if (impl_->port != 0)
    impl_->sys->middleman().unpublish(impl_->node_router, impl_->port);
  caf::anon_send_exit(impl_->node_router, caf::exit_reason::user_shutdown);
}

} // namespace karvon::cluster
