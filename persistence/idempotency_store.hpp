// SQL for the idempotency_keys table (migration 0004): the first response
// to a request that carried an Idempotency-Key, replayed to its repeats.
// Every function is blocking: call it on a db_pool thread.
//
// Rules:
// - The same (scope, key) with the same request hash: the first caller
//   proceeds; a repeat while it runs is in_progress (answer 409, or retry
//   later); a repeat after it completed replays its status and body.
// - The same (scope, key) with another request hash: conflict (409), for as
//   long as the key lives.
// - A first request that fails with 5xx or 429 releases the key: nothing
//   is recorded, and the next request with the key proceeds as new. Other
//   answers (2xx, 3xx, the other 4xx) are recorded and replayed.
// - A request still pending after `lease` is taken to have died with its
//   node; the next request with the same hash takes the key over.
// - A key lives `ttl` after it began, and `ttl` after its response once it
//   completed; then it is forgotten and idempotency_delete_expired removes it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

enum class idempotency_outcome {
  proceed,     //!< first use of the key (or taken over): run the request
  replay,      //!< answered before: send status and body again
  conflict,    //!< the key was used for a different request
  in_progress, //!< the first request with this key is still running
};

struct idempotency_state {
  idempotency_outcome what = idempotency_outcome::proceed;
  int status = 0;   //!< replay only
  std::string body; //!< replay only
};

struct idempotency_limits {
  std::chrono::seconds ttl{24 * 60 * 60}; //!< how long a key is remembered
  std::chrono::seconds lease{5 * 60};     //!< a pending request's life
};

/// Claims (scope, key) for a request whose hash is `request_hash` (raw
/// bytes), or says why not. Exactly one of several concurrent identical
/// requests gets proceed. Throws what libpqxx throws.
idempotency_state idempotency_begin(pqxx::connection_base& c,
                                    const std::string& scope,
                                    const std::string& key,
                                    const std::string& request_hash,
                                    const idempotency_limits& limits = {});

/// Records the response of the request that got proceed; with a 5xx or 429
/// status releases the key instead. Returns true when a response was
/// recorded (false: released, or the key was not pending). Throws what
/// libpqxx throws.
bool idempotency_complete(pqxx::connection_base& c, const std::string& scope,
                          const std::string& key, int status,
                          const std::string& body,
                          const idempotency_limits& limits = {});

/// Deletes up to `max_rows` expired keys; returns how many. Call it
/// periodically (a short transaction per call).
std::int64_t idempotency_delete_expired(pqxx::connection_base& c,
                                        int max_rows = 10000);

} // namespace karvon::persistence
