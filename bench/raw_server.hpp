// The ceiling of the HTTP scenarios: the least a Beast server does to answer
// GET with {"status":"ok"} over keep-alive, in the style of Beast's own
// examples. What karvon's gateway adds on top of it is what they measure.
#pragma once

#include <cstdint>
#include <memory>

namespace karvon::bench {

class raw_http_server {
public:
  /// Serves on 127.0.0.1, any free port, with `threads` I/O threads.
  explicit raw_http_server(int threads);
  /// Stops if still running.
  ~raw_http_server();

  raw_http_server(const raw_http_server&) = delete;
  raw_http_server& operator=(const raw_http_server&) = delete;

  /// Binds and starts the threads; throws std::system_error when it cannot
  /// bind.
  void start();

  /// The bound port, once started.
  std::uint16_t port() const;

  /// Closes the listener and joins the threads; open connections are
  /// dropped. Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::bench
