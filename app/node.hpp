// One karvon node: the database (embedded or not), migrations, the pool,
// API keys, and the HTTP gateway, started in order and stopped in reverse.
// `karvon serve` runs one; integration tests run one in-process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/settings.hpp"

namespace karvon::app {

struct node_options {
  /// Print the first admin key (and the demo key) to stdout when created.
  bool print_new_keys = true;
  /// Seed the demo data (--demo).
  bool demo = false;
};

class node {
public:
  explicit node(config::settings s, node_options options = {});
  /// Stops whatever start() started.
  ~node();

  node(const node&) = delete;
  node& operator=(const node&) = delete;

  /// Starts everything; blocking. Throws persistence::startup_error or
  /// std::system_error (the HTTP address cannot be bound) with a message
  /// for the operator.
  void start();

  /// Stops accepting, finishes requests in flight within
  /// http.shutdown_grace_ms, flushes, stops the embedded database.
  void stop();

  /// The HTTP port actually bound (server.listen may say 0).
  std::uint16_t http_port() const;

  /// The port other nodes reach this one on (cluster.listen may say 0).
  std::uint16_t cluster_port() const;

  /// libpq connection string of the node's database.
  const std::string& conninfo() const;

  /// The admin key created by this start, empty when one existed already.
  const std::string& first_admin_key() const;

  const config::settings& settings() const;

  /// Method and path template of every route served, for the OpenAPI check.
  std::vector<std::pair<std::string, std::string>> routes() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// karvon's version, "0.1.0".
const char* version();

} // namespace karvon::app
