// Dead letters: jobs a sink gave up on after their last retry. Operators
// read them and replay them (GET /admin/dead-letters, POST
// /admin/dead-letters/{id}/replay); a replay submits the job again to the
// sink that ran it.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/actor.hpp>

#include "actors/errors.hpp"
#include "persistence/dead_letter_store.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

using dead_letter = persistence::dead_letter_row;
using dead_letter_query = persistence::dead_letter_query;

class dead_letter_service {
public:
  /// `pool` must outlive the service.
  explicit dead_letter_service(persistence::db_pool& pool);

  /// Makes a sink replayable by its name (sink_config::name). Call before
  /// traffic; not thread-safe.
  void add_sink(const std::string& name, caf::actor sink);

  /// The dead letters `q` selects, newest first. `done` once, from a
  /// database thread. Never blocks.
  void list(dead_letter_query q,
            std::function<void(result<std::vector<dead_letter>>)> done);

  /// Submits dead letter `id` to its sink again (the outcome is the sink's:
  /// a job that fails again becomes a new dead letter) and records the
  /// replay. `done` once: the row as replayed; not_found; conflict when its
  /// sink does not run on this node. Never blocks.
  void replay(std::int64_t id, std::function<void(result<dead_letter>)> done);

private:
  persistence::db_pool* pool_;
  std::map<std::string, caf::actor> sinks_;
};

} // namespace karvon::actors
