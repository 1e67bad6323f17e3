// Partners: the companies that submit AI jobs. The registry creates them;
// each partner is then an entity ("partner/<id>") whose actor holds its
// state. The tasks it runs come with the partner workload.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>

#include "actors/entity.hpp"
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

/// Partners travel in messages (and between nodes). CAF 0.17 knows no
/// std::optional, so the budget crosses as a flag and a number.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, partner& x) {
  bool has_budget = x.monthly_budget_usd.has_value();
  double budget = x.monthly_budget_usd.value_or(0.0);
  return f(caf::meta::type_name("karvon.partner"), x.id, x.name, has_budget,
           budget, x.max_concurrency, x.created_at,
           caf::meta::load_callback([&]() -> caf::error {
             x.monthly_budget_usd
                 = has_budget ? std::optional<double>{budget} : std::nullopt;
             return caf::none;
           }));
}

/// The entity kind "partner": its actor loads the partner's row and answers
/// (caf::get_atom) with the `partner`, or errc::not_found when there is no
/// such partner.
entity_kind partner_kind();

/// Registers the partner's message types (see actors/messages.hpp).
void add_partner_message_types(caf::actor_system_config& cfg);

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
