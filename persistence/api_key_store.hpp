// SQL for the api_keys table. Only a hash of each key's secret is stored.
// Every function is blocking: call it on a db_pool thread or from the CLI.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

struct api_key_row {
  std::int64_t id = 0;
  std::string name;
  std::string role;         //!< admin, operator, partner, client
  std::string partner_id;   //!< empty unless role is partner
  std::string lookup;       //!< the public part of the key, unique
  std::string secret_hash;  //!< raw hash bytes
  std::string created_at;   //!< ISO 8601, UTC
  std::string last_used_at; //!< empty when never used
  bool revoked = false;
};

/// Inserts a key; returns its id. Throws on a duplicate lookup (SQLSTATE
/// 23505).
std::int64_t insert_api_key(pqxx::connection_base& c, const api_key_row& row);

/// All keys, revoked ones included, by id.
std::vector<api_key_row> list_api_keys(pqxx::connection_base& c);

/// Marks the key revoked; false when no key has this id or it was revoked.
bool revoke_api_key(pqxx::connection_base& c, std::int64_t id);

/// A number that grows whenever a key is created or revoked, so a running
/// server can poll it cheaply and reload only on change.
std::int64_t api_keys_version(pqxx::connection_base& c);

/// Sets last_used_at for these ids to now() (one statement).
void touch_api_keys(pqxx::connection_base& c,
                    const std::vector<std::int64_t>& ids);

/// True when any key of role admin exists and is not revoked.
bool has_active_admin_key(pqxx::connection_base& c);

} // namespace karvon::persistence
