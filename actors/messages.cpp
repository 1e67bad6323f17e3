#include "actors/messages.hpp"

#include <caf/actor_system_config.hpp>

#include "actors/errors.hpp"

namespace karvon::actors {

void add_message_types(caf::actor_system_config& cfg) {
  // The runtime's messages are atoms, strings and caf::message, which CAF
  // knows already; what an entity kind sends inside them, its module
  // registers next to its own types. karvon's error category renders here.
  add_error_category(cfg);
}

} // namespace karvon::actors
