#include "actors/api_keys.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "metrics/registry.hpp"
#include "persistence/api_key_store.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::actors {

namespace {

constexpr std::string_view key_prefix = "kv_";
constexpr std::size_t lookup_bytes = 6;  // 12 hex characters
constexpr std::size_t secret_bytes = 32; // 43 base64url characters
constexpr std::size_t lookup_chars = lookup_bytes * 2;
constexpr std::size_t secret_chars = 43;
constexpr std::size_t hash_bytes = crypto_generichash_BYTES; // 32

void init_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) {
      // Without a working random source no key is safe to issue.
      spdlog::critical("libsodium failed to initialise");
      std::abort();
    }
  });
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

bool is_base64url(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
          || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
      return false;
  return true;
}

} // namespace

const char* to_string(role r) {
  switch (r) {
  case role::admin:
    return "admin";
  case role::operator_:
    return "operator";
  case role::partner:
    return "partner";
  case role::client:
    return "client";
  }
  return "client";
}

std::optional<role> parse_role(std::string_view text) {
  if (text == "admin")
    return role::admin;
  if (text == "operator")
    return role::operator_;
  if (text == "partner")
    return role::partner;
  if (text == "client")
    return role::client;
  return std::nullopt;
}

const char* to_string(auth_failure f) {
  switch (f) {
  case auth_failure::malformed:
    return "malformed";
  case auth_failure::unknown:
    return "unknown";
  case auth_failure::revoked:
    return "revoked";
  }
  return "unknown";
}

std::string hash_secret(std::string_view secret) {
  init_sodium();
  std::string out(hash_bytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(secret.data()),
                     secret.size(), nullptr, 0);
  return out;
}

generated_key generate_api_key() {
  init_sodium();
  unsigned char lookup[lookup_bytes];
  unsigned char secret[secret_bytes];
  randombytes_buf(lookup, sizeof lookup);
  randombytes_buf(secret, sizeof secret);
  char lookup_hex[lookup_chars + 1];
  sodium_bin2hex(lookup_hex, sizeof lookup_hex, lookup, sizeof lookup);
  char secret_text[sodium_base64_ENCODED_LEN(
      secret_bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(secret_text, sizeof secret_text, secret, sizeof secret,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(secret, sizeof secret);
  generated_key key;
  key.lookup = lookup_hex;
  key.text = std::string{key_prefix} + key.lookup + "_" + secret_text;
  key.secret_hash = hash_secret(secret_text);
  sodium_memzero(secret_text, sizeof secret_text);
  return key;
}

std::optional<key_parts> split_api_key(std::string_view text) {
  if (text.size() != key_prefix.size() + lookup_chars + 1 + secret_chars)
    return std::nullopt;
  if (text.substr(0, key_prefix.size()) != key_prefix)
    return std::nullopt;
  auto lookup = text.substr(key_prefix.size(), lookup_chars);
  if (text[key_prefix.size() + lookup_chars] != '_')
    return std::nullopt;
  auto secret = text.substr(key_prefix.size() + lookup_chars + 1);
  if (!is_hex(lookup) || !is_base64url(secret))
    return std::nullopt;
  return key_parts{lookup, secret};
}

struct key_directory::impl {
  struct entry {
    principal who;
    std::string secret_hash;
    bool revoked = false;
    // Set on use; collected when last-use times are written. An atomic per
    // key keeps the request path free of a shared lock.
    mutable std::atomic<bool> used{false};
  };
  using snapshot = std::unordered_map<std::string, entry>;

  persistence::db_pool* pool = nullptr;
  std::shared_ptr<const snapshot> keys = std::make_shared<snapshot>();
  std::atomic<std::int64_t> version{-1};
  std::atomic<bool> refresh_in_flight{false};

  std::mutex used_mutex;
  std::unordered_set<std::int64_t> used;

  std::mutex run_mutex;
  std::condition_variable run_cv;
  bool stopping = false;
  std::thread poller;

  metrics::counter* reloads = nullptr;
  metrics::counter* reload_failures = nullptr;

  std::shared_ptr<const snapshot> current() const {
    return std::atomic_load(&keys);
  }

  // Moves the use flags of `keys` into `used`, to be written.
  void collect_used(const snapshot& keys_in_use) {
    std::lock_guard lock{used_mutex};
    for (auto& [lookup, e] : keys_in_use)
      if (e.used.exchange(false))
        used.insert(e.who.key_id);
  }

  void install(const std::vector<persistence::api_key_row>& rows,
               std::int64_t v) {
    auto next = std::make_shared<snapshot>();
    for (auto& row : rows) {
      auto r = parse_role(row.role);
      if (!r)
        continue; // the table's check constraint makes this unreachable
      auto& e = (*next)[row.lookup]; // built in place: it holds an atomic
      e.who = principal{row.id, *r, row.partner_id, row.name};
      e.secret_hash = row.secret_hash;
      e.revoked = row.revoked;
    }
    auto previous = current();
    std::atomic_store(&keys, std::shared_ptr<const snapshot>{next});
    // A request may still mark the old snapshot after this; such a use is
    // recorded at the next use of the key.
    collect_used(*previous);
    version.store(v);
    if (reloads)
      reloads->inc();
  }

  // Runs on a pool thread.
  void reload_if_changed(pqxx::connection_base& c, bool force) {
    auto v = persistence::api_keys_version(c);
    if (!force && v == version.load())
      return;
    install(persistence::list_api_keys(c), v);
  }

  void flush_used(const std::shared_ptr<impl>& self) {
    collect_used(*current());
    std::vector<std::int64_t> ids;
    {
      std::lock_guard lock{used_mutex};
      ids.assign(used.begin(), used.end());
      used.clear();
    }
    if (ids.empty())
      return;
    pool->submit(
        [ids](pqxx::connection_base& c) {
          persistence::touch_api_keys(c, ids);
        },
        [self, ids](std::optional<persistence::db_error> err) {
          if (!err)
            return;
          // Put them back: last use is advisory, but worth a second try.
          std::lock_guard lock{self->used_mutex};
          self->used.insert(ids.begin(), ids.end());
        });
  }
};

key_directory::key_directory(persistence::db_pool& pool,
                             metrics::registry* metrics)
    : impl_(std::make_shared<impl>()) {
  impl_->pool = &pool;
  if (metrics) {
    impl_->reloads = &metrics
                          ->counters("karvon_api_key_reloads_total",
                                     "Times the API keys were reloaded.", {})
                          .with({});
    impl_->reload_failures
        = &metrics
               ->counters("karvon_api_key_reload_failures_total",
                          "Failed polls of the API keys' version.", {})
               .with({});
  }
}

key_directory::~key_directory() {
  stop();
}

bool key_directory::load(std::chrono::milliseconds timeout) {
  auto done = std::make_shared<std::promise<bool>>();
  auto result = done->get_future();
  auto self = impl_;
  bool queued = impl_->pool->submit(
      [self](pqxx::connection_base& c) { self->reload_if_changed(c, true); },
      [done](std::optional<persistence::db_error> err) {
        done->set_value(!err);
      });
  if (!queued)
    return false;
  if (result.wait_for(timeout) != std::future_status::ready)
    return false;
  return result.get();
}

void key_directory::start(std::chrono::milliseconds interval) {
  auto self = impl_;
  impl_->poller = std::thread([self, interval] {
    int ticks = 0;
    std::unique_lock lock{self->run_mutex};
    while (!self->stopping) {
      self->run_cv.wait_for(lock, interval);
      if (self->stopping)
        break;
      lock.unlock();
      // One poll in flight at most: a slow database must not pile them up.
      if (!self->refresh_in_flight.exchange(true)) {
        bool queued = self->pool->submit(
            [self](pqxx::connection_base& c) {
              self->reload_if_changed(c, false);
            },
            [self](std::optional<persistence::db_error> err) {
              self->refresh_in_flight.store(false);
              if (err && self->reload_failures)
                self->reload_failures->inc();
            });
        if (!queued)
          self->refresh_in_flight.store(false);
      }
      if (++ticks % 20 == 0)
        self->flush_used(self);
      lock.lock();
    }
  });
}

void key_directory::stop() {
  {
    std::lock_guard lock{impl_->run_mutex};
    if (impl_->stopping)
      return;
    impl_->stopping = true;
  }
  impl_->run_cv.notify_all();
  if (impl_->poller.joinable())
    impl_->poller.join();
  impl_->flush_used(impl_);
}

std::variant<principal, auth_failure>
key_directory::authenticate(std::string_view key) {
  auto parts = split_api_key(key);
  if (!parts)
    return auth_failure::malformed;
  auto keys = impl_->current();
  auto it = keys->find(std::string{parts->lookup});
  // Hash even when the lookup is unknown, so that timing says nothing about
  // which lookups exist.
  auto presented = hash_secret(parts->secret);
  if (it == keys->end())
    return auth_failure::unknown;
  auto& e = it->second;
  if (e.secret_hash.size() != presented.size()
      || sodium_memcmp(e.secret_hash.data(), presented.data(), presented.size())
             != 0)
    return auth_failure::unknown;
  if (e.revoked)
    return auth_failure::revoked;
  if (!e.used.load(std::memory_order_relaxed))
    e.used.store(true, std::memory_order_relaxed);
  return e.who;
}

std::size_t key_directory::size() const {
  return impl_->current()->size();
}

} // namespace karvon::actors
