// Idempotency-Key for POST endpoints that create things: a repeat returns
// the first response; the same key with another request is a conflict.
// The rules are persistence/idempotency_store.hpp's; this class runs them
// on the database pool for callers that must not block (the gateway).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "actors/errors.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

struct idempotency_claim {
  enum class outcome { proceed, replay, conflict, in_progress };
  outcome what = outcome::proceed;
  int status = 0;   //!< replay only
  std::string body; //!< replay only
};

/// True when `key` may be an Idempotency-Key: 1 to 255 visible ASCII
/// characters (the IETF draft leaves the format to the server).
bool valid_idempotency_key(std::string_view key);

class idempotency_guard {
public:
  /// `pool` must outlive the guard.
  explicit idempotency_guard(persistence::db_pool& pool);

  /// Claims `key` in `scope` for a request of this method, path and body.
  /// Calls `done` once, from a database thread: the claim, or the failure
  /// (overloaded, unavailable). Never blocks.
  void begin(std::string scope, std::string key, std::string_view method,
             std::string_view path, std::string_view body,
             std::function<void(result<idempotency_claim>)> done);

  /// Records the response of a request that got proceed (a 5xx or 429
  /// releases the key instead); `done` once, from a database thread, with
  /// the failure if it could not be recorded.
  void complete(std::string scope, std::string key, int status,
                std::string body,
                std::function<void(std::optional<failure>)> done);

private:
  persistence::db_pool* pool_;
};

} // namespace karvon::actors
