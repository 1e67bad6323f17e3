// Entities: every user, channel and partner is one actor, found by its key
// ("user/tg:shopbot:5123"), activated on its first message, passivated when
// idle. An entity kind supplies the logic as a plain class; the runtime's
// actors move messages, load and save state, and supervise.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <caf/fwd.hpp>

#include "persistence/cluster_store.hpp"
#include "persistence/errors.hpp"

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

/// "user/tg:shopbot:5123" -> "user"; empty when the key has no kind.
std::string_view kind_of(std::string_view key);

/// True when `key` is "kind/id" with a known shape: kind of [a-z_], an id of
/// 1 to 200 printable bytes without spaces.
bool valid_entity_key(std::string_view key);

/// Thrown by entity_logic::fence() when this node no longer holds the lease
/// of the entity's shard: whatever the entity meant to write must not be.
class lease_lost : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The cluster's rules for one node, from its shard map; each unset
/// function means one node without leases (tests, tools).
struct ownership_rules {
  /// True when a new entity for `key` may activate here: this node owns
  /// the key's shard now and holds its lease.
  std::function<bool(std::string_view key)> activates;
  /// True while active entities for `key` may go on serving here: this node
  /// holds the shard's lease (during a hand-off, after the assignment moved
  /// it, until the entities have passivated).
  std::function<bool(std::string_view key)> serves;
  /// The fencing token for a write to `key`'s state; throws lease_lost
  /// when leases are required and not held; nullopt when not required.
  std::function<std::optional<persistence::fencing_token>(std::string_view)>
      fence;
  /// The shard of `key` (hand-offs go shard by shard).
  std::function<std::uint32_t(std::string_view key)> shard_of;
};

/// The logic of one entity, owned by its actor. Called on the actor's thread
/// only, except load() and save(), which run on a database thread while the
/// actor waits for them (so no call ever overlaps another).
class entity_logic : public std::enable_shared_from_this<entity_logic> {
public:
  virtual ~entity_logic() = default;

  /// Reads the entity's committed state. Blocking is fine here: it runs on a
  /// database pool thread. Throwing fails the activation; the messages
  /// waiting for it get an error and the next message tries again.
  virtual void load(pqxx::connection_base& c, const std::string& key) = 0;

  /// The entity's message handlers. `self` is its actor: handlers may
  /// request other actors, but never block. Replies are the handlers'
  /// return values (or response promises).
  virtual caf::message_handler handlers(caf::event_based_actor* self) = 0;

  /// True while work is under way that passivation must not cut short (an
  /// answer awaited from a sink); the entity then stays active.
  virtual bool busy() const { return false; }

  /// True when state changed since the last save.
  virtual bool dirty() const { return false; }

  /// Writes dirty state before the entity stops; runs on a database thread.
  /// Throwing keeps the entity active (it tries again at the next
  /// passivation); its state is never dropped unsaved.
  virtual void save(pqxx::connection_base& c, const std::string& key) {}

  /// Work started by on_own_thread() or in_database() and not yet back.
  int pending() const { return pending_; }

protected:
  /// Wraps `f` so that calling the result, once, from any thread runs `f`
  /// on this entity's thread. Until then the entity counts as busy and is
  /// not passivated. For handlers (the entity's thread) only.
  std::function<void()> on_own_thread(std::function<void()> f);

  /// Runs `work` on a database thread, then `then` with its error (nullopt
  /// on success) on this entity's thread. A full pool answers overloaded at
  /// once. The logic lives until `work` has run, even when the entity is
  /// stopped meanwhile (its shard lease lost), so `work` may use `this`;
  /// `then` does not run for a stopped entity. For handlers only.
  void
  in_database(std::function<void(pqxx::connection_base&)> work,
              std::function<void(std::optional<persistence::db_error>)> then);

  /// The entity's actor, for requests to other actors. For handlers only.
  caf::event_based_actor* self() const { return self_; }

  /// The token every write of the entity's state carries (see
  /// persistence/cluster_store.hpp for how a write checks it): nullopt when
  /// the node runs without leases. Throws lease_lost when this node no
  /// longer holds the shard's lease. Any thread: call it inside the
  /// database work, right before the write, and check the token in the
  /// write's own transaction.
  std::optional<persistence::fencing_token> fence() const;

  /// The entity's key; set before load().
  const std::string& key() const { return key_; }

private:
  friend struct entity_access; // the runtime sets these
  caf::event_based_actor* self_ = nullptr;
  persistence::db_pool* pool_ = nullptr;
  int pending_ = 0;
  std::string key_;
  std::shared_ptr<const ownership_rules> rules_;
};

/// What the runtime needs to host a kind of entity.
struct entity_kind {
  std::string name; //!< "user", "channel", "partner"
  /// Makes the logic for a key; called on the supervisor's thread.
  std::function<std::unique_ptr<entity_logic>(const std::string& key)> make;
};

struct supervisor_options {
  /// Passivate an entity after this long without a message.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes{10}};
  /// Passivate the least recently used beyond this many active entities.
  std::size_t max_active = 100000;
  /// How often idle entities are looked for.
  std::chrono::milliseconds sweep_interval{std::chrono::seconds{5}};
  /// A key that crashed this many times within crash_window is refused
  /// (errc::unavailable) for crash_backoff, doubling while it goes on.
  int crash_limit = 3;
  std::chrono::milliseconds crash_window{std::chrono::seconds{10}};
  std::chrono::milliseconds crash_backoff{std::chrono::seconds{1}};
  std::chrono::milliseconds max_crash_backoff{std::chrono::minutes{1}};
  /// Messages held for one key while it activates or passivates.
  std::size_t max_held_per_key = 10000;
  /// Where keys may activate and serve; messages for keys this node does
  /// not serve go to the node router registered as node_router_name.
  std::shared_ptr<const ownership_rules> rules;
};

} // namespace karvon::actors
