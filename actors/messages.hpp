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

/// (forward, key, message, hops) to a node router: a routed message on its
/// way to the node serving `key` now, after `hops` hand-overs.
using forward_atom = caf::atom_constant<caf::atom("kforward")>;

/// (passivate, moved, std::vector<uint32_t> shards) to a supervisor:
/// passivate the entities of these shards that this node no longer owns (a
/// hand-off); the answer (true) comes once they have all stopped.
using moved_atom = caf::atom_constant<caf::atom("kmoved")>;

/// (drop) to a supervisor: stop, without saving, the entities whose shard
/// lease this node lost (it can no longer write for them).
using drop_atom = caf::atom_constant<caf::atom("kdrop")>;

/// (released) between node routers: the sender released shard leases, so
/// the receiver should look for leases to acquire now.
using released_atom = caf::atom_constant<caf::atom("kreleased")>;

/// The name of this node's node router in the actor system's registry;
/// supervisors send it the messages for keys this node does not serve.
constexpr caf::atom_value node_router_name = caf::atom("knoderoute");

/// Registers the runtime's message types with the actor system, so that the
/// cluster can send them to other nodes unchanged.
void add_message_types(caf::actor_system_config& cfg);

} // namespace karvon::actors
