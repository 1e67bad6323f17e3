// The HTTP client against in-process servers on 127.0.0.1 (plain and TLS,
// with a throwaway CA made here with OpenSSL's C API): keep-alive pools,
// timeouts, streamed NDJSON and SSE, certificate checks, shutdown.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actors/http_client.hpp"
#include "metrics/registry.hpp"

namespace karvon::actors {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// ------------------------------------------------------------ throwaway PKI

struct pkey_free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct x509_free {
  void operator()(X509* p) const { X509_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext)
    throw std::runtime_error(std::string{"bad extension "} + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A CA when `issuer` is null, else a server certificate for `san`.
x509_ptr make_cert(EVP_PKEY* key, const char* cn, X509* issuer,
                   EVP_PKEY* issuer_key, const char* san) {
  static long serial = 1;
  x509_ptr cert{X509_new()};
  X509* c = cert.get();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 24 * 3600);
  X509_set_pubkey(c, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1,
                             0);
  X509* signer = issuer ? issuer : c;
  X509_set_issuer_name(c, X509_get_subject_name(signer));
  bool ca = issuer == nullptr;
  add_ext(c, signer, NID_basic_constraints,
          ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_ext(c, signer, NID_key_usage,
          ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_ext(c, signer, NID_subject_key_identifier, "hash");
  if (!ca) {
    add_ext(c, signer, NID_ext_key_usage, "serverAuth");
    add_ext(c, signer, NID_subject_alt_name, san);
    add_ext(c, signer, NID_authority_key_identifier, "keyid:always");
  }
  if (X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) == 0)
    throw std::runtime_error("X509_sign failed");
  return cert;
}

template <class F>
std::string to_pem(F&& write) {
  BIO* bio = BIO_new(BIO_s_mem());
  write(bio);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

struct cert_pair {
  std::string cert_pem;
  std::string key_pem;
};

struct test_pki {
  std::string ca_pem;
  cert_pair good;       //!< localhost and 127.0.0.1
  cert_pair wrong_name; //!< wrong.example only
};

cert_pair issue(X509* ca, EVP_PKEY* ca_key, const char* san) {
  pkey_ptr key{EVP_EC_gen("P-256")};
  auto cert = make_cert(key.get(), "karvon test server", ca, ca_key, san);
  return {to_pem([&](BIO* b) { PEM_write_bio_X509(b, cert.get()); }),
          to_pem([&](BIO* b) {
            PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr,
                                     nullptr);
          })};
}

const test_pki& pki() {
  static const test_pki made = [] {
    test_pki p;
    pkey_ptr ca_key{EVP_EC_gen("P-256")};
    auto ca
        = make_cert(ca_key.get(), "karvon test CA", nullptr, nullptr, nullptr);
    p.ca_pem = to_pem([&](BIO* b) { PEM_write_bio_X509(b, ca.get()); });
    p.good = issue(ca.get(), ca_key.get(), "DNS:localhost,IP:127.0.0.1");
    p.wrong_name = issue(ca.get(), ca_key.get(), "DNS:wrong.example");
    return p;
  }();
  return made;
}

std::unique_ptr<ssl::context> server_tls(const cert_pair& c) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->use_certificate_chain(net::buffer(c.cert_pem));
  ctx->use_private_key(net::buffer(c.key_pem), ssl::context::pem);
  return ctx;
}

// ------------------------------------------------------------- test server

using request_t = bhttp::request<bhttp::string_body>;

class test_server;

// One request as a handler sees it, with the means to answer in raw bytes.
class exchange {
public:
  exchange(const request_t& r, int i, std::function<bool(std::string_view)> w,
           test_server& s)
      : req(r), index(i), write_(std::move(w)), server_(s) {}

  const request_t& req;
  const int index; //!< 0 for the first request on its connection

  bool write(std::string_view bytes) { return write_(bytes); }

  void respond(int status, const std::string& body,
               const std::string& extra_headers = "") {
    write("HTTP/1.1 " + std::to_string(status)
          + " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"
          + extra_headers + "\r\n" + body);
  }

  void start_chunked(const std::string& content_type) {
    write("HTTP/1.1 200 OK\r\nContent-Type: " + content_type
          + "\r\nTransfer-Encoding: chunked\r\n\r\n");
  }

  bool chunk(std::string_view data) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return write(std::string{size} + std::string{data} + "\r\n");
  }

  void end_chunks() { write("0\r\n\r\n"); }

  /// Closes the connection once the handler returns.
  void close_after() { close_ = true; }
  bool closing() const { return close_; }

  /// Sleeps for `d`, or less when the server stops; false if it stopped.
  bool pause(std::chrono::milliseconds d);

  /// Requests being handled by the server now, this one included.
  int in_server() const;

private:
  std::function<bool(std::string_view)> write_;
  test_server& server_;
  bool close_ = false;
};

// A blocking server, one thread per connection: simple to make misbehave
// on purpose (stall, drop, trickle).
class test_server {
public:
  using handler = std::function<void(exchange&)>;

  explicit test_server(handler h, std::unique_ptr<ssl::context> tls = nullptr)
      : acceptor_(ioc_), handler_(std::move(h)), tls_(std::move(tls)) {
    tcp::endpoint ep{net::ip::make_address("127.0.0.1"), 0};
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  ~test_server() { stop(); }

  void stop() {
    {
      std::lock_guard lock{mutex_};
      if (stopping_)
        return;
      stopping_ = true;
    }
    cv_.notify_all();
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR); // wakes accept()
    accept_thread_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock{mutex_};
      for (auto& s : sockets_)
        ::shutdown(s->native_handle(), SHUT_RDWR); // wakes read()
      threads = std::move(threads_);
    }
    for (auto& t : threads)
      t.join();
  }

  std::string url(const std::string& path,
                  const std::string& host = "127.0.0.1") const {
    return std::string{tls_ ? "https" : "http"} + "://" + host + ":"
           + std::to_string(port_) + path;
  }
  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  int requests() const { return requests_.load(); }
  int max_concurrent() const { return max_active_.load(); }
  int active() const { return active_.load(); }
  int closed() const { return closed_.load(); }
  /// The SNI of each TLS connection, "" when none was sent.
  std::vector<std::string> server_names() {
    std::lock_guard lock{mutex_};
    return server_names_;
  }

  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock{mutex_};
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
  }

private:
  void accept_loop() {
    for (;;) {
      auto s = std::make_shared<tcp::socket>(ioc_);
      beast::error_code ec;
      acceptor_.accept(*s, ec);
      std::lock_guard lock{mutex_};
      if (ec || stopping_)
        return;
      ++accepted_;
      sockets_.push_back(s);
      threads_.emplace_back([this, s] { serve(*s); });
    }
  }

  void serve(tcp::socket& s) {
    if (tls_) {
      ssl::stream<tcp::socket&> stream{s, *tls_};
      beast::error_code ec;
      stream.handshake(ssl::stream_base::server, ec);
      if (!ec) {
        const char* sni = SSL_get_servername(stream.native_handle(),
                                             TLSEXT_NAMETYPE_host_name);
        {
          std::lock_guard lock{mutex_};
          server_names_.push_back(sni ? sni : "");
        }
        serve_stream(stream);
      }
    } else {
      serve_stream(s);
    }
    // Only shutdown here: stop() may be using the descriptor meanwhile; the
    // socket closes when the server is destroyed.
    ::shutdown(s.native_handle(), SHUT_RDWR);
    ++closed_;
  }

  template <class Stream>
  void serve_stream(Stream& stream) {
    beast::flat_buffer buffer;
    for (int index = 0;; ++index) {
      request_t req;
      beast::error_code ec;
      bhttp::read(stream, buffer, req, ec);
      if (ec)
        return;
      ++requests_;
      int now = ++active_;
      int seen = max_active_.load();
      while (now > seen && !max_active_.compare_exchange_weak(seen, now))
        ;
      exchange ex{req, index,
                  [&stream](std::string_view bytes) {
                    beast::error_code ec;
                    net::write(stream, net::buffer(bytes), ec);
                    return !ec;
                  },
                  *this};
      handler_(ex);
      --active_;
      if (ex.closing() || !req.keep_alive())
        return;
    }
  }

  net::io_context ioc_;
  tcp::acceptor acceptor_;
  handler handler_;
  std::unique_ptr<ssl::context> tls_;
  std::uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> active_{0};
  std::atomic<int> max_active_{0};
  std::atomic<int> closed_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::shared_ptr<tcp::socket>> sockets_;
  std::vector<std::string> server_names_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

bool exchange::pause(std::chrono::milliseconds d) {
  return server_.pause(d);
}

int exchange::in_server() const {
  return server_.active();
}

// ----------------------------------------------------------------- helpers

http_request get(std::string url) {
  http_request r;
  r.url = std::move(url);
  return r;
}

// Sends and waits (at most 10 s) for the answer.
http_response call(http_client& client, http_request req) {
  auto p = std::make_shared<std::promise<http_response>>();
  auto f = p->get_future();
  client.request(std::move(req),
                 [p](http_response r) { p->set_value(std::move(r)); });
  if (f.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "no answer within 10 s";
    return {};
  }
  return f.get();
}

double ms_since(steady::time_point t) {
  return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ------------------------------------------------------------------- tests

TEST(HttpClient, gets_and_posts_json) {
  std::mutex m;
  std::map<std::string, std::string> seen; // request line -> headers/body
  test_server server{[&](exchange& ex) {
    {
      std::lock_guard lock{m};
      seen[std::string{ex.req.method_string()} + " "
           + std::string{ex.req.target()}]
          = std::string{ex.req[bhttp::field::host]} + "|"
            + std::string{ex.req[bhttp::field::user_agent]} + "|"
            + std::string{ex.req[bhttp::field::content_type]} + "|"
            + ex.req.body();
    }
    if (ex.req.method() == bhttp::verb::post)
      ex.respond(201, "{\"echo\":" + ex.req.body() + "}",
                 "Content-Type: application/json\r\nX-Request-Id: 7\r\n");
    else
      ex.respond(200, "{\"hello\":\"world\"}",
                 "Content-Type: application/json\r\n");
  }};
  http_client client;

  auto r = call(client, get(server.url("/hello?x=1#frag")));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.body, "{\"hello\":\"world\"}");
  EXPECT_EQ(r.header("content-type"), "application/json");

  http_request post;
  post.method = "POST";
  post.url = server.url("/items");
  post.headers = {{"Content-Type", "application/json"}};
  post.body = "{\"n\":1}";
  r = call(client, post);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "{\"echo\":{\"n\":1}}");
  EXPECT_EQ(r.header("x-request-id"), "7"); // names come in lower case
  EXPECT_TRUE(r.request_sent);

  std::lock_guard lock{m};
  auto host = "127.0.0.1:" + std::to_string(server.port());
  EXPECT_EQ(seen["GET /hello?x=1"], host + "|karvon/0.1||");
  EXPECT_EQ(seen["POST /items"],
            host + "|karvon/0.1|application/json|{\"n\":1}");
}

TEST(HttpClient, reuses_a_kept_alive_connection) {
  test_server server{[](exchange& ex) { ex.respond(200, "ok"); }};
  http_client client;
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(call(client, get(server.url("/"))).status, 200);
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(client.connections_opened(), 1u);
}

TEST(HttpClient,
     runs_parallel_requests_up_to_the_pool_bound_and_queues_the_rest) {
  // Each request is held until three are in the server at once (or for at
  // most 500 ms), so the peak does not depend on scheduling.
  test_server server{[](exchange& ex) {
    for (int i = 0; i < 100 && ex.in_server() < 3; ++i)
      ex.pause(5ms);
    ex.respond(200, "ok");
  }};
  http_client_options o;
  o.max_connections_per_host = 3;
  http_client client{o};
  std::vector<std::future<http_response>> answers;
  for (int i = 0; i < 7; ++i) {
    auto p = std::make_shared<std::promise<http_response>>();
    answers.push_back(p->get_future());
    client.request(get(server.url("/")),
                   [p](http_response r) { p->set_value(std::move(r)); });
  }
  for (auto& f : answers) {
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(f.get().status, 200);
  }
  EXPECT_EQ(server.max_concurrent(), 3);
  EXPECT_EQ(server.accepted(), 3);
}

TEST(HttpClient, fails_fast_when_the_host_queue_is_full) {
  test_server server{[](exchange& ex) {
    ex.pause(200ms);
    ex.respond(200, "ok");
  }};
  http_client_options o;
  o.max_connections_per_host = 1;
  o.max_queue_per_host = 1;
  http_client client{o};
  std::mutex m;
  std::vector<std::string> order;
  std::promise<void> all;
  auto record = [&](std::string name) {
    return [&, name](http_response r) {
      std::lock_guard lock{m};
      order.push_back(name + ":" + std::to_string(r.status) + ":"
                      + to_string(r.kind) + ":" + r.error);
      if (order.size() == 3)
        all.set_value();
    };
  };
  client.request(get(server.url("/")), record("first"));
  client.request(get(server.url("/")), record("queued"));
  client.request(get(server.url("/")), record("third"));
  ASSERT_EQ(all.get_future().wait_for(10s), std::future_status::ready);
  std::lock_guard lock{m};
  auto host = "127.0.0.1:" + std::to_string(server.port());
  EXPECT_EQ(order,
            (std::vector<std::string>{
                "third:0:overloaded:too many requests waiting for " + host,
                "first:200:none:", "queued:200:none:"}));
}

TEST(HttpClient, times_out_a_connect_that_never_completes) {
  // A listener with a backlog of 0 that never accepts: one connection fills
  // its queue, and Linux drops the SYNs of the next ones.
  net::io_context ioc;
  tcp::acceptor full{ioc};
  tcp::endpoint ep{net::ip::make_address("127.0.0.1"), 0};
  full.open(ep.protocol());
  full.bind(ep);
  full.listen(0);
  tcp::socket filler{ioc};
  filler.connect(full.local_endpoint());

  http_client client;
  auto req = get(
      "http://127.0.0.1:" + std::to_string(full.local_endpoint().port()) + "/");
  req.connect_timeout = 200ms;
  auto t0 = steady::now();
  auto r = call(client, req);
  EXPECT_EQ(r.error, "connect timeout");
  EXPECT_EQ(r.kind, http_error::timeout);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.request_sent);
  EXPECT_GE(ms_since(t0), 150);
  EXPECT_LT(ms_since(t0), 2000);
}

TEST(HttpClient, times_out_a_server_that_stalls) {
  test_server server{[](exchange& ex) {
    if (ex.req.target() == "/trickle") {
      ex.start_chunked("application/x-ndjson");
      ex.chunk("{\"n\":1}\n");
    }
    ex.pause(10s);
  }};
  http_client client;

  auto req = get(server.url("/stall"));
  req.response_timeout = 300ms;
  auto t0 = steady::now();
  auto r = call(client, req);
  EXPECT_EQ(r.error, "response timeout");
  EXPECT_EQ(r.kind, http_error::timeout);
  EXPECT_TRUE(r.request_sent);
  EXPECT_GE(ms_since(t0), 250);
  EXPECT_LT(ms_since(t0), 2000);

  // A stream may run long, but not fall silent.
  std::vector<std::string> lines;
  req = get(server.url("/trickle"));
  req.response_timeout = 10s;
  req.read_timeout = 500ms;
  req.on_chunk = [&](std::string_view line) {
    lines.emplace_back(line);
    return true;
  };
  t0 = steady::now();
  r = call(client, req);
  EXPECT_EQ(r.error, "read timeout");
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"n\":1}"}));
  EXPECT_LT(ms_since(t0), 2000);
}

TEST(HttpClient, reports_connection_refused) {
  // Bound but not listening: the port is ours, and a SYN gets a RST.
  net::io_context ioc;
  tcp::acceptor bound{ioc};
  tcp::endpoint ep{net::ip::make_address("127.0.0.1"), 0};
  bound.open(ep.protocol());
  bound.bind(ep);
  http_client client;
  auto r = call(client,
                get("http://127.0.0.1:"
                    + std::to_string(bound.local_endpoint().port()) + "/"));
  EXPECT_EQ(r.error, "connection refused");
  EXPECT_EQ(r.kind, http_error::connect);
  EXPECT_FALSE(r.request_sent);
}

TEST(HttpClient, closes_idle_connections_after_the_idle_timeout) {
  test_server server{[](exchange& ex) { ex.respond(200, "ok"); }};
  http_client_options o;
  o.idle_connection_timeout = 100ms;
  http_client client{o};
  EXPECT_EQ(call(client, get(server.url("/"))).status, 200);
  auto t0 = steady::now();
  for (int i = 0; i < 200 && server.closed() == 0; ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server.closed(), 1);
  EXPECT_GE(ms_since(t0), 50);
  EXPECT_EQ(call(client, get(server.url("/"))).status, 200);
  EXPECT_EQ(server.accepted(), 2);
}

TEST(HttpClient, opens_a_new_connection_when_the_server_closed_an_idle_one) {
  // The server keeps nothing alive: it answers as if it would, then closes.
  test_server server{[](exchange& ex) {
    ex.respond(200, "ok");
    ex.close_after();
  }};
  http_client client;
  // POSTs, which are never re-sent once written: the second succeeds only
  // if the client saw the close before it wrote.
  http_request post;
  post.method = "POST";
  post.url = server.url("/");
  EXPECT_EQ(call(client, post).status, 200);
  // Loopback delivers the FIN within the server's shutdown().
  for (int i = 0; i < 400 && server.closed() == 0; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(server.closed(), 1);
  auto r = call(client, post);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(server.requests(), 2); // no request was lost on the dead one
}

TEST(HttpClient, retries_a_get_once_when_a_reused_connection_drops_it) {
  // The second request on a connection is read and dropped unanswered: the
  // race of a server's idle timeout with a reuse.
  test_server server{[](exchange& ex) {
    if (ex.index == 1)
      return ex.close_after();
    ex.respond(200, "ok");
  }};
  http_client client;
  EXPECT_EQ(call(client, get(server.url("/"))).status, 200);
  auto r = call(client, get(server.url("/")));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(server.requests(), 3);
}

TEST(HttpClient, does_not_resend_a_post_the_server_may_have_seen) {
  test_server server{[](exchange& ex) {
    if (ex.index == 1)
      return ex.close_after();
    ex.respond(200, "ok");
  }};
  http_client client;
  http_request post;
  post.method = "POST";
  post.url = server.url("/sendMessage");
  post.body = "{}";
  EXPECT_EQ(call(client, post).status, 200);
  auto r = call(client, post);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.kind, http_error::connection_closed);
  EXPECT_EQ(r.error, "connection closed by server before the response");
  EXPECT_TRUE(r.request_sent);
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(server.requests(), 2);
}

TEST(HttpClient, streams_ndjson_lines_as_they_arrive) {
  test_server server{[](exchange& ex) {
    ex.start_chunked("application/x-ndjson");
    ex.chunk("{\"message\":\"Hel\"}\n");
    ex.pause(150ms);
    ex.chunk("{\"message\":"); // a line split over two chunks
    ex.pause(50ms);
    ex.chunk("\"lo\"}\r\n\n");
    ex.pause(150ms);
    ex.chunk("{\"done\":false}\n{\"done\":true}"); // no final newline
    ex.end_chunks();
  }};
  http_client client;
  std::vector<std::pair<std::string, steady::time_point>> lines;
  auto req = get(server.url("/api/chat"));
  req.on_chunk = [&](std::string_view line) {
    lines.emplace_back(std::string{line}, steady::now());
    return true;
  };
  auto r = call(client, req);
  auto ended = steady::now();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.body, "");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].first, "{\"message\":\"Hel\"}");
  EXPECT_EQ(lines[1].first, "{\"message\":\"lo\"}");
  EXPECT_EQ(lines[2].first, "{\"done\":false}");
  EXPECT_EQ(lines[3].first, "{\"done\":true}");
  // The first line came while the server was still pausing (350 ms in all;
  // buffered to the end, the lead would be about 0).
  auto lead = std::chrono::duration_cast<std::chrono::milliseconds>(
      ended - lines[0].second);
  EXPECT_GT(lead.count(), 150);
  // The connection is reusable after a stream read to its end.
  EXPECT_EQ(call(client, get(server.url("/api/chat"))).status, 200);
  EXPECT_EQ(server.accepted(), 1);
}

TEST(HttpClient, streams_server_sent_events_with_multi_line_data) {
  test_server server{[](exchange& ex) {
    ex.start_chunked("text/event-stream; charset=utf-8");
    ex.chunk(": ping\n\n");
    ex.chunk("data: hello\n\n");
    ex.chunk("event: delta\ndata: line one\nda");
    ex.pause(30ms);
    ex.chunk("ta: line two\n\n");
    ex.chunk("data: {\"a\":1}\r");
    ex.chunk("\n\r\n");
    ex.chunk("data:no space\r\rdata: [DONE]\n\n");
    ex.end_chunks();
  }};
  http_client client;
  std::vector<std::string> events;
  http_request req;
  req.method = "POST";
  req.url = server.url("/v1/chat/completions");
  req.body = "{\"stream\":true}";
  req.on_chunk = [&](std::string_view data) {
    events.emplace_back(data);
    return true;
  };
  auto r = call(client, req);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(events,
            (std::vector<std::string>{"hello", "line one\nline two",
                                      "{\"a\":1}", "no space", "[DONE]"}));
}

TEST(HttpClient, stops_a_stream_when_on_chunk_says_so) {
  test_server server{[](exchange& ex) {
    ex.start_chunked("application/x-ndjson");
    for (int i = 0; i < 50 && ex.chunk("{\"n\":" + std::to_string(i) + "}\n");
         ++i)
      ex.pause(5ms);
    ex.end_chunks();
  }};
  http_client client;
  int seen = 0;
  auto req = get(server.url("/"));
  req.on_chunk = [&](std::string_view) { return ++seen < 3; };
  auto r = call(client, req);
  EXPECT_EQ(r.kind, http_error::aborted);
  EXPECT_EQ(r.error, "aborted by on_chunk");
  EXPECT_EQ(seen, 3);
}

TEST(HttpClient, streams_nothing_for_an_error_status_but_returns_its_body) {
  test_server server{[](exchange& ex) {
    ex.respond(401, "{\"error\":{\"message\":\"bad key\"}}",
               "Content-Type: application/json\r\n");
  }};
  http_client client;
  int calls = 0;
  auto req = get(server.url("/v1/chat/completions"));
  req.on_chunk = [&](std::string_view) {
    ++calls;
    return true;
  };
  auto r = call(client, req);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.error, "");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.body, "{\"error\":{\"message\":\"bad key\"}}");
  EXPECT_EQ(calls, 0);
}

TEST(HttpClient, fails_a_stream_line_or_a_body_over_its_limit) {
  test_server server{[](exchange& ex) {
    if (ex.req.target() == "/stream") {
      ex.start_chunked("application/x-ndjson");
      ex.chunk("{\"short\":1}\n");
      for (int i = 0; i < 4 && ex.chunk(std::string(1000, 'x')); ++i)
        ;
      ex.end_chunks();
    } else {
      ex.respond(200, std::string(5000, 'y'));
    }
  }};
  http_client_options o;
  o.max_line_bytes = 1024;
  o.max_body_bytes = 4096;
  http_client client{o};
  std::vector<std::string> lines;
  auto req = get(server.url("/stream"));
  req.on_chunk = [&](std::string_view line) {
    lines.emplace_back(line);
    return true;
  };
  auto r = call(client, req);
  EXPECT_EQ(r.kind, http_error::too_large);
  EXPECT_EQ(r.error, "stream line over 1024 bytes");
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"short\":1}"}));

  r = call(client, get(server.url("/body")));
  EXPECT_EQ(r.kind, http_error::too_large);
  EXPECT_EQ(r.error, "response body over 4096 bytes");
  EXPECT_EQ(r.body, "");
}

TEST(HttpClient, verifies_tls_against_an_extra_ca_file) {
  test_server server{[](exchange& ex) { ex.respond(200, "secret"); },
                     server_tls(pki().good)};
  auto path = ::testing::TempDir() + "karvon_http_client_test_ca_"
              + std::to_string(::getpid()) + ".pem";
  {
    std::ofstream f{path};
    f << pki().ca_pem;
  }
  http_client_options o;
  o.extra_ca_file = path;
  http_client client{o};
  std::remove(path.c_str());

  for (const char* host : {"127.0.0.1", "localhost"}) {
    auto r = call(client, get(server.url("/", host)));
    EXPECT_EQ(r.error, "") << host;
    EXPECT_EQ(r.status, 200) << host;
    EXPECT_EQ(r.body, "secret") << host;
  }
  EXPECT_EQ(call(client, get(server.url("/", "localhost"))).status, 200);
  // One connection per host name (they are different pools), each reused.
  EXPECT_EQ(server.accepted(), 2);
  // SNI carries names only, never an IP literal (RFC 6066 §3).
  EXPECT_EQ(server.server_names(), (std::vector<std::string>{"", "localhost"}));
}

TEST(HttpClient, rejects_a_certificate_from_an_untrusted_ca) {
  test_server server{[](exchange& ex) { ex.respond(200, "secret"); },
                     server_tls(pki().good)};
  http_client client; // the system store only
  auto r = call(client, get(server.url("/", "localhost")));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.kind, http_error::tls);
  EXPECT_TRUE(contains(r.error, "TLS handshake failed: certificate verify "
                                "failed"))
      << r.error;
  EXPECT_FALSE(r.request_sent);
  EXPECT_EQ(server.requests(), 0);
}

TEST(HttpClient, rejects_a_certificate_for_another_host) {
  test_server server{[](exchange& ex) { ex.respond(200, "secret"); },
                     server_tls(pki().wrong_name)};
  http_client_options o;
  o.extra_ca_pem = pki().ca_pem;
  http_client client{o};
  auto r = call(client, get(server.url("/", "localhost")));
  EXPECT_EQ(r.kind, http_error::tls);
  EXPECT_EQ(r.error,
            "TLS handshake failed: certificate verify failed: hostname "
            "mismatch");
  r = call(client, get(server.url("/", "127.0.0.1")));
  EXPECT_EQ(r.error, "TLS handshake failed: certificate verify failed: IP "
                     "address mismatch");
  EXPECT_EQ(server.requests(), 0);
}

TEST(HttpClient, refuses_to_start_with_an_unreadable_ca_file) {
  http_client_options o;
  o.extra_ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(http_client{o}, std::runtime_error);
}

TEST(HttpClient, parses_retry_after_seconds_and_http_dates) {
  using std::chrono::seconds;
  // 1994-11-06 08:49:37 UTC
  std::chrono::system_clock::time_point date{seconds{784111777}};
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), date);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), date);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), date);
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), std::nullopt);
  EXPECT_EQ(parse_http_date("yesterday"), std::nullopt);

  auto now = date - seconds{90};
  EXPECT_EQ(parse_retry_after("120", now), seconds{120});
  EXPECT_EQ(parse_retry_after(" 0 ", now), seconds{0});
  EXPECT_EQ(parse_retry_after("99999999999999999999", now), seconds{86400});
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            seconds{90});
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", date + 5s),
            seconds{0}); // a date in the past: now
  EXPECT_EQ(parse_retry_after("-5", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("1.5", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("", now), std::nullopt);

  // From a live 429, as Telegram sends it.
  test_server server{[](exchange& ex) {
    ex.respond(429,
               "{\"ok\":false,\"error_code\":429,\"parameters\":"
               "{\"retry_after\":3}}",
               "Retry-After: 3\r\n");
  }};
  http_client client;
  auto r = call(client, get(server.url("/bot123:abc/sendMessage")));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.retry_after(), seconds{3});
  EXPECT_EQ(http_response{}.retry_after(), std::nullopt);
}

TEST(HttpClient, stop_calls_each_done_once_with_requests_in_flight) {
  test_server server{[](exchange& ex) { ex.pause(10s); }};
  http_client_options o;
  o.max_connections_per_host = 2;
  http_client client{o};
  constexpr int n = 5;
  std::mutex m;
  std::vector<int> calls(n, 0);
  std::vector<http_error> kinds(n, http_error::none);
  for (int i = 0; i < n; ++i)
    client.request(get(server.url("/")), [&, i](http_response r) {
      std::lock_guard lock{m};
      ++calls[i];
      kinds[i] = r.kind;
    });
  for (int i = 0; i < 400 && server.active() < 2; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(server.active(), 2); // two in flight, three queued

  auto t0 = steady::now();
  client.stop();
  EXPECT_LT(ms_since(t0), 2000);
  {
    std::lock_guard lock{m};
    EXPECT_EQ(calls, std::vector<int>(n, 1));
    EXPECT_EQ(kinds, std::vector<http_error>(n, http_error::stopped));
  }
  client.stop(); // idempotent

  // After stop, done runs at once, in the caller.
  bool called = false;
  client.request(get(server.url("/")), [&](http_response r) {
    called = true;
    EXPECT_EQ(r.error, "client stopped");
  });
  EXPECT_TRUE(called);
}

TEST(HttpClient, rejects_invalid_requests_without_sending_them) {
  http_client client;
  auto caller = std::this_thread::get_id();
  for (std::string url :
       {"ftp://example.com/", "http://", "example.com/x", "http://host:99999/",
        "http://user:pw@host/", "http://host/a b"}) {
    auto p = std::make_shared<std::promise<http_response>>();
    auto f = p->get_future();
    std::thread::id ran_on;
    client.request(get(url), [p, &ran_on](http_response r) {
      ran_on = std::this_thread::get_id();
      p->set_value(std::move(r));
    });
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    auto r = f.get();
    EXPECT_EQ(r.kind, http_error::invalid_request) << url;
    EXPECT_TRUE(contains(r.error, "invalid request: ")) << url << r.error;
    EXPECT_FALSE(r.request_sent);
    EXPECT_NE(ran_on, caller) << url;
  }
  auto req = get("http://127.0.0.1:1/");
  req.headers = {{"X-Evil", "a\r\nHost: b"}};
  EXPECT_EQ(call(client, req).error,
            "invalid request: invalid header 'X-Evil'");
}

TEST(HttpClient, counts_requests_by_host_and_outcome) {
  test_server server{[](exchange& ex) {
    ex.respond(ex.req.target() == "/missing" ? 404 : 200, "");
  }};
  metrics::registry registry;
  http_client_options o;
  o.metrics = &registry;
  http_client client{o};
  call(client, get(server.url("/")));
  call(client, get(server.url("/")));
  call(client, get(server.url("/missing")));
  auto text = registry.render();
  auto host = "127.0.0.1:" + std::to_string(server.port());
  EXPECT_TRUE(contains(text, "karvon_http_client_requests_total{host=\"" + host
                                 + "\",outcome=\"2xx\"} 2\n"))
      << text;
  EXPECT_TRUE(contains(text, "karvon_http_client_requests_total{host=\"" + host
                                 + "\",outcome=\"4xx\"} 1\n"));
  EXPECT_TRUE(contains(text, "karvon_http_client_in_flight{host=\"" + host
                                 + "\"} 0\n"));
  EXPECT_TRUE(
      contains(text, "karvon_http_client_connections_opened_total{host=\""
                         + host + "\"} 1\n"));
}

} // namespace
} // namespace karvon::actors
