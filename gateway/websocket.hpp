// GET /api/v1/ws: the chat assistant over a WebSocket (API.md, "WebSocket
// /api/v1/ws"). Each `ask` frame becomes a POST /api/v1/chat/ask through the
// dispatcher, so auth, roles, rate limits and validation are HTTP's. The
// route below answers plain GETs and the server's own check of an upgrade;
// the upgraded connection itself is served by websocket.cpp. No Beast types
// here: the server hands a connection over as its native socket.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/http.hpp"
#include "gateway/router.hpp"

namespace boost::asio {
class io_context;
}
namespace karvon::metrics {
class registry;
}

namespace karvon::gateway {

class dispatcher;

/// The path of the WebSocket endpoint.
inline constexpr std::string_view websocket_path = "/api/v1/ws";

/// Marks the server's own check of an upgrade (value "1"): a GET
/// /api/v1/ws that carries it is answered 200 instead of 426. The server
/// removes this header from every request a client sends, so only the
/// server can set it.
inline constexpr std::string_view websocket_check_header = "x-karvon-ws-check";

/// Adds GET /api/v1/ws with `who`, the access of the chat ask route (client,
/// or anonymous when chat.allow_anonymous). A plain GET gets 426
/// upgrade_required; the server's check (websocket_check_header) gets 200
/// once the dispatcher has passed the key, role and rate limit. Call before
/// the server starts, like router::add.
void add_websocket_route(router& r, access who);

namespace detail {

// The hand-over between server.cpp and websocket.cpp; nothing else uses it.

/// Metrics of every WebSocket of one server, registered once.
struct websocket_metrics;

/// karvon_ws_connections and karvon_ws_closed_total{reason} in `m`.
std::shared_ptr<websocket_metrics>
register_websocket_metrics(metrics::registry& m);

/// A served WebSocket as the server sees it. Both calls are thread-safe
/// and return at once; the work is posted to the connection's strand.
class websocket_connection {
public:
  virtual ~websocket_connection() = default;
  /// The server is stopping: flush what is queued, then close 1001.
  virtual void shutdown() = 0;
  /// Closes the TCP connection now, with no close frame.
  virtual void force_close() = 0;
};

struct websocket_handoff {
  int fd = -1;     //!< the connected TCP socket; the connection owns it now
  request upgrade; //!< the upgrade request (headers, target, client_ip)
  /// "Bearer <key>" checked already, or empty: anonymous, or to come in an
  /// auth message when `auth_message_required`.
  std::string authorization;
  bool auth_message_required = false;
  dispatcher* disp = nullptr;            //!< outlives the server
  std::size_t max_message_bytes = 0;     //!< incoming; over it: close 1009
  std::chrono::milliseconds ask_timeout; //!< the server's handler timeout
  std::shared_ptr<websocket_metrics> metrics;
  /// Kept until the connection ends: the server's connection count and the
  /// io_context live as long as it.
  std::shared_ptr<void> owner;
};

/// Answers the upgrade (101) on a strand of `ioc` and serves the socket.
/// Never throws; a socket that cannot be taken over is closed.
std::shared_ptr<websocket_connection>
start_websocket(boost::asio::io_context& ioc, websocket_handoff h);

} // namespace detail

} // namespace karvon::gateway
