// GET /api/v1/ws end to end: a real server on port 0, a real Beast
// WebSocket client, real API keys (in a database on the test PostgreSQL),
// and a stand-in POST /api/v1/chat/ask that streams, answers late, fails
// or floods, so the transport is what is under test.
#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "actors/api_keys.hpp"
#include "actors/clock.hpp"
#include "gateway/dispatcher.hpp"
#include "gateway/server.hpp"
#include "gateway/websocket.hpp"
#include "metrics/registry.hpp"
#include "persistence/api_key_store.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::gateway {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using nlohmann::json;
using namespace std::chrono_literals;

// A client key that the key directory knows, made once per test process.
struct test_keys {
  std::unique_ptr<persistence::db_pool> pool;
  std::unique_ptr<actors::key_directory> directory;
  std::string client;
};

test_keys& keys() {
  // Deliberately never freed: its pool may not outlive the test PostgreSQL,
  // which stops at exit.
  static test_keys* k = [] {
    auto* out = new test_keys;
    auto conninfo = testing::fresh_database();
    persistence::migrate(conninfo);
    auto key = actors::generate_api_key();
    persistence::api_key_row row;
    row.name = "ws test";
    row.role = "client";
    row.lookup = key.lookup;
    row.secret_hash = key.secret_hash;
    {
      pqxx::connection c{conninfo};
      persistence::insert_api_key(c, row);
    }
    out->client = key.text;
    persistence::pool_options o;
    o.conninfo = conninfo;
    o.size = 1;
    out->pool = std::make_unique<persistence::db_pool>(o, nullptr);
    out->directory
        = std::make_unique<actors::key_directory>(*out->pool, nullptr);
    if (!out->directory->load(10s))
      ADD_FAILURE() << "the key directory did not load";
    return out;
  }();
  return *k;
}

// One frame read by the client, or how the socket ended.
struct frame {
  json body;           //!< the frame's JSON, null when none was read
  bool closed = false; //!< a close frame came instead
  int close_code = 0;
  std::string error; //!< a failure other than a close (timeout, reset)
};

// A blocking WebSocket client with a deadline on every step, so that a
// broken server fails a test instead of hanging it.
class ws_client {
public:
  /// Connects and asks for the upgrade; status() tells how that went.
  /// `receive_buffer` > 0 shrinks the socket's receive buffer.
  ws_client(std::uint16_t port, std::string authorization = {},
            int receive_buffer = 0)
      : ws_(ioc_) {
    auto& socket = beast::get_lowest_layer(ws_).socket();
    socket.open(tcp::v4());
    if (receive_buffer > 0)
      socket.set_option(net::socket_base::receive_buffer_size(receive_buffer));
    socket.connect({net::ip::make_address("127.0.0.1"), port});
    socket.set_option(tcp::no_delay(true));
    ws_.set_option(websocket::stream_base::decorator(
        [authorization](websocket::request_type& req) {
          if (!authorization.empty())
            req.set(bhttp::field::authorization, authorization);
        }));
    ws_.read_message_max(64 << 20);
    beast::error_code result;
    run(
        [&](auto done) {
          ws_.async_handshake(res_, "127.0.0.1", std::string{websocket_path},
                              [&result, done](beast::error_code ec) {
                                result = ec;
                                done();
                              });
        },
        2s);
    status_ = res_.result_int();
  }

  /// 101 when upgraded, else the HTTP status of the refusal.
  int status() const { return status_; }
  /// The body of a refused upgrade.
  json refusal() const { return json::parse(res_.body(), nullptr, false); }

  void send(const std::string& text) {
    beast::error_code result;
    bool finished = run(
        [&](auto done) {
          ws_.async_write(net::buffer(text),
                          [&result, done](beast::error_code ec, std::size_t) {
                            result = ec;
                            done();
                          });
        },
        2s);
    ASSERT_TRUE(finished) << "write timed out";
    ASSERT_FALSE(result) << result.message();
  }
  void send(const json& j) { send(j.dump()); }
  void send(const char* text) { send(std::string{text}); }

  frame read(std::chrono::milliseconds timeout = 2s) {
    frame out;
    beast::flat_buffer buffer;
    beast::error_code result;
    bool finished = run(
        [&](auto done) {
          ws_.async_read(buffer,
                         [&result, done](beast::error_code ec, std::size_t) {
                           result = ec;
                           done();
                         });
        },
        timeout);
    if (!finished) {
      out.error = "timed out";
    } else if (result == websocket::error::closed) {
      out.closed = true;
      out.close_code = ws_.reason().code;
    } else if (result) {
      out.error = result.message();
    } else {
      out.body = json::parse(beast::buffers_to_string(buffer.data()), nullptr,
                             false);
    }
    return out;
  }

  /// Reads until the close frame; its code, or 0. `token_bytes` sums the
  /// text of the token frames read on the way.
  int read_until_close(std::size_t* token_bytes = nullptr) {
    for (;;) {
      auto f = read();
      if (f.closed)
        return f.close_code;
      if (!f.error.empty()) {
        ADD_FAILURE() << "no close frame: " << f.error;
        return 0;
      }
      if (token_bytes && f.body["type"] == "token")
        *token_bytes += f.body["text"].get<std::string>().size();
    }
  }

private:
  // Runs one asynchronous step with a deadline; false when it did not end.
  template <class Start>
  bool run(Start start, std::chrono::milliseconds timeout) {
    bool finished = false;
    ioc_.restart();
    start([&finished] { finished = true; });
    ioc_.run_for(timeout);
    if (!finished) {
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().close(ignored);
      ioc_.restart();
      ioc_.run_for(1s);
    }
    return finished;
  }

  net::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  websocket::response_type res_;
  int status_ = 0;
};

std::string bearer(const std::string& key) {
  return "Bearer " + key;
}

json ask(const std::string& id, const std::string& question,
         const std::string& user = "u1") {
  return {
      {"type", "ask"}, {"id", id}, {"user_id", user}, {"question", question}};
}

// The server with GET /api/v1/ws and a chat ask route whose answer depends
// on the question: "hello" streams "Hel", "lo" then answers; "wait"
// answers once release() is called; "park" never answers by itself;
// "flood" streams 16 MiB of tokens from another thread.
class WebSocketTest : public ::testing::Test {
protected:
  static constexpr std::size_t flood_piece = 64 * 1024;
  static constexpr int flood_pieces = 256;

  // The database and its key are made once, outside any test's time.
  static void SetUpTestSuite() { keys(); }

  void start(std::function<void(config::http_settings&)> tweak = {},
             access who = access::only({actors::role::client})) {
    config::http_settings http;
    http.max_body_bytes = 16384;
    if (tweak)
      tweak(http);
    router r;
    add_websocket_route(r, who);
    r.add({"POST", "/api/v1/chat/ask", who, true, true,
           [this](const request& req, responder done) {
             on_ask(req, std::move(done));
           }});
    d_ = std::make_unique<dispatcher>(std::move(r), http,
                                      keys().directory.get(), metrics_, clock_);
    server_options o;
    o.threads = 2;
    o.http = http;
    server_ = std::make_unique<http_server>(o, metrics_);
    server_->start(*d_);
  }

  void TearDown() override {
    release();
    if (server_)
      server_->stop(0ms);
    for (auto& t : workers_)
      t.join();
  }

  static std::string answer_body(const std::string& text) {
    return json{{"session_id", "s1"},       {"answer", text},
                {"confidence", 0.9},        {"source", "llm"},
                {"sources", json::array()}, {"latency_ms", 1.5}}
        .dump();
  }

  void on_ask(const request& req, responder done) {
    auto user = req.json->value("user_id", "");
    if (user.empty())
      return done(invalid_field("user_id", "user_id is required"));
    auto question = req.json->value("question", "");
    if (question == "hello") {
      if (req.stream) {
        req.stream("Hel");
        req.stream("lo");
      }
      return done(json_response(200, answer_body("Hello")));
    }
    std::lock_guard lock{mutex_};
    if (question == "wait") {
      workers_.emplace_back([done, released = released_] {
        released.wait();
        done(json_response(200, answer_body("late")));
      });
    } else if (question == "park") {
      parked_.push_back(std::move(done));
    } else if (question == "flood") {
      workers_.emplace_back([this, stream = req.stream, done] {
        std::string piece(flood_piece, 'x');
        for (int i = 0; i < flood_pieces; ++i)
          stream(piece);
        flooded_.set_value();
        done(json_response(200, answer_body("flooded")));
      });
    } else {
      done(json_response(200, answer_body("?")));
    }
  }

  void release() {
    std::lock_guard lock{mutex_};
    if (!released_once_) {
      released_once_ = true;
      release_.set_value();
    }
  }

  std::uint64_t closed_count(const std::string& reason) {
    return metrics_.counters("karvon_ws_closed_total", "", {"reason"})
        .with({reason})
        .value();
  }

  std::uint16_t port() const { return server_->port(); }
  std::string key() const { return keys().client; }

  metrics::registry metrics_;
  actors::manual_clock clock_; // rate limits never refill by themselves
  std::unique_ptr<dispatcher> d_;
  std::unique_ptr<http_server> server_;

  std::mutex mutex_;
  std::vector<std::thread> workers_;
  std::vector<responder> parked_;
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
  bool released_once_ = false;
  std::promise<void> flooded_;
};

TEST_F(WebSocketTest, an_ask_streams_token_frames_then_the_answer_with_its_id) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send(ask("c1", "hello"));
  auto t1 = c.read();
  auto t2 = c.read();
  auto a = c.read();
  EXPECT_EQ(t1.body, (json{{"type", "token"}, {"id", "c1"}, {"text", "Hel"}}));
  EXPECT_EQ(t2.body, (json{{"type", "token"}, {"id", "c1"}, {"text", "lo"}}));
  EXPECT_EQ(a.body["type"], "answer");
  EXPECT_EQ(a.body["id"], "c1");
  EXPECT_EQ(a.body["answer"], "Hello");
  EXPECT_EQ(a.body["session_id"], "s1");
  EXPECT_EQ(a.body["source"], "llm");
  EXPECT_TRUE(a.body["sources"].is_array());
  EXPECT_EQ(metrics_.gauges("karvon_ws_connections", "", {}).with({}).value(),
            1.0);
}

TEST_F(WebSocketTest, two_asks_in_flight_are_answered_by_id_in_any_order) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send(ask("slow", "wait"));
  c.send(ask("fast", "hello"));
  // The first ask is held until the second is answered, so the answers
  // come in the other order than the asks.
  std::vector<std::string> types;
  json fast_answer;
  while (fast_answer.is_null()) {
    auto f = c.read();
    ASSERT_TRUE(f.error.empty()) << f.error;
    ASSERT_EQ(f.body["id"], "fast") << f.body;
    if (f.body["type"] == "answer")
      fast_answer = f.body;
  }
  EXPECT_EQ(fast_answer["answer"], "Hello");
  release();
  auto slow = c.read();
  EXPECT_EQ(slow.body["type"], "answer");
  EXPECT_EQ(slow.body["id"], "slow");
  EXPECT_EQ(slow.body["answer"], "late");
}

TEST_F(WebSocketTest, a_ping_gets_a_pong_that_echoes_its_id) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send(R"({"type":"ping"})");
  EXPECT_EQ(c.read().body, (json{{"type", "pong"}}));
  c.send(R"({"type":"ping","id":7})");
  EXPECT_EQ(c.read().body, (json{{"type", "pong"}, {"id", 7}}));
}

TEST_F(WebSocketTest, a_bad_key_on_the_upgrade_gets_401_and_no_upgrade) {
  start();
  ws_client c{port(), bearer("kv_000000000000_"
                             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")};
  EXPECT_EQ(c.status(), 401);
  EXPECT_EQ(c.refusal()["error"]["code"], "unauthorized");
  EXPECT_EQ(server_->open_connections(), 1u); // the HTTP connection only
  EXPECT_EQ(metrics_.gauges("karvon_ws_connections", "", {}).with({}).value(),
            0.0);
}

TEST_F(WebSocketTest, a_key_in_the_first_message_authenticates_the_socket) {
  start();
  ws_client c{port()};
  ASSERT_EQ(c.status(), 101);
  c.send(json{{"type", "auth"}, {"api_key", key()}});
  c.send(ask("c1", "hello"));
  EXPECT_EQ(c.read().body["type"], "token");
  EXPECT_EQ(c.read().body["type"], "token");
  EXPECT_EQ(c.read().body["type"], "answer");
}

TEST_F(WebSocketTest, a_first_message_other_than_auth_closes_with_1008) {
  start();
  ws_client c{port()};
  ASSERT_EQ(c.status(), 101);
  c.send(R"({"type":"ping"})");
  auto f = c.read();
  EXPECT_EQ(f.body["type"], "error");
  EXPECT_EQ(f.body["error"]["code"], "unauthorized");
  EXPECT_EQ(c.read_until_close(), 1008);
  EXPECT_EQ(closed_count("unauthorized"), 1u);
}

TEST_F(WebSocketTest, a_wrong_key_in_the_auth_message_closes_with_1008) {
  start();
  ws_client c{port()};
  ASSERT_EQ(c.status(), 101);
  c.send(json{{"type", "auth"}, {"api_key", "kv_nonsense"}});
  auto f = c.read();
  EXPECT_EQ(f.body["type"], "error");
  EXPECT_TRUE(f.body["id"].is_null());
  EXPECT_EQ(f.body["error"]["code"], "unauthorized");
  EXPECT_EQ(c.read_until_close(), 1008);
}

TEST_F(WebSocketTest, an_error_response_becomes_an_error_frame_with_its_code) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send(R"({"type":"ask","id":"e1","question":"who?"})");
  auto f = c.read();
  EXPECT_EQ(f.body["type"], "error");
  EXPECT_EQ(f.body["id"], "e1");
  EXPECT_EQ(f.body["error"]["code"], "invalid_field");
  EXPECT_EQ(f.body["error"]["details"]["field"], "user_id");
  EXPECT_FALSE(f.body.contains("retry_after_s"));
}

TEST_F(WebSocketTest, a_rate_limited_ask_gets_an_error_frame_with_retry_after) {
  start([](config::http_settings& h) { h.burst_per_s = 2; });
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  // The per-user bucket holds two asks and the clock does not move.
  for (auto id : {"r1", "r2"}) {
    c.send(ask(id, "other", "limited"));
    EXPECT_EQ(c.read().body["type"], "answer") << id;
  }
  c.send(ask("r3", "other", "limited"));
  auto f = c.read();
  EXPECT_EQ(f.body["type"], "error");
  EXPECT_EQ(f.body["id"], "r3");
  EXPECT_EQ(f.body["error"]["code"], "rate_limited");
  ASSERT_TRUE(f.body["retry_after_s"].is_number_integer()) << f.body;
  EXPECT_GE(f.body["retry_after_s"].get<int>(), 1);
  // Another user of the same key has its own bucket.
  c.send(ask("r4", "other", "someone_else"));
  EXPECT_EQ(c.read().body["type"], "answer");
}

TEST_F(WebSocketTest, frames_the_server_cannot_serve_get_error_frames_only) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send("{not json");
  auto f = c.read();
  EXPECT_EQ(f.body["type"], "error");
  EXPECT_TRUE(f.body["id"].is_null());
  EXPECT_EQ(f.body["error"]["code"], "bad_request");

  c.send(R"({"type":"dance","id":"d1"})");
  f = c.read();
  EXPECT_EQ(f.body["error"]["code"], "bad_request");
  EXPECT_NE(f.body["error"]["message"].get<std::string>().find("dance"),
            std::string::npos);

  c.send(R"({"type":"ask","id":5,"user_id":"u1","question":"hello"})");
  f = c.read();
  EXPECT_EQ(f.body["error"]["code"], "invalid_field");
  EXPECT_EQ(f.body["error"]["details"]["field"], "id");

  c.send(R"({"type":"subscribe","topic":"partner:p1"})");
  f = c.read();
  EXPECT_EQ(f.body["error"]["code"], "unknown_topic");

  // The socket is still open and serving.
  c.send(R"({"type":"ping"})");
  EXPECT_EQ(c.read().body["type"], "pong");
}

TEST_F(WebSocketTest, a_65th_ask_in_flight_gets_too_many_in_flight) {
  start([](config::http_settings& h) { h.burst_per_s = 1000; });
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  for (int i = 0; i < 64; ++i)
    c.send(ask("p" + std::to_string(i), "park", "u" + std::to_string(i)));
  c.send(ask("one_more", "park", "u64"));
  auto f = c.read();
  EXPECT_EQ(f.body["id"], "one_more");
  EXPECT_EQ(f.body["error"]["code"], "too_many_in_flight");
  std::lock_guard lock{mutex_};
  EXPECT_EQ(parked_.size(), 64u);
}

TEST_F(WebSocketTest, a_message_over_the_size_limit_closes_with_1009) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send(ask("big", std::string(20000, 'q')).dump());
  EXPECT_EQ(c.read_until_close(), 1009);
  EXPECT_EQ(closed_count("too_big"), 1u);
}

TEST_F(WebSocketTest, a_client_that_does_not_read_is_closed_with_1013) {
  start();
  ws_client c{port(), bearer(key()), /*receive_buffer=*/4096};
  ASSERT_EQ(c.status(), 101);
  c.send(ask("f1", "flood"));
  // 16 MiB streamed while the client reads nothing: more than the socket
  // buffers and the server's 1 MiB queue together.
  flooded_.get_future().wait();
  std::size_t token_bytes = 0;
  EXPECT_EQ(c.read_until_close(&token_bytes), 1013);
  EXPECT_LT(token_bytes, std::size_t{flood_piece} * flood_pieces / 2);
  EXPECT_EQ(closed_count("slow_reader"), 1u);
}

TEST_F(WebSocketTest, stopping_the_server_closes_sockets_with_1001) {
  start();
  ws_client c{port(), bearer(key())};
  ASSERT_EQ(c.status(), 101);
  c.send(R"({"type":"ping"})");
  ASSERT_EQ(c.read().body["type"], "pong");
  auto stopping = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [this] { server_->stop(2s); });
  EXPECT_EQ(c.read_until_close(), 1001);
  stopped.get();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 1s);
  EXPECT_EQ(server_->open_connections(), 0u);
  EXPECT_EQ(closed_count("shutdown"), 1u);
}

TEST_F(WebSocketTest, a_plain_get_of_the_endpoint_gets_426) {
  start();
  auto r = testing::http_request(port(), "GET", "/api/v1/ws", {},
                                 testing::bearer(key()));
  EXPECT_EQ(r.status, 426);
  EXPECT_EQ(r.header("Upgrade"), "websocket");
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "upgrade_required");
  // The server's own check header, sent by a client, is dropped.
  auto h = testing::bearer(key());
  h.emplace_back("X-Karvon-Ws-Check", "1");
  EXPECT_EQ(testing::http_request(port(), "GET", "/api/v1/ws", {}, h).status,
            426);
}

TEST_F(WebSocketTest, with_anonymous_chat_a_socket_needs_no_key) {
  start({}, access::none());
  ws_client c{port()};
  ASSERT_EQ(c.status(), 101);
  c.send(ask("a1", "hello"));
  EXPECT_EQ(c.read().body["type"], "token");
  EXPECT_EQ(c.read().body["type"], "token");
  EXPECT_EQ(c.read().body["type"], "answer");
}

} // namespace
} // namespace karvon::gateway
