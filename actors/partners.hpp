// Partners: the companies that submit AI jobs. This is their registry; the
// partner entity actor that runs their tasks comes with the partner
// workload.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "actors/errors.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

struct partner {
  std::string id; //!< [a-z0-9][a-z0-9_-]{0,63}; the entity key's id
  std::string name;
  std::optional<double> monthly_budget_usd; //!< none: no budget cap
  int max_concurrency = 4;
  std::string created_at; //!< ISO 8601 UTC
};

/// True when `id` may name a partner (and so an entity key).
bool valid_partner_id(const std::string& id);

class partner_registry {
public:
  /// `pool` must outlive the registry.
  explicit partner_registry(persistence::db_pool& pool);

  /// Creates the partner (an empty id gets a generated one). Calls `done`
  /// once from a database thread: the stored partner, or conflict when the
  /// id is taken, overloaded or unavailable when the database cannot take
  /// it now. Never blocks.
  void create(partner p, std::function<void(result<partner>)> done);

  /// The partner with this id, or not_found.
  void find(std::string id, std::function<void(result<partner>)> done);

private:
  persistence::db_pool* pool_;
};

} // namespace karvon::actors
