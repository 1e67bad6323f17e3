// An asynchronous HTTP/1.1 client for the sinks (LLM, Telegram, geocoder):
// its own io_context and threads, keep-alive connection pools per (scheme,
// host, port), connect and read timeouts, TLS with peer verification, and
// streamed responses (NDJSON lines, server-sent events) handed over as they
// arrive. Callers on any thread (CAF actors, tests) never block: request()
// only queues, and the answer comes back through a callback on the client's
// own thread. Beast and OpenSSL stay in the .cpp.
//
// Pool rules, per (scheme, host, port):
// - an idle connection is reused (most recently used first) after a check
//   that the server has not closed it; otherwise a new one is opened while
//   fewer than max_connections_per_host are open (connecting, busy or idle);
// - beyond that a request waits in a FIFO queue of at most
//   max_queue_per_host, bounded in time by its response_timeout; a request
//   that finds the queue full fails at once with http_error::overloaded;
// - a finished connection goes back idle unless the response said close, was
//   not read to its end, or max_idle_per_host are idle already; idle ones
//   close after idle_connection_timeout, or as soon as the server closes them.
//
// Retry rule: a request fails over to a fresh connection once, and only when
// all of these hold: it ran on a reused (kept-alive) connection, the server
// closed or reset that connection, no byte of the response had arrived, and
// either no byte of the request had been written or the method is idempotent
// (GET, HEAD, PUT, DELETE, OPTIONS, TRACE). A POST whose bytes were written
// is never re-sent: the server may have acted on it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace karvon::metrics {
class registry;
} // namespace karvon::metrics

namespace karvon::actors {

using http_headers = std::vector<std::pair<std::string, std::string>>;

/// How a streamed body is cut into the pieces on_chunk receives.
enum class stream_format : std::uint8_t {
  by_content_type, //!< sse for text/event-stream, lines otherwise
  lines,           //!< one call per non-empty line (NDJSON), without "\r\n"
  sse, //!< one call per server-sent event: its data lines joined by "\n"
};

struct http_request {
  std::string method = "GET";
  std::string url;      //!< http://host[:port]/path?query or https://...
  http_headers headers; //!< Host, User-Agent, Content-Length added if absent
  std::string body;
  /// DNS, TCP connect and TLS handshake of a new connection together.
  std::chrono::milliseconds connect_timeout{10'000};
  /// Everything from request() to the last byte of the response, waiting
  /// for a free connection included; zero: no limit.
  std::chrono::milliseconds response_timeout{60'000};
  /// The longest any one write of the request or read of the response may
  /// wait; zero: no limit. For streams, where the whole may take minutes
  /// but a stall should not.
  std::chrono::milliseconds read_timeout{0};
  /// Set for a streamed response: each line or event of a 2xx body goes
  /// here as it arrives, and http_response::body stays empty; return false
  /// to stop reading (the response then ends with http_error::aborted). A
  /// non-2xx body is not streamed but collected into body, so the caller
  /// can read the server's error. Runs on the client's thread.
  std::function<bool(std::string_view)> on_chunk;
  stream_format format = stream_format::by_content_type;
};

/// Why an exchange did not complete; none when a response was read whole.
enum class http_error : std::uint8_t {
  none,
  invalid_request,   //!< bad URL, method or header; nothing was sent
  overloaded,        //!< the host's queue is full; nothing was sent
  dns,               //!< the host name did not resolve
  connect,           //!< refused, unreachable, reset during connect
  tls,               //!< handshake failed (certificate, protocol)
  timeout,           //!< connect, read or response timeout
  connection_closed, //!< the server closed or reset before the end
  bad_response,      //!< malformed HTTP, or over a header limit
  too_large,         //!< body over max_body_bytes or line over max_line_bytes
  aborted,           //!< on_chunk returned false
  stopped,           //!< the client was stopped
};

/// "none", "invalid_request", ... (also the metric's outcome label).
const char* to_string(http_error e);

struct http_response {
  int status = 0;       //!< 0 whenever error is set
  http_headers headers; //!< names in lower case, in the order received
  std::string body;     //!< empty when streamed to on_chunk
  std::string error;    //!< "connect timeout", "connection refused", ...; empty
                        //!< when a response was read whole
  http_error kind = http_error::none;
  /// False only when the request certainly never left this process (bad
  /// URL, queue full, DNS, connect or TLS failure): then a retry cannot
  /// repeat an effect on the server.
  bool request_sent = false;

  /// A 2xx response read whole.
  bool ok() const { return error.empty() && status >= 200 && status < 300; }

  /// The first value of a header (name in lower case), empty when absent.
  std::string_view header(std::string_view lower_name) const;

  /// Retry-After in seconds (delta-seconds or an HTTP-date relative to
  /// `now`, never negative); nullopt when absent or malformed.
  std::optional<std::chrono::seconds>
  retry_after(std::chrono::system_clock::time_point now
              = std::chrono::system_clock::now()) const;
};

/// A Retry-After value (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date in
/// any of its three formats, as seconds from `now` (a past date is zero);
/// nullopt when malformed. Any thread.
std::optional<std::chrono::seconds>
parse_retry_after(std::string_view value,
                  std::chrono::system_clock::time_point now);

/// An HTTP-date (IMF-fixdate, RFC 850 or asctime) as a time point; nullopt
/// when malformed. Any thread.
std::optional<std::chrono::system_clock::time_point>
parse_http_date(std::string_view value);

struct http_client_options {
  int threads = 1;
  std::size_t max_connections_per_host = 8;
  std::size_t max_idle_per_host = 8;
  std::size_t max_queue_per_host = 256;
  std::chrono::milliseconds idle_connection_timeout{30'000};
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_body_bytes = 16 * 1024 * 1024; //!< bodies not streamed
  std::size_t max_line_bytes = 1024 * 1024; //!< a line or event of a stream
  std::string user_agent = "karvon/0.1";    //!< sent unless the request has one
  /// PEM file of CAs trusted in addition to the system store (a corporate
  /// proxy's, a test CA); empty for none. There is no switch to turn peer
  /// verification off.
  std::string extra_ca_file;
  std::string extra_ca_pem;             //!< the same as PEM text
  metrics::registry* metrics = nullptr; //!< optional; must outlive the client
};

class http_client {
public:
  /// Starts the threads. Throws std::runtime_error when the system CA store
  /// or an extra CA cannot be loaded (a start-up configuration error).
  explicit http_client(http_client_options options = {});
  /// stop().
  ~http_client();

  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Sends `req`; `done` is called exactly once, on a client thread, never
  /// inside this call, except after stop(), when it is called at once here
  /// with http_error::stopped. Any thread; never blocks.
  void request(http_request req, std::function<void(http_response)> done);

  /// Fails everything queued or in flight with http_error::stopped (each
  /// done called once), closes every connection and joins the threads.
  /// Idempotent. Any thread but the client's own (not from a callback).
  void stop();

  /// Connections opened so far, over all hosts (for tests and metrics).
  std::uint64_t connections_opened() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::actors
