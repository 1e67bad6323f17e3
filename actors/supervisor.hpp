// The supervisor of one entity kind on one node: it finds or activates the
// actor of a key, holds messages while an entity passivates, passivates
// idle and least recently used entities, and brings crashed ones back on
// their next message.
#pragma once

#include <caf/fwd.hpp>

#include "actors/entity.hpp"

namespace karvon::persistence {
class db_pool;
}
namespace karvon::metrics {
class registry;
}

namespace karvon::actors {

/// Spawns the supervisor of `kind`. It takes:
/// - (route_atom, key, message): delivers `message` to the entity `key`,
///   activating it first if needed; a request gets the entity's reply, or
///   errc::unavailable while the key is refused after repeated crashes,
///   errc::overloaded when too many messages wait for the key;
/// - (passivate_atom): passivates every entity, refuses new messages, and
///   answers true once all have stopped (for an orderly shutdown);
/// - (stats_atom): answers (active, activations, passivations, crashes).
/// `pool` and `metrics` (may be null) must outlive the actor.
caf::actor spawn_supervisor(caf::actor_system& sys, entity_kind kind,
                            supervisor_options options,
                            persistence::db_pool& pool,
                            metrics::registry* metrics);

} // namespace karvon::actors
