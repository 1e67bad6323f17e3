// Everything between "a whole request arrived" and "its handler runs": route
// match, authentication, roles, rate limits, content type, JSON parsing, and
// the metrics and log line of every response. No sockets here, so all of it
// is tested without a server.
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "config/settings.hpp"
#include "gateway/http.hpp"
#include "gateway/router.hpp"

namespace karvon::metrics {
class registry;
}
namespace karvon::actors {
class clock;
class key_directory;
class idempotency_guard;
} // namespace karvon::actors

namespace karvon::gateway {

class dispatcher {
public:
  /// `keys` may be null: then every route that needs a key answers 401.
  dispatcher(router routes, const config::http_settings& http,
             actors::key_directory* keys, metrics::registry& metrics,
             const actors::clock& clock);
  ~dispatcher();

  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// Runs the request through the pipeline; `done` is called exactly once,
  /// possibly before this returns, possibly later from another thread.
  /// Called on a Beast I/O thread: never blocks.
  void dispatch(request req, responder done);

  /// Honours Idempotency-Key on idempotent routes through `guard` (which
  /// must outlive the dispatcher). Without one the header is ignored. Call
  /// before the server starts.
  void set_idempotency(actors::idempotency_guard* guard);

  /// Counts a response the connection made itself (400 on bad framing, 413,
  /// 431, 503 over the connection cap), under route "unmatched".
  void record_early(int status, std::chrono::steady_clock::duration took);

  const router& routes() const;

private:
  void run_handler(const route& r, const request& req, responder finish);

  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::gateway
