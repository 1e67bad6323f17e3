#include "actors/idempotency.hpp"

#include <memory>

#include <sodium.h>

#include "persistence/db_pool.hpp"
#include "persistence/idempotency_store.hpp"

namespace karvon::actors {

namespace {

failure from_db(const persistence::db_error& e) {
  using kind = persistence::db_error::kind;
  if (e.what == kind::overloaded)
    return {errc::overloaded, "the database is busy; retry later", {}};
  return {errc::unavailable, "the database is unavailable", {}};
}

// What makes two requests "the same": method, path and body, hashed so that
// large bodies are not stored twice.
std::string request_hash(std::string_view method, std::string_view path,
                         std::string_view body) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, crypto_generichash_BYTES);
  auto add = [&](std::string_view part) {
    // Lengths first, so that ("ab", "c") and ("a", "bc") differ.
    auto n = static_cast<std::uint64_t>(part.size());
    crypto_generichash_update(&state, reinterpret_cast<unsigned char*>(&n),
                              sizeof n);
    crypto_generichash_update(
        &state, reinterpret_cast<const unsigned char*>(part.data()),
        part.size());
  };
  add(method);
  add(path);
  add(body);
  std::string out(crypto_generichash_BYTES, '\0');
  crypto_generichash_final(&state, reinterpret_cast<unsigned char*>(out.data()),
                           out.size());
  return out;
}

} // namespace

bool valid_idempotency_key(std::string_view key) {
  if (key.empty() || key.size() > 255)
    return false;
  for (char c : key)
    if (c < 0x21 || c > 0x7e)
      return false;
  return true;
}

idempotency_guard::idempotency_guard(persistence::db_pool& pool)
    : pool_(&pool) {}

void idempotency_guard::begin(
    std::string scope, std::string key, std::string_view method,
    std::string_view path, std::string_view body,
    std::function<void(result<idempotency_claim>)> done) {
  auto hash = request_hash(method, path, body);
  auto state = std::make_shared<persistence::idempotency_state>();
  bool queued = pool_->submit(
      [state, scope = std::move(scope), key = std::move(key),
       hash = std::move(hash)](pqxx::connection_base& c) {
        *state = persistence::idempotency_begin(c, scope, key, hash);
      },
      [state, done](std::optional<persistence::db_error> err) {
        if (err)
          return done(from_db(*err));
        idempotency_claim claim;
        using in = persistence::idempotency_outcome;
        using out = idempotency_claim::outcome;
        switch (state->what) {
        case in::proceed:
          claim.what = out::proceed;
          break;
        case in::replay:
          claim.what = out::replay;
          break;
        case in::conflict:
          claim.what = out::conflict;
          break;
        case in::in_progress:
          claim.what = out::in_progress;
          break;
        }
        claim.status = state->status;
        claim.body = std::move(state->body);
        done(std::move(claim));
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

void idempotency_guard::complete(
    std::string scope, std::string key, int status, std::string body,
    std::function<void(std::optional<failure>)> done) {
  bool queued = pool_->submit(
      [scope = std::move(scope), key = std::move(key), status,
       body = std::move(body)](pqxx::connection_base& c) {
        persistence::idempotency_complete(c, scope, key, status, body);
      },
      [done](std::optional<persistence::db_error> err) {
        if (err)
          return done(from_db(*err));
        done(std::nullopt);
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

} // namespace karvon::actors
