// The probe: a diagnostic entity kind ("probe/<id>") holding one durable
// counter. POST /admin/probe/{id} adds to it through whichever node gets the
// request; the answer names the node that owns the key. Operators use it to
// check routing after a change of the cluster; the cluster tests use it to
// count every acknowledged write exactly once and to check that no key is
// ever active on two nodes at once (each activation is logged).
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

#include "actors/entity.hpp"

namespace karvon::actors {

struct probe_state {
  std::string id;
  std::int64_t value = 0;
  std::string node_id; //!< the node that answered
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, probe_state& x) {
  return f(caf::meta::type_name("karvon.probe_state"), x.id, x.value,
           x.node_id);
}

/// The kind "probe" as run by node `node_id`. Handlers: (caf::add_atom,
/// int64 n) commits value + n, then answers the probe_state;
/// (caf::get_atom) answers it.
entity_kind probe_kind(std::string node_id);

/// Registers probe_state with the actor system.
void add_probe_message_types(caf::actor_system_config& cfg);

} // namespace karvon::actors
