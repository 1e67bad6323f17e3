#include "actors/supervisor.hpp"

#include <chrono>
#include <list>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "actors/messages.hpp"
#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::actors {

namespace {

using clock_type = std::chrono::steady_clock;

// A closure to run on an entity's own thread; local only, never crosses
// nodes.
using own_thread_job = std::shared_ptr<std::function<void()>>;

using run_atom = caf::atom_constant<caf::atom("krun")>;

} // namespace
} // namespace karvon::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(karvon::actors::own_thread_job)

namespace karvon::actors {

struct entity_access {
  static void attach(entity_logic& logic, caf::event_based_actor* self,
                     persistence::db_pool* pool) {
    logic.self_ = self;
    logic.pool_ = pool;
  }
  static void ran_one(entity_logic& logic) { --logic.pending_; }
  static void prepare(entity_logic& logic, const std::string& key,
                      std::shared_ptr<const ownership_rules> rules) {
    logic.key_ = key;
    logic.rules_ = std::move(rules);
  }
};

std::optional<persistence::fencing_token> entity_logic::fence() const {
  if (!rules_ || !rules_->fence)
    return std::nullopt;
  return rules_->fence(key_);
}

std::function<void()> entity_logic::on_own_thread(std::function<void()> f) {
  auto handle = caf::actor_cast<caf::actor>(self_);
  ++pending_;
  auto job = std::make_shared<std::function<void()>>(std::move(f));
  return [handle, job] { caf::anon_send(handle, run_atom::value, job); };
}

void entity_logic::in_database(
    std::function<void(pqxx::connection_base&)> work,
    std::function<void(std::optional<persistence::db_error>)> then) {
  auto outcome = std::make_shared<std::optional<persistence::db_error>>();
  auto back = on_own_thread([then, outcome] { then(*outcome); });
  // An entity dropped with its lease (stopped without waiting) frees its
  // logic; work already queued still runs and may read it (fence()).
  auto keep = weak_from_this().lock();
  bool queued = pool_->submit(
      [keep, work = std::move(work)](pqxx::connection_base& c) { work(c); },
      [outcome, back](auto err) {
        *outcome = std::move(err);
        back();
      });
  if (!queued) {
    *outcome = persistence::db_error{
        persistence::db_error::kind::overloaded, {}, "the database is busy"};
    back();
  }
}

namespace {

// -- the entity actor --------------------------------------------------------

struct entity_state {
  std::string key;
  std::shared_ptr<entity_logic> logic;
  persistence::db_pool* pool = nullptr;
  static inline const char* name = "karvon.entity";
};

using entity_actor = caf::stateful_actor<entity_state>;

// Unexpected messages get an error reply instead of CAF's print to stderr.
caf::result<caf::message> refuse_unexpected(caf::scheduled_actor*,
                                            caf::message_view&) {
  return make_error(errc::invalid_input, "the entity does not take this "
                                         "message");
}

caf::error on_exception(entity_actor* self, std::exception_ptr& ep) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  spdlog::error("entity {} crashed: {}", self->state.key, what);
  return make_error(errc::internal,
                    "entity " + self->state.key + " crashed: " + what);
}

caf::behavior running(entity_actor* self);

// Writes dirty state, then stops; answers false (and stays) when busy or
// when the write failed.
caf::result<bool> passivate(entity_actor* self) {
  auto& st = self->state;
  if (st.logic->busy() || st.logic->pending() > 0)
    return false;
  if (!st.logic->dirty()) {
    self->quit();
    return true;
  }
  auto rp = self->make_response_promise<bool>();
  auto handle = caf::actor_cast<caf::actor>(self);
  auto logic = st.logic;
  auto key = st.key;
  bool queued = st.pool->submit(
      [logic, key](pqxx::connection_base& c) { logic->save(c, key); },
      [handle](std::optional<persistence::db_error> err) {
        caf::anon_send(handle, saved_atom::value, static_cast<bool>(err),
                       err ? err->message : std::string{});
      });
  if (!queued)
    return false;
  // Nothing else arrives meanwhile (the supervisor holds this key's
  // messages), but should something, it waits for the outcome.
  self->set_default_handler(caf::skip);
  self->become(
      caf::keep_behavior,
      [self, rp](saved_atom, bool failed, const std::string& error) mutable {
        self->set_default_handler(refuse_unexpected);
        if (failed) {
          spdlog::warn("entity {} could not save its state: {}; it "
                       "stays active",
                       self->state.key, error);
          rp.deliver(false);
          self->unbecome();
          return;
        }
        rp.deliver(true);
        self->quit();
      });
  return rp;
}

caf::behavior running(entity_actor* self) {
  caf::message_handler system{
      [self](passivate_atom) -> caf::result<bool> { return passivate(self); },
      [self](run_atom, own_thread_job& job) {
        entity_access::ran_one(*self->state.logic);
        (*job)();
      },
  };
  return system.or_else(self->state.logic->handlers(self));
}

// Loads the entity's state on a database thread; messages wait (skip) until
// it is there, then run in the order they came.
caf::behavior entity_main(entity_actor* self, std::string key,
                          std::shared_ptr<entity_logic> logic,
                          persistence::db_pool* pool) {
  auto& st = self->state;
  st.key = std::move(key);
  st.logic = std::move(logic);
  st.pool = pool;
  self->set_exception_handler(
      [self](std::exception_ptr& ep) { return on_exception(self, ep); });
  self->set_default_handler(caf::skip);
  auto handle = caf::actor_cast<caf::actor>(self);
  auto logic_ptr = st.logic;
  auto k = st.key;
  bool queued = pool->submit(
      [logic_ptr, k](pqxx::connection_base& c) { logic_ptr->load(c, k); },
      [handle](std::optional<persistence::db_error> err) {
        caf::anon_send(handle, loaded_atom::value, static_cast<bool>(err),
                       err ? err->message : std::string{});
      });
  if (!queued) {
    self->quit(make_error(errc::overloaded, "the database is busy"));
    return {};
  }
  return {
      [self](loaded_atom, bool failed, const std::string& error) {
        if (failed) {
          spdlog::warn("entity {} could not load its state: {}",
                       self->state.key, error);
          self->quit(make_error(errc::unavailable,
                                "could not load " + self->state.key));
          return;
        }
        self->set_default_handler(refuse_unexpected);
        entity_access::attach(*self->state.logic, self, self->state.pool);
        self->become(running(self));
      },
  };
}

// -- the supervisor -----------------------------------------------------------

struct held_message {
  caf::response_promise rp;
  caf::message msg;
};

struct entry {
  caf::actor handle;
  bool passivating = false;
  std::vector<held_message> held; // while passivating
  std::uint64_t last_seen = 0;    // supervisor_state::tick of its last message
  std::list<std::string>::iterator lru; // position in supervisor_state::lru
};

struct crash_record {
  std::vector<clock_type::time_point> times; // within crash_window
  clock_type::time_point refused_until{};
  std::chrono::milliseconds backoff{0};
};

struct supervisor_state {
  entity_kind kind;
  supervisor_options options;
  persistence::db_pool* pool = nullptr;
  std::unordered_map<std::string, entry> entries;
  std::unordered_map<caf::actor_addr, std::string> keys_by_addr;
  std::list<std::string> lru; // most recently used first
  std::unordered_map<std::string, crash_record> crashes;
  std::size_t active = 0;
  // Counts sweeps: "last used" is kept in ticks, not read from a clock on
  // every message (idle time is known to within one sweep interval).
  std::uint64_t tick = 0;
  std::uint64_t activations = 0;
  std::uint64_t passivations = 0;
  std::uint64_t crash_count = 0;
  bool shutting_down = false;
  std::optional<caf::typed_response_promise<bool>> shutdown;
  // Hand-offs under way: the keys each waits for, and who to tell.
  struct handoff {
    std::unordered_set<std::string> keys;
    caf::typed_response_promise<bool> rp;
  };
  std::vector<handoff> handoffs;
  bool handoff_tick_scheduled = false;

  bool activates(const std::string& key) const {
    return !options.rules || !options.rules->activates
           || options.rules->activates(key);
  }
  bool serves(const std::string& key) const {
    return !options.rules || !options.rules->serves
           || options.rules->serves(key);
  }

  // A key stopped (or was dropped): hand-offs waiting for it may be done.
  void gone(const std::string& key) {
    for (auto it = handoffs.begin(); it != handoffs.end();) {
      it->keys.erase(key);
      if (it->keys.empty()) {
        it->rp.deliver(true);
        it = handoffs.erase(it);
      } else {
        ++it;
      }
    }
  }

  metrics::gauge* active_gauge = nullptr;
  metrics::counter* activation_counter = nullptr;
  metrics::counter* passivation_counter = nullptr;
  metrics::counter* crash_counter = nullptr;
  metrics::counter* refused_counter = nullptr;

  static inline const char* name = "karvon.supervisor";

  // No entity outlives its supervisor (they are not linked): should it stop
  // with entities still active, they stop too, or the actor system would
  // wait for them forever.
  ~supervisor_state() {
    for (auto& [key, e] : entries)
      caf::anon_send_exit(e.handle, caf::exit_reason::user_shutdown);
  }

  // `active` counts entities not passivating (for the LRU cap); what is
  // reported is every live actor, passivating ones included, so a busy
  // entity that declines to stop never looks gone.
  void set_active(std::size_t n) {
    active = n;
    if (active_gauge)
      active_gauge->set(static_cast<double>(entries.size()));
  }
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void passivate_entry(supervisor_actor* self, const std::string& key);

// A message for a key this node does not serve (it moved, or the lease is
// gone) goes to the node router, which forwards it to the owner or holds it
// until one serves the key.
void bounce(supervisor_actor* self, caf::response_promise& rp,
            const std::string& key, caf::message msg) {
  auto nr = self->home_system().registry().get(node_router_name);
  if (!nr) {
    rp.deliver(make_error(errc::unavailable,
                          "this node does not serve " + key + " now"));
    return;
  }
  rp.delegate(caf::actor_cast<caf::actor>(nr), forward_atom::value, key,
              std::move(msg), 0);
}

entry& activate(supervisor_actor* self, const std::string& key) {
  auto& st = self->state;
  std::shared_ptr<entity_logic> logic = st.kind.make(key);
  entity_access::prepare(*logic, key, st.options.rules);
  auto handle = self->spawn(entity_main, key, std::move(logic), st.pool);
  // Monitored, not linked: a link puts one entry per entity on the
  // supervisor's own list, which CAF searches on every exit (quadratic
  // with 100,000 entities); a monitor lives on the entity.
  self->monitor(handle);
  auto& e = st.entries[key];
  e.handle = handle;
  e.passivating = false;
  st.lru.push_front(key);
  e.lru = st.lru.begin();
  e.last_seen = st.tick;
  st.keys_by_addr[handle.address()] = key;
  st.set_active(st.active + 1);
  ++st.activations;
  if (st.activation_counter)
    st.activation_counter->inc();
  // Over the cap: the least recently used active entity makes room.
  if (st.active > st.options.max_active) {
    for (auto it = st.lru.rbegin(); it != st.lru.rend(); ++it) {
      auto& other = st.entries[*it];
      if (!other.passivating && *it != key) {
        passivate_entry(self, *it);
        break;
      }
    }
  }
  return e;
}

void passivate_entry(supervisor_actor* self, const std::string& key) {
  auto& st = self->state;
  auto it = st.entries.find(key);
  if (it == st.entries.end() || it->second.passivating)
    return;
  it->second.passivating = true;
  st.set_active(st.active - 1);
  auto handle = it->second.handle;
  // The request follows every message already sent to the entity, so it
  // handles those first.
  self->request(handle, caf::infinite, passivate_atom::value)
      .then(
          [self, key, handle](bool stopped) {
            if (stopped)
              return; // its exit message does the rest
            auto& st = self->state;
            auto it = st.entries.find(key);
            if (it == st.entries.end() || it->second.handle != handle)
              return;
            // Busy, or its state could not be saved: it stays, and gets what
            // was held for it.
            it->second.passivating = false;
            it->second.last_seen = st.tick;
            st.set_active(st.active + 1);
            for (auto& h : it->second.held)
              h.rp.delegate(handle, std::move(h.msg));
            it->second.held.clear();
          },
          [](const caf::error&) {
            // The entity died while passivating: its exit message says how.
          });
}

bool refused(supervisor_state& st, const std::string& key) {
  auto it = st.crashes.find(key);
  return it != st.crashes.end() && it->second.refused_until > clock_type::now();
}

void record_crash(supervisor_state& st, const std::string& key,
                  const caf::error& reason) {
  ++st.crash_count;
  if (st.crash_counter)
    st.crash_counter->inc();
  auto now = clock_type::now();
  auto& rec = st.crashes[key];
  rec.times.push_back(now);
  auto window_start = now - st.options.crash_window;
  rec.times.erase(std::remove_if(rec.times.begin(), rec.times.end(),
                                 [&](auto t) { return t < window_start; }),
                  rec.times.end());
  if (static_cast<int>(rec.times.size()) >= st.options.crash_limit) {
    rec.backoff = rec.backoff.count() == 0
                      ? st.options.crash_backoff
                      : std::min(rec.backoff * 2, st.options.max_crash_backoff);
    rec.refused_until = now + rec.backoff;
    spdlog::error("entity {} crashed {} times within {} ms; refusing it for "
                  "{} ms",
                  key, rec.times.size(), st.options.crash_window.count(),
                  rec.backoff.count());
  } else {
    spdlog::warn("entity {} stopped on an error ({}); it comes back on its "
                 "next message",
                 key, to_failure(reason).message);
  }
}

// An entity has stopped: passivated, crashed, or failed to load.
void on_entity_exit(supervisor_actor* self, const std::string& key,
                    const caf::error& reason) {
  auto& st = self->state;
  auto it = st.entries.find(key);
  if (it == st.entries.end())
    return;
  auto held = std::move(it->second.held);
  bool was_passivating = it->second.passivating;
  st.keys_by_addr.erase(it->second.handle.address());
  st.lru.erase(it->second.lru);
  st.entries.erase(it);
  st.set_active(was_passivating ? st.active : st.active - 1);
  st.gone(key);
  bool crashed = reason && reason != caf::exit_reason::normal;
  if (crashed) {
    record_crash(st, key, reason);
  } else {
    ++st.passivations;
    if (st.passivation_counter)
      st.passivation_counter->inc();
  }
  if (!held.empty()) {
    // Messages came while it stopped: they activate it again, in order.
    if (st.shutting_down || refused(st, key)) {
      for (auto& h : held)
        h.rp.deliver(make_error(errc::unavailable, key + " is unavailable"));
    } else if (!st.activates(key)) {
      // Its shard moved while it stopped: the new owner takes them.
      for (auto& h : held)
        bounce(self, h.rp, key, std::move(h.msg));
    } else {
      auto& e = activate(self, key);
      for (auto& h : held)
        h.rp.delegate(e.handle, std::move(h.msg));
    }
  }
  if (st.shutting_down && st.entries.empty() && st.shutdown) {
    st.shutdown->deliver(true);
    st.shutdown.reset();
  }
}

// Stops, without saving, every entity whose shard lease this node no longer
// holds: it could not write, and the shard's next owner loads the committed
// state. Messages held for them go to the node router.
void drop_unserved(supervisor_actor* self) {
  auto& st = self->state;
  std::vector<std::string> lost;
  for (auto& [key, e] : st.entries)
    if (!st.serves(key))
      lost.push_back(key);
  for (auto& key : lost) {
    auto it = st.entries.find(key);
    auto held = std::move(it->second.held);
    bool was_passivating = it->second.passivating;
    auto handle = it->second.handle;
    st.keys_by_addr.erase(handle.address());
    st.lru.erase(it->second.lru);
    st.entries.erase(it);
    st.set_active(was_passivating ? st.active : st.active - 1);
    self->demonitor(handle);
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
    for (auto& h : held)
      bounce(self, h.rp, key, std::move(h.msg));
    st.gone(key);
  }
  if (!lost.empty())
    spdlog::warn("{}: stopped {} entities without saving: this node lost "
                 "their shard leases",
                 st.kind.name, lost.size());
  if (st.shutting_down && st.entries.empty() && st.shutdown) {
    st.shutdown->deliver(true);
    st.shutdown.reset();
  }
}

// Passivates, again, the entities of pending hand-offs that declined (busy)
// or whose save failed; runs while hand-offs wait.
void handoff_tick(supervisor_actor* self) {
  auto& st = self->state;
  st.handoff_tick_scheduled = false;
  if (st.handoffs.empty())
    return;
  std::unordered_set<std::string> keys;
  for (auto& h : st.handoffs)
    keys.insert(h.keys.begin(), h.keys.end());
  for (auto& key : keys) {
    auto it = st.entries.find(key);
    if (it == st.entries.end())
      st.gone(key);
    else if (!it->second.passivating && st.serves(key))
      passivate_entry(self, key); // without the lease its save would fail
  }
  if (!st.handoffs.empty()) {
    st.handoff_tick_scheduled = true;
    self->delayed_send(self, std::chrono::milliseconds{50}, moved_atom::value);
  }
}

void sweep(supervisor_actor* self) {
  drop_unserved(self); // leases that ran out between the node's checks
  auto& st = self->state;
  auto now = clock_type::now();
  ++st.tick;
  auto interval = std::max<std::int64_t>(1, st.options.sweep_interval.count());
  auto idle_ticks = static_cast<std::uint64_t>(
      (st.options.idle_timeout.count() + interval - 1) / interval);
  std::vector<std::string> idle;
  for (auto it = st.lru.rbegin(); it != st.lru.rend(); ++it) {
    auto& e = st.entries[*it];
    if (st.tick - e.last_seen < idle_ticks)
      break; // the rest were used more recently
    if (!e.passivating)
      idle.push_back(*it);
  }
  for (auto& key : idle)
    passivate_entry(self, key);
  // Forget crash records nobody needs any more.
  for (auto it = st.crashes.begin(); it != st.crashes.end();) {
    bool stale
        = it->second.refused_until < now
          && (it->second.times.empty()
              || it->second.times.back() < now - st.options.crash_window
                                               - st.options.max_crash_backoff);
    it = stale ? st.crashes.erase(it) : std::next(it);
  }
}

caf::behavior supervisor_main(supervisor_actor* self, entity_kind kind,
                              supervisor_options options,
                              persistence::db_pool* pool,
                              metrics::registry* metrics) {
  auto& st = self->state;
  st.kind = std::move(kind);
  st.options = options;
  st.pool = pool;
  if (metrics) {
    auto& k = st.kind.name;
    st.active_gauge = &metrics
                           ->gauges("karvon_entities_active",
                                    "Entities active on this node.", {"kind"})
                           .with({k});
    st.activation_counter
        = &metrics
               ->counters("karvon_entity_activations_total",
                          "Entities activated (state loaded).", {"kind"})
               .with({k});
    st.passivation_counter
        = &metrics
               ->counters("karvon_entity_passivations_total",
                          "Entities passivated (state saved, actor stopped).",
                          {"kind"})
               .with({k});
    st.crash_counter
        = &metrics
               ->counters("karvon_entity_crashes_total",
                          "Entities stopped by an error.", {"kind"})
               .with({k});
    st.refused_counter
        = &metrics
               ->counters("karvon_entity_refused_total",
                          "Messages refused: key crashing, or too many held.",
                          {"kind"})
               .with({k});
  }
  // Entities' ends come here as messages: passivated, crashed, or failed
  // to load.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.keys_by_addr.find(msg.source);
    if (it == st.keys_by_addr.end())
      return;
    auto key = it->second;
    on_entity_exit(self, key, msg.reason);
  });
  self->set_default_handler(refuse_unexpected);
  self->delayed_send(self, st.options.sweep_interval, sweep_atom::value);
  return {
      [self](route_atom, const std::string& key,
             caf::message& msg) -> caf::result<caf::message> {
        auto& st = self->state;
        if (st.shutting_down)
          return make_error(errc::unavailable, "the node is shutting down");
        if (refused(st, key)) {
          if (st.refused_counter)
            st.refused_counter->inc();
          return make_error(errc::unavailable,
                            key + " keeps crashing; retry later");
        }
        auto it = st.entries.find(key);
        auto rp = self->make_response_promise();
        // Active entities go on while this node holds their lease; a new
        // activation needs the shard assigned here too.
        if (it == st.entries.end() ? !st.activates(key) : !st.serves(key)) {
          bounce(self, rp, key, std::move(msg));
          return rp;
        }
        entry* e = it == st.entries.end() ? &activate(self, key) : &it->second;
        e->last_seen = st.tick;
        st.lru.splice(st.lru.begin(), st.lru, e->lru);
        if (e->passivating) {
          if (e->held.size() >= st.options.max_held_per_key) {
            if (st.refused_counter)
              st.refused_counter->inc();
            return make_error(errc::overloaded,
                              "too many messages wait for " + key);
          }
          e->held.push_back({rp, std::move(msg)});
          return rp;
        }
        rp.delegate(e->handle, std::move(msg));
        return rp;
      },
      [self](passivate_atom) -> caf::result<bool> {
        auto& st = self->state;
        st.shutting_down = true;
        drop_unserved(self);
        if (st.entries.empty())
          return true;
        st.shutdown = self->make_response_promise<bool>();
        std::vector<std::string> keys;
        for (auto& [key, e] : st.entries)
          keys.push_back(key);
        for (auto& key : keys)
          passivate_entry(self, key);
        return *st.shutdown;
      },
      [self](passivate_atom, moved_atom,
             const std::vector<std::uint32_t>& shards) -> caf::result<bool> {
        auto& st = self->state;
        std::unordered_set<std::uint32_t> moving(shards.begin(), shards.end());
        auto& rules = st.options.rules;
        auto in_moving = [&](const std::string& key) {
          return !rules || !rules->shard_of
                 || moving.count(rules->shard_of(key)) > 0;
        };
        supervisor_state::handoff h;
        for (auto& [key, e] : st.entries)
          if (!st.activates(key) && in_moving(key))
            h.keys.insert(key);
        if (h.keys.empty())
          return true;
        spdlog::debug("{}: handing off {} entities", st.kind.name,
                      h.keys.size());
        h.rp = self->make_response_promise<bool>();
        auto rp = h.rp;
        auto keys = h.keys;
        st.handoffs.push_back(std::move(h));
        for (auto& key : keys)
          passivate_entry(self, key);
        if (!st.handoff_tick_scheduled) {
          st.handoff_tick_scheduled = true;
          self->delayed_send(self, std::chrono::milliseconds{50},
                             moved_atom::value);
        }
        return rp;
      },
      [self](moved_atom) { handoff_tick(self); },
      [self](drop_atom) { drop_unserved(self); },
      [self](sweep_atom) {
        sweep(self);
        self->delayed_send(self, self->state.options.sweep_interval,
                           sweep_atom::value);
      },
      [self](stats_atom) {
        auto& st = self->state;
        return caf::make_message(static_cast<std::uint64_t>(st.entries.size()),
                                 st.activations, st.passivations,
                                 st.crash_count);
      },
  };
}

} // namespace

std::string_view kind_of(std::string_view key) {
  auto slash = key.find('/');
  if (slash == std::string_view::npos)
    return {};
  return key.substr(0, slash);
}

bool valid_entity_key(std::string_view key) {
  auto kind = kind_of(key);
  if (kind.empty() || kind.size() > 32)
    return false;
  for (char c : kind)
    if (!((c >= 'a' && c <= 'z') || c == '_'))
      return false;
  auto id = key.substr(kind.size() + 1);
  if (id.empty() || id.size() > 200)
    return false;
  for (char c : id)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return false;
  return true;
}

caf::actor spawn_supervisor(caf::actor_system& sys, entity_kind kind,
                            supervisor_options options,
                            persistence::db_pool& pool,
                            metrics::registry* metrics) {
  return sys.spawn(supervisor_main, std::move(kind), options, &pool, metrics);
}

} // namespace karvon::actors
