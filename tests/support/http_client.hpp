// A small blocking HTTP/1.1 client for tests: real sockets, one request per
// call, or raw bytes for the malformed requests the server must refuse.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace karvon::testing {

struct http_reply {
  int status = 0; //!< 0: no response (connection closed, timeout)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool closed = false; //!< the server closed the connection after it
  std::string error;   //!< why there is no response

  /// The header's value (case-insensitive name), empty when absent.
  std::string header(const std::string& name) const;
};

using headers = std::vector<std::pair<std::string, std::string>>;

/// A keep-alive connection to 127.0.0.1:port.
class http_connection {
public:
  explicit http_connection(std::uint16_t port);
  ~http_connection();

  /// Sends one request and reads its response.
  http_reply request(const std::string& method, const std::string& target,
                     const std::string& body = {}, const headers& h = {},
                     std::chrono::milliseconds timeout
                     = std::chrono::seconds{10});

  /// Sends bytes as they are, then reads one response.
  http_reply raw(const std::string& bytes,
                 std::chrono::milliseconds timeout = std::chrono::seconds{10});

  /// Sends bytes and returns without reading.
  void send(const std::string& bytes);

  /// Reads one response.
  http_reply read(std::chrono::milliseconds timeout = std::chrono::seconds{10});

  /// True when the server has closed the connection (reads EOF in time).
  bool closed_by_server(std::chrono::milliseconds within);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  bool last_was_head_ = false;
};

/// One request on a fresh connection.
http_reply http_request(std::uint16_t port, const std::string& method,
                        const std::string& target, const std::string& body = {},
                        const headers& h = {});

/// "Authorization: Bearer <key>" and JSON content type, the usual pair.
headers bearer(const std::string& key, bool json_body = false);

} // namespace karvon::testing
