// SQL for the partners table. Blocking: call on a db_pool thread.
#pragma once

#include <optional>
#include <string>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

struct partner_row {
  std::string id;
  std::string name;
  std::optional<double> monthly_budget_usd;
  int max_concurrency = 4;
  std::string created_at; //!< ISO 8601 UTC, filled by the database
};

/// Inserts the partner and returns it as stored. Throws pqxx::unique_violation
/// (a db_error of kind conflict, through the pool) when the id is taken.
partner_row insert_partner(pqxx::connection_base& c, const partner_row& row);

/// The partner with this id.
std::optional<partner_row> find_partner(pqxx::connection_base& c,
                                        const std::string& id);

} // namespace karvon::persistence
