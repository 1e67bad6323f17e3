// The messages of the entity runtime. Atom texts are registered names that
// travel between nodes: never rename them. None reuses the text of one of
// CAF's predefined atoms (caf::get_atom is "get", and so on).
#pragma once

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace karvon::actors {

/// (route, key, message): deliver `message` to the entity `key`; a request
/// gets the entity's reply.
using route_atom = caf::atom_constant<caf::atom("route")>;

/// Supervisor to entity: flush and stop, unless busy.
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;

/// Entity to supervisor: declined to passivate, still working.
using busy_atom = caf::atom_constant<caf::atom("stillbusy")>;

/// Entity to itself: its state has been read from the database.
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;

/// Entity to itself: its state has been written before it stops.
using saved_atom = caf::atom_constant<caf::atom("saved")>;

/// Supervisor to itself: look for idle entities.
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;

/// (stats) request to a supervisor: active entities and counters.
using stats_atom = caf::atom_constant<caf::atom("kstats")>;

/// Registers the runtime's message types with the actor system, so that the
/// cluster can send them to other nodes unchanged.
void add_message_types(caf::actor_system_config& cfg);

} // namespace karvon::actors
