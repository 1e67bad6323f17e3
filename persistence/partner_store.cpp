#include "persistence/partner_store.hpp"

#include <pqxx/pqxx>

namespace karvon::persistence {

namespace {

constexpr const char* columns
    = "id, name, monthly_budget_usd::float8, max_concurrency, "
      "to_char(created_at AT TIME ZONE 'UTC', "
      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

partner_row from_row(const pqxx::row& r) {
  partner_row p;
  p.id = r[0].as<std::string>();
  p.name = r[1].as<std::string>();
  if (!r[2].is_null())
    p.monthly_budget_usd = r[2].as<double>();
  p.max_concurrency = r[3].as<int>();
  p.created_at = r[4].as<std::string>();
  return p;
}

} // namespace

partner_row insert_partner(pqxx::connection_base& c, const partner_row& row) {
  pqxx::work tx{c};
  auto r = tx.exec_params1(
      std::string{"INSERT INTO partners (id, name, monthly_budget_usd, "
                  "max_concurrency) VALUES ($1, $2, $3, $4) RETURNING "}
          + columns,
      row.id, row.name, row.monthly_budget_usd, row.max_concurrency);
  auto stored = from_row(r);
  tx.commit();
  return stored;
}

std::optional<partner_row> find_partner(pqxx::connection_base& c,
                                        const std::string& id) {
  pqxx::nontransaction tx{c};
  auto r = tx.exec_params(
      std::string{"SELECT "} + columns + " FROM partners WHERE id = $1", id);
  if (r.empty())
    return std::nullopt;
  return from_row(r[0]);
}

} // namespace karvon::persistence
