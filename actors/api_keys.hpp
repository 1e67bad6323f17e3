// API keys: their format, how they are made and checked, and the in-memory
// directory the gateway authenticates against without touching the
// database on the request path.
//
// A key reads "kv_<lookup>_<secret>": 12 hex characters that find the row,
// then 43 base64url characters (256 random bits). Only a BLAKE2b-256 hash of
// the secret is stored; the presented secret's hash is compared in constant
// time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace karvon::persistence {
class db_pool;
}
namespace karvon::metrics {
class registry;
}

namespace karvon::actors {

enum class role { admin, operator_, partner, client };

/// "admin", "operator", "partner", "client".
const char* to_string(role r);

/// The role named by `text`; nullopt for anything else.
std::optional<role> parse_role(std::string_view text);

/// Who is calling, once a key has been checked.
struct principal {
  std::int64_t key_id = 0;
  role who = role::client;
  std::string partner_id; //!< set for partner keys only
  std::string name;
};

struct generated_key {
  std::string text;        //!< the key to give the user, once
  std::string lookup;      //!< public part, stored
  std::string secret_hash; //!< raw hash bytes, stored
};

/// A fresh random key. Aborts only if libsodium cannot initialise.
generated_key generate_api_key();

struct key_parts {
  std::string_view lookup;
  std::string_view secret;
};

/// Splits a presented key; nullopt when it does not have the key format.
std::optional<key_parts> split_api_key(std::string_view text);

/// BLAKE2b-256 of the secret, raw bytes.
std::string hash_secret(std::string_view secret);

enum class auth_failure { malformed, unknown, revoked };

/// "malformed", "unknown", "revoked".
const char* to_string(auth_failure f);

/// The keys of the database, held in memory and refreshed in the background.
class key_directory {
public:
  /// Loads nothing yet; call load() and then start().
  key_directory(persistence::db_pool& pool, metrics::registry* metrics);
  ~key_directory();

  key_directory(const key_directory&) = delete;
  key_directory& operator=(const key_directory&) = delete;

  /// Loads every key through the pool and waits for it, up to `timeout`.
  /// False when the database did not answer. For start-up only: it blocks.
  bool load(std::chrono::milliseconds timeout);

  /// Polls the keys' version every `interval` and reloads on change, so a
  /// revoked key stops working within about `interval`; records last use.
  void start(std::chrono::milliseconds interval);

  /// Stops the background thread and writes pending last-use times.
  void stop();

  /// Checks a presented key against memory. Never blocks on I/O; safe from
  /// any thread.
  std::variant<principal, auth_failure> authenticate(std::string_view key);

  /// Keys known (revoked ones included).
  std::size_t size() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace karvon::actors
