// The HTTP/1.1 server: Boost.Beast on `threads` I/O threads, keep-alive,
// and the limits that protect it from abusive clients (header size, body
// size, read timeouts, a cap on open connections). Requests go to the
// dispatcher; Beast types stay inside server.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "config/settings.hpp"

namespace karvon::metrics {
class registry;
}

namespace karvon::gateway {

class dispatcher;

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0; //!< 0: any free port
  int threads = 1;
  config::http_settings http;
  /// A handler that has not answered by then gets 503 for it.
  std::chrono::milliseconds handler_timeout{60000};
};

class http_server {
public:
  /// `metrics` must outlive the server.
  http_server(server_options options, metrics::registry& metrics);
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds and listens without accepting yet: connections wait in the
  /// backlog until start(). Throws std::system_error ("cannot listen on
  /// HOST:PORT: ...") when the address cannot be bound (in use, not local,
  /// no permission). Idempotent.
  void listen();

  /// Listens if it does not yet, then accepts and serves requests through
  /// `d`, which must outlive the server. Throws as listen().
  void start(dispatcher& d);

  /// The bound port (useful with port 0).
  std::uint16_t port() const;

  /// Stops accepting, lets requests in flight finish within `grace`, closes
  /// idle and remaining connections, joins the threads. Idempotent.
  void stop(std::chrono::milliseconds grace);

  /// Connections open now.
  std::size_t open_connections() const;

  struct impl; // opaque; public only so that server.cpp's sessions see it

private:
  std::shared_ptr<impl> impl_;
};

} // namespace karvon::gateway
