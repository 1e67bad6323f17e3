#include "cluster/membership.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

#include <pthread.h>
#include <spdlog/spdlog.h>

#include "cluster/rendezvous.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::cluster {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;
namespace db = persistence;

std::vector<std::uint32_t> keys_of(const std::set<std::uint32_t>& s) {
  return {s.begin(), s.end()};
}

} // namespace

struct membership::impl {
  db::db_pool& pool;
  membership_options options;
  membership_callbacks callbacks;
  milliseconds margin{0};
  // A database call the loop waits for longer than this is given up (it
  // may still finish on its pool thread; its result is then ignored, which
  // is safe: an unseen grant or renewal only makes the database keep a
  // lease this node does not serve). Past the failure timeout the node is
  // presumed dead by the others anyway.
  milliseconds call_timeout{0};

  // Shared with other threads, guarded by mu.
  mutable std::mutex mu;
  std::condition_variable wake;
  bool started = false;
  bool stopping = false;
  bool leave_on_stop = false;
  bool paused = false;
  bool drain_requested = false;
  bool poke = false; //!< tick now rather than at the next heartbeat
  std::set<std::uint32_t> release_requested;
  std::int64_t published_incarnation = 0;
  std::uint64_t published_epoch = 0;
  std::vector<held_lease> published_leases;
  db::cluster_view published_view;
  std::thread thread;

  // The loop thread's own state.
  std::int64_t incarnation = 0;
  std::int64_t epoch = 0;
  std::vector<std::string> owners;
  std::map<std::uint32_t, held_lease> held;
  std::map<std::uint32_t, steady_time> revoked; //!< waiting for release()
  bool replaced = false;

  impl(db::db_pool& p, membership_options o, membership_callbacks cb)
      : pool(p), options(std::move(o)), callbacks(std::move(cb)) {}

  /// Runs `work` on a pool thread and waits for it; nullopt when the pool
  /// refused it, it threw, or it took longer than call_timeout.
  template <class F>
  auto call(const char* what, F work)
      -> std::optional<std::invoke_result_t<F&, pqxx::connection_base&>>;

  void run();
  void tick();
  bool join();
  void lose_incarnation(db::heartbeat_result::status why);
  void update_leases(const db::cluster_view& v);
  void publish();
  void leave();
};

template <class F>
auto membership::impl::call(const char* what, F work)
    -> std::optional<std::invoke_result_t<F&, pqxx::connection_base&>> {
  using result = std::invoke_result_t<F&, pqxx::connection_base&>;
  // Shared with the job, which may outlive this call (and this object)
  // when the wait times out: the job captures nothing else.
  struct slot {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::optional<result> value;
    std::optional<db::db_error> error;
  };
  auto s = std::make_shared<slot>();
  bool queued = pool.submit(
      [s, work = std::move(work)](pqxx::connection_base& c) mutable {
        auto v = work(c);
        std::lock_guard lock{s->mu};
        s->value = std::move(v);
      },
      [s](std::optional<db::db_error> e) {
        {
          std::lock_guard lock{s->mu};
          s->error = std::move(e);
          s->done = true;
        }
        s->cv.notify_all();
      });
  if (!queued) {
    spdlog::warn("membership {}: {}: the database pool refused the job",
                 options.node_id, what);
    return std::nullopt;
  }
  auto started = steady::now();
  std::unique_lock lock{s->mu};
  if (!s->cv.wait_for(lock, call_timeout, [&] { return s->done; })) {
    spdlog::warn("membership {}: {}: no answer within {} ms", options.node_id,
                 what, call_timeout.count());
    return std::nullopt;
  }
  if (s->error) {
    spdlog::warn("membership {}: {}: {}", options.node_id, what,
                 s->error->message);
    return std::nullopt;
  }
  // Slow membership calls eat into the lease's safety margin: worth a line.
  auto took = std::chrono::duration_cast<milliseconds>(steady::now() - started);
  if (took > margin / 2)
    spdlog::warn("membership {}: {} took {} ms (the lease margin is {} ms)",
                 options.node_id, what, took.count(), margin.count());
  return std::move(s->value);
}

void membership::impl::run() {
  auto next = steady::now();
  for (;;) {
    {
      std::unique_lock lock{mu};
      wake.wait_until(lock, next, [this] { return stopping || poke; });
      if (stopping)
        break;
      poke = false;
      if (paused || replaced) {
        next = steady::now() + options.heartbeat;
        continue;
      }
    }
    // Fixed rate from the start of a tick, so a slow tick does not stretch
    // the interval between heartbeats.
    next = steady::now() + options.heartbeat;
    tick();
  }
  bool leave_now = false;
  {
    std::lock_guard lock{mu};
    leave_now = leave_on_stop;
  }
  if (leave_now)
    leave();
}

bool membership::impl::join() {
  auto reg = call("register",
                  [id = options.node_id, http = options.http_address,
                   addr = options.cluster_address](pqxx::connection_base& c) {
                    return db::register_node(c, id, http, addr);
                  });
  if (!reg)
    return false;
  incarnation = reg->incarnation;
  spdlog::info("membership {}: registered as incarnation {}", options.node_id,
               incarnation);
  std::lock_guard lock{mu};
  published_incarnation = incarnation;
  return true;
}

void membership::impl::lose_incarnation(db::heartbeat_result::status why) {
  const bool was_replaced = why == db::heartbeat_result::status::replaced;
  spdlog::warn("membership {}: incarnation {} was {}; it stops serving",
               options.node_id, incarnation,
               was_replaced ? "replaced by another process" : "declared dead");
  // The old incarnation's leases are not released: if this node id was
  // replaced, that other process is not us, and either way they simply
  // expire, after serve_until has already passed here.
  held.clear();
  revoked.clear();
  publish();
  if (callbacks.on_declared_dead)
    callbacks.on_declared_dead(why);
  incarnation = 0;
  replaced = was_replaced;
  std::lock_guard lock{mu};
  published_incarnation = 0;
}

void membership::impl::tick() {
  if (incarnation == 0 && !join())
    return;

  auto hb = call("heartbeat", [id = options.node_id,
                               inc = incarnation](pqxx::connection_base& c) {
    return db::heartbeat(c, id, inc);
  });
  if (!hb) {
    // No answer: keep the leases, whose serve_until passes by itself.
    publish();
    return;
  }
  if (hb->what != db::heartbeat_result::status::alive) {
    lose_incarnation(hb->what);
    return;
  }

  bool drain_now = false;
  {
    std::lock_guard lock{mu};
    drain_now = drain_requested;
  }
  // A refused or failed change is tried again next tick; the view read
  // below says which state counts.
  std::optional<db::node_state> to;
  if (drain_now && hb->state != db::node_state::draining)
    to = db::node_state::draining;
  else if (!drain_now && hb->state == db::node_state::joining)
    to = db::node_state::active;
  if (to)
    call("set state", [id = options.node_id, inc = incarnation,
                       s = *to](pqxx::connection_base& c) {
      return db::set_node_state(c, id, inc, s);
    });

  call("declare dead",
       [ms = options.failure_timeout.count()](pqxx::connection_base& c) {
         return db::declare_dead(c, ms);
       });

  auto view = call("read view",
                   [](pqxx::connection_base& c) { return db::read_view(c); });
  if (!view) {
    publish();
    return;
  }
  if (view->epoch != epoch) {
    epoch = view->epoch;
    owners = assign_shards(options.shards, view->active_nodes());
    {
      std::lock_guard lock{mu};
      published_epoch = static_cast<std::uint64_t>(epoch);
    }
    if (callbacks.on_assignment)
      callbacks.on_assignment(static_cast<std::uint64_t>(epoch), owners);
  }
  {
    std::lock_guard lock{mu};
    published_view = *view;
  }
  if (callbacks.on_view)
    callbacks.on_view(*view);
  update_leases(*view);
}

void membership::impl::update_leases(const db::cluster_view& v) {
  // The shards this node should hold: assigned to it by this epoch's view,
  // and only while it is active there (draining: none).
  std::set<std::uint32_t> mine;
  auto self = std::find_if(v.nodes.begin(), v.nodes.end(), [&](auto& n) {
    return n.node_id == options.node_id && n.incarnation == incarnation;
  });
  if (self != v.nodes.end() && self->state == db::node_state::active)
    for (std::uint32_t s = 0; s < owners.size(); ++s)
      if (owners[s] == options.node_id)
        mine.insert(s);

  // Held but no longer ours: release at once, or after the owner of the
  // callbacks has handed them off.
  std::set<std::uint32_t> to_release;
  const auto now = steady::now();
  if (!callbacks.on_revoke) {
    for (auto& [s, l] : held)
      if (!mine.count(s))
        to_release.insert(s);
  } else {
    std::vector<std::uint32_t> newly;
    for (auto& [s, l] : held)
      if (!mine.count(s) && revoked.emplace(s, now).second)
        newly.push_back(s);
    for (auto it = revoked.begin(); it != revoked.end();)
      it = mine.count(it->first) || !held.count(it->first) ? revoked.erase(it)
                                                           : std::next(it);
    std::set<std::uint32_t> asked;
    {
      std::lock_guard lock{mu};
      asked.swap(release_requested);
    }
    for (auto& [s, since] : revoked)
      if (asked.count(s) || now - since >= options.handoff_timeout)
        to_release.insert(s);
    for (auto s : to_release)
      revoked.erase(s);
    if (!newly.empty())
      callbacks.on_revoke(static_cast<std::uint64_t>(epoch), newly);
  }
  if (!to_release.empty()) {
    // Stop serving first (on_leases takes effect before it returns), then
    // let the next owner in.
    for (auto s : to_release)
      held.erase(s);
    publish();
    auto released = call(
        "release", [id = options.node_id, inc = incarnation,
                    shards = keys_of(to_release)](pqxx::connection_base& c) {
          return db::release_leases(c, id, inc, shards);
        });
    if (released && !released->empty() && callbacks.on_released)
      callbacks.on_released(std::move(*released));
  }

  // Local expiry. `sent` is read on the pool thread just before the
  // statement goes out, so it precedes the database's clock_timestamp()
  // that `remaining_ms` is measured from: sent + remaining is never later
  // than the database's expires_at, however long the request or the answer
  // took (a slow answer only shortens our window). The margin then keeps
  // the node from serving in the last stretch, covering clock rate
  // differences and a message that starts just before serve_until.
  using grants = std::pair<steady_time, std::vector<db::lease_grant>>;
  auto serve_until = [this](steady_time sent, const db::lease_grant& g) {
    return sent + milliseconds{g.remaining_ms} - margin;
  };
  // Renewed once half the serving window is gone, not every tick: each
  // renewal rewrites every lease row, which under a heavy write load costs
  // the database more than the heartbeat itself. Leases cannot be taken
  // while valid, so skipping a renewal loses nothing.
  bool renew_now = held.empty();
  for (auto& [s, l] : held)
    renew_now = renew_now || l.serve_until - now < (options.lease - margin) / 2;
  std::optional<grants> renewed;
  if (renew_now)
    renewed
        = call("renew", [id = options.node_id, inc = incarnation,
                         ms = options.lease.count()](pqxx::connection_base& c) {
            auto sent = steady::now();
            return grants{sent, db::renew_leases(c, id, inc, ms)};
          });
  if (renewed) {
    // What renew did not return is expired or was taken after expiring:
    // its serve_until has passed already.
    std::map<std::uint32_t, held_lease> next;
    for (auto& g : renewed->second)
      next[g.shard] = held_lease{g.shard, incarnation, g.epoch,
                                 serve_until(renewed->first, g)};
    held.swap(next);
    // A lease renewed in the database but meant for release (an earlier
    // release call that timed out) is released again next tick.
  }

  std::vector<std::uint32_t> missing;
  for (auto s : mine)
    if (!held.count(s))
      missing.push_back(s);
  if (!missing.empty()) {
    auto acquired = call(
        "acquire", [id = options.node_id, inc = incarnation, e = epoch,
                    shards = std::move(missing),
                    ms = options.lease.count()](pqxx::connection_base& c) {
          auto sent = steady::now();
          return grants{sent, db::acquire_leases(c, id, inc, e, shards, ms)};
        });
    if (acquired)
      for (auto& g : acquired->second)
        held[g.shard] = held_lease{g.shard, incarnation, g.epoch,
                                   serve_until(acquired->first, g)};
  }
  publish();
}

void membership::impl::publish() {
  // Leases whose time is up are no longer held, whatever the database says.
  const auto now = steady::now();
  for (auto it = held.begin(); it != held.end();)
    it = it->second.serve_until <= now ? held.erase(it) : std::next(it);
  std::vector<held_lease> out;
  out.reserve(held.size());
  for (auto& [s, l] : held)
    out.push_back(l);
  {
    std::lock_guard lock{mu};
    published_leases = out;
  }
  if (callbacks.on_leases)
    callbacks.on_leases(std::move(out));
}

void membership::impl::leave() {
  held.clear();
  revoked.clear();
  publish();
  if (incarnation == 0)
    return;
  // Every shard, not only those held: a grant whose answer timed out may
  // have left a lease this node never knew it had.
  std::vector<std::uint32_t> all(options.shards);
  for (std::uint32_t s = 0; s < options.shards; ++s)
    all[s] = s;
  call("release", [id = options.node_id, inc = incarnation,
                   all = std::move(all)](pqxx::connection_base& c) {
    return db::release_leases(c, id, inc, all);
  });
  call("leave",
       [id = options.node_id, inc = incarnation](pqxx::connection_base& c) {
         return db::set_node_state(c, id, inc, db::node_state::dead);
       });
  spdlog::info("membership {}: incarnation {} left the cluster",
               options.node_id, incarnation);
  incarnation = 0;
  std::lock_guard lock{mu};
  published_incarnation = 0;
}

membership::membership(persistence::db_pool& pool, membership_options options,
                       membership_callbacks callbacks) {
  if (options.node_id.empty())
    throw std::invalid_argument("membership: empty node id");
  if (options.shards == 0)
    throw std::invalid_argument("membership: no shards");
  auto margin = options.safety_margin.count() > 0 ? options.safety_margin
                                                  : options.lease / 5;
  if (options.heartbeat.count() <= 0 || options.failure_timeout.count() <= 0
      || options.lease - margin <= options.heartbeat)
    throw std::invalid_argument(
        "membership: the lease minus its safety margin must be longer than "
        "one heartbeat, and heartbeat and failure timeout positive");
  impl_
      = std::make_unique<impl>(pool, std::move(options), std::move(callbacks));
  impl_->margin = margin;
  impl_->call_timeout
      = std::max(impl_->options.failure_timeout, milliseconds{1000});
}

membership::~membership() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

void membership::start() {
  std::lock_guard lock{impl_->mu};
  if (impl_->started)
    return;
  impl_->started = true;
  impl_->thread = std::thread{[this] { impl_->run(); }};
  pthread_setname_np(impl_->thread.native_handle(), "karvon-member");
}

void membership::drain() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->drain_requested = true;
    impl_->poke = true;
  }
  impl_->wake.notify_all();
}

void membership::poke() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->poke = true;
  }
  impl_->wake.notify_all();
}

void membership::release(std::vector<std::uint32_t> shards) {
  {
    std::lock_guard lock{impl_->mu};
    impl_->release_requested.insert(shards.begin(), shards.end());
    impl_->poke = true;
  }
  impl_->wake.notify_all();
}

void membership::stop() {
  {
    std::lock_guard lock{impl_->mu};
    impl_->stopping = true;
    impl_->leave_on_stop = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

std::int64_t membership::incarnation() const {
  std::lock_guard lock{impl_->mu};
  return impl_->published_incarnation;
}

std::uint64_t membership::epoch() const {
  std::lock_guard lock{impl_->mu};
  return impl_->published_epoch;
}

std::vector<held_lease> membership::leases() const {
  std::lock_guard lock{impl_->mu};
  return impl_->published_leases;
}

persistence::cluster_view membership::view() const {
  std::lock_guard lock{impl_->mu};
  return impl_->published_view;
}

void membership::pause_for_testing(bool paused) {
  {
    std::lock_guard lock{impl_->mu};
    impl_->paused = paused;
    impl_->poke = true;
  }
  impl_->wake.notify_all();
}

} // namespace karvon::cluster
