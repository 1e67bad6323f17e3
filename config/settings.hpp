// Typed settings: one struct per section of the configuration file. The
// defaults here are the built-in defaults that API.md documents; load.hpp
// layers the file, the environment and the command line on top of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace karvon::config {

struct server_settings {
  std::string listen = "127.0.0.1:8080"; //!< HOST:PORT for HTTP, WebSocket
  std::string data_dir = "./var";        //!< embedded PostgreSQL, logs
  std::string node_id;                   //!< empty: derived from host, port
  int threads = 0;                       //!< I/O threads; 0: one per core
  int actor_threads = 0;                 //!< CAF scheduler; 0: one per core
};

struct database_settings {
  std::string url; //!< empty: the embedded PostgreSQL under data_dir
  int pool_size = 8;
  int batch_max_rows = 1000;
  int batch_max_delay_ms = 5;
  int max_queue = 10000; //!< queries waiting for a connection before 503
};

struct http_settings {
  std::int64_t max_body_bytes = 1048576;
  int anon_rate_per_min = 20;
  int key_rate_per_min = 100;
  int burst_per_s = 10;
  int client_key_rate_per_s = 1000;
  int max_header_bytes = 16384;  //!< request line plus headers
  int max_connections = 10000;   //!< open connections before 503
  int read_timeout_ms = 10000;   //!< to read one whole request
  int idle_timeout_ms = 60000;   //!< keep-alive with no request
  int shutdown_grace_ms = 10000; //!< in-flight requests on SIGTERM
};

struct chat_settings {
  bool allow_anonymous = false;
  std::vector<std::string> languages{"uz", "ru", "en"};
  int retention_days = 90; //!< sessions unused this long are deleted
  /// How long an ask waits for the LLM (queue and answer) before it is
  /// answered from the knowledge base instead ("fallback").
  int deadline_ms = 20000;
};

struct llm_settings {
  std::string provider = "ollama"; //!< "ollama" or "openai"
  std::string url;                 //!< empty: no LLM
  std::string api_key;
  std::string model = "qwen2.5:7b-instruct";
  std::string cheap_model;
  int max_concurrency = 4;
  int max_queue = 10000;
  int timeout_ms = 60000;
  int cache_ttl_s = 86400;
};

struct geocoder_settings {
  std::string url;
  double rate_per_s = 1.0;
  std::string user_agent = "karvon";
};

struct bot_settings {
  std::string name;
  std::string token;
  std::string api_base = "https://api.telegram.org";
  std::string mode = "polling"; //!< "polling" or "webhook"
  std::string secret_token;
  int global_per_s = 30;
  int group_per_min = 20;
};

struct cluster_settings {
  /// HOST:PORT for other nodes (CAF's BASP); empty: server.listen's host
  /// and its port + 1000 (port 0 stays 0: any free port).
  std::string listen;
  int shards = 1024;
  std::vector<std::string> seeds; //!< HOST:PORT of nodes to join
  int heartbeat_ms = 1000;
  int failure_timeout_ms = 10000;
  /// How long a shard lease lasts unless renewed (once a heartbeat): after
  /// a node dies, its shards wait this long at most, past its failure.
  int lease_ms = 10000;
};

struct entities_settings {
  int idle_timeout_ms = 600000; //!< passivate after this long unused
  int max_active = 100000;      //!< per kind and node; LRU beyond
};

struct metrics_settings {
  bool is_public = false; //!< the key is `metrics.public`
};

struct log_settings {
  std::string level = "info";  //!< trace, debug, info, warn, error, off
  std::string format = "text"; //!< "text" or "json"
};

struct settings {
  server_settings server;
  database_settings database;
  http_settings http;
  chat_settings chat;
  llm_settings llm;
  geocoder_settings geocoder;
  std::vector<bot_settings> bots;
  cluster_settings cluster;
  entities_settings entities;
  metrics_settings metrics;
  log_settings log;
};

/// A HOST:PORT pair. Parsing fails on a missing or out-of-range port.
struct host_port {
  std::string host;
  std::uint16_t port = 0;
};

/// The cluster address of these settings: cluster.listen, or derived from
/// server.listen as documented above.
host_port cluster_listen(const settings& s);

/// Splits "HOST:PORT" ("[::1]:80" for IPv6); false when it is not one.
bool parse_host_port(const std::string& text, host_port& out);

} // namespace karvon::config
