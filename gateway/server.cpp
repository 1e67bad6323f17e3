#include "gateway/server.hpp"

#include <atomic>
#include <ctime>
#include <list>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include "gateway/dispatcher.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/websocket.hpp"
#include "metrics/registry.hpp"

namespace karvon::gateway {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

using clock_type = std::chrono::steady_clock;

// "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7), formatted once a second
// per thread.
const std::string& http_date() {
  thread_local std::time_t cached_second = 0;
  thread_local std::string cached;
  auto now = std::time(nullptr);
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = buf;
    cached_second = now;
  }
  return cached;
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The reply to a connection over the cap: nothing of it is read.
std::string make_over_capacity_reply() {
  std::string body = "{\"error\":{\"code\":\"overloaded\",\"message\":"
                     "\"too many open connections; retry later\"}}";
  return "HTTP/1.1 503 Service Unavailable\r\n"
         "Server: karvon\r\n"
         "Content-Type: application/json\r\n"
         "Retry-After: 1\r\n"
         "Connection: close\r\n"
         "Content-Length: "
         + std::to_string(body.size()) + "\r\n\r\n" + body;
}
const std::string over_capacity_reply = make_over_capacity_reply();

class session;

} // namespace

struct http_server::impl : std::enable_shared_from_this<impl> {
  server_options options;
  dispatcher* disp = nullptr;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::atomic<std::size_t> open{0};
  std::atomic<bool> stopping{false};
  bool listening = false;
  bool started = false;
  bool stopped = false;
  std::uint16_t bound_port = 0;

  std::mutex sessions_mutex;
  std::list<std::weak_ptr<session>> sessions;

  std::mutex post_mutex; // guards posts_closed against late responders
  bool posts_closed = false;

  metrics::counter* accepted = nullptr;
  metrics::counter* rejected = nullptr;
  metrics::family<metrics::counter>* timeouts = nullptr;
  std::shared_ptr<detail::websocket_metrics> ws_metrics;

  impl(server_options o, metrics::registry& m)
      : options(std::move(o)), ioc(std::max(1, options.threads)),
        acceptor(net::make_strand(ioc)) {
    accepted = &m.counters("karvon_http_connections_total",
                           "TCP connections accepted.", {})
                    .with({});
    rejected = &m.counters("karvon_http_connections_rejected_total",
                           "Connections refused with 503 over the cap.", {})
                    .with({});
    timeouts
        = &m.counters("karvon_http_timeouts_total",
                      "Connections closed by a timeout, by phase.", {"phase"});
    ws_metrics = detail::register_websocket_metrics(m);
  }

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void forget(session* s);
};

namespace {

class session;

// The session whose request is being dispatched on this thread, if any.
thread_local session* dispatching = nullptr;

class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket&& socket, std::shared_ptr<http_server::impl> server)
      : stream_(std::move(socket)), server_(std::move(server)),
        handler_timer_(stream_.get_executor()) {
    beast::error_code ec;
    auto remote = stream_.socket().remote_endpoint(ec);
    if (!ec)
      client_ip_ = remote.address().to_string();
  }

  ~session() { server_->open.fetch_sub(1); }

  void run() {
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this()] { self->wait_for_request(); });
  }

  // Called from the server's stop(): idle connections close now, busy ones
  // after their response, WebSockets with 1001.
  void shutdown() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (auto ws = self->websocket_.lock())
        return ws->shutdown();
      if (!self->busy_)
        self->close();
    });
  }

  void force_close() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (auto ws = self->websocket_.lock())
        return ws->force_close();
      self->close();
    });
  }

private:
  const config::http_settings& limits() const { return server_->options.http; }

  void wait_for_request() {
    if (closing_ || server_->stopping.load())
      return close();
    if (buffer_.size() > 0)
      return read_header();
    // Between requests the idle timeout applies; once the first byte of a
    // request is here, the (shorter) read timeout does, so a slow-loris
    // client cannot hold the connection by trickling a header.
    reading_idle_ = true;
    stream_.expires_after(std::chrono::milliseconds{limits().idle_timeout_ms});
    stream_.async_read_some(
        buffer_.prepare(4096),
        [self = shared_from_this()](beast::error_code ec, std::size_t n) {
          self->reading_idle_ = false;
          if (ec) {
            if (ec == beast::error::timeout)
              self->server_->timeouts->with({"idle"}).inc();
            return self->close();
          }
          self->buffer_.commit(n);
          self->read_header();
        });
  }

  void read_header() {
    started_ = clock_type::now();
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(limits().max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(limits().max_body_bytes));
    stream_.expires_after(std::chrono::milliseconds{limits().read_timeout_ms});
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) {
          self->on_header(ec);
        });
  }

  void on_header(beast::error_code ec) {
    if (ec)
      return on_read_error(ec);
    auto& msg = parser_->get();
    // Beast has refused malformed lengths already; what is left to check
    // needs a Transfer-Encoding or a repeated Content-Length, so the common
    // request pays for no copy.
    if (msg.count(bhttp::field::transfer_encoding) > 0
        || msg.count(bhttp::field::content_length) > 1) {
      header_list raw;
      for (auto& field : msg)
        raw.emplace_back(std::string{field.name_string()},
                         std::string{field.value()});
      if (auto problem = framing_problem(raw); !problem.empty())
        return reply_and_close(400, "bad_request",
                               "ambiguous message framing: " + problem);
    }
    if (lower(msg[bhttp::field::expect]) == "100-continue"
        && !parser_->is_done()) {
      // curl and others wait for this before sending a body.
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(
          bhttp::status::continue_, msg.version());
      return bhttp::async_write(
          stream_, *cont,
          [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
            if (ec)
              return self->close();
            self->read_body();
          });
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done())
      return on_read({});
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) {
          self->on_read(ec);
        });
  }

  void on_read_error(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof
        || ec == net::error::connection_reset
        || ec == net::error::operation_aborted)
      return close();
    if (ec == beast::error::timeout) {
      server_->timeouts->with({"read"}).inc();
      return close();
    }
    if (ec == bhttp::error::body_limit)
      return reply_and_close(413, "payload_too_large",
                             "the body is over "
                                 + std::to_string(limits().max_body_bytes)
                                 + " bytes");
    if (ec == bhttp::error::header_limit)
      return reply_and_close(431, "header_too_large",
                             "the request line and headers are over "
                                 + std::to_string(limits().max_header_bytes)
                                 + " bytes");
    return reply_and_close(400, "bad_request",
                           "malformed HTTP request: " + ec.message());
  }

  void on_read(beast::error_code ec) {
    if (ec)
      return on_read_error(ec);
    stream_.expires_never();
    auto msg = parser_->release();
    parser_.reset();

    request req;
    req.method = std::string{msg.method_string()};
    req.target = std::string{msg.target()};
    auto q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos)
      req.query_string = req.target.substr(q + 1);
    req.headers.reserve(8);
    for (auto& field : msg) {
      auto name = lower(field.name_string());
      // Only the server may mark its own check of a WebSocket upgrade.
      if (name != websocket_check_header)
        req.headers.emplace_back(std::move(name), std::string{field.value()});
    }
    req.body = std::move(msg.body());
    req.client_ip = client_ip_;

    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    head_ = msg.method() == bhttp::verb::head;
    busy_ = true;
    upgrade_.reset();
    if (req.path == websocket_path && websocket::is_upgrade(msg)) {
      // Without a key on a route that needs one, the key comes in the first
      // message: take the socket over unchecked. Otherwise the dispatcher
      // checks the upgrade as GET /api/v1/ws (key, role, rate limit; 404
      // without the route), and a 2xx lets it through in on_response().
      auto* auth = req.header("authorization");
      auto match = server_->disp->routes().match("GET", websocket_path);
      if (!auth && match.found && !match.found->who.anonymous)
        return take_over(std::move(req), {}, /*auth_message=*/true);
      req.body.clear();
      upgrade_ = req;
      upgrade_authorization_ = auth ? *auth : std::string{};
      req.headers.emplace_back(std::string{websocket_check_header}, "1");
    }
    auto generation = ++generation_;

    // Most handlers answer before dispatch() returns, on this strand: their
    // response is taken directly, with no post and no timer. Only a request
    // still open afterwards gets the handler deadline.
    auto self = shared_from_this();
    responder done = [self, generation](response r) {
      // Called back inside dispatch() on this very thread: keep it. (A
      // thread-local, not a member, so other threads read nothing racy.)
      if (dispatching == self.get()) {
        self->sync_response_ = std::move(r);
        return;
      }
      // A stopped server runs no more handlers: a late answer is dropped
      // rather than queued where it would keep the session alive forever.
      std::lock_guard lock{self->server_->post_mutex};
      if (self->server_->posts_closed)
        return;
      net::post(self->stream_.get_executor(),
                [self, generation, r = std::move(r)]() mutable {
                  self->on_response(generation, std::move(r));
                });
    };
    dispatching = this;
    server_->disp->dispatch(std::move(req), std::move(done));
    dispatching = nullptr;
    if (sync_response_) {
      auto r = std::move(*sync_response_);
      sync_response_.reset();
      return on_response(generation, std::move(r));
    }

    timer_armed_ = true;
    handler_timer_.expires_after(server_->options.handler_timeout);
    handler_timer_.async_wait(
        [self = shared_from_this(), generation](beast::error_code ec) {
          if (ec || generation != self->generation_ || !self->busy_)
            return;
          self->server_->timeouts->with({"handler"}).inc();
          auto r = error_response(503, "timeout",
                                  "the request took too long; retry later");
          r.headers.emplace_back("Retry-After", "1");
          self->on_response(generation, std::move(r));
        });
  }

  void on_response(std::uint64_t generation, response r) {
    if (generation != generation_ || !busy_)
      return; // answered already (timeout), or the connection moved on
    // One answer per request: a late one (after the 503 of the deadline)
    // must not start a second write while the first is under way.
    ++generation_;
    if (timer_armed_) {
      timer_armed_ = false;
      handler_timer_.cancel();
    }
    if (upgrade_) {
      auto upgrade = std::move(*upgrade_);
      upgrade_.reset();
      if (r.status >= 200 && r.status < 300)
        return take_over(std::move(upgrade), std::move(upgrade_authorization_),
                         /*auth_message=*/false);
      // Refused: the HTTP error, and the connection stays HTTP.
    }
    write(std::move(r), false);
  }

  // Hands the connection to a WebSocket session (websocket.cpp), which
  // answers 101. This session stays as its shell: it keeps the connection
  // counted until the WebSocket ends and passes the server's stop on.
  void take_over(request upgrade, std::string authorization,
                 bool auth_message) {
    if (closing_ || server_->stopping.load()) {
      auto r = error_response(503, "unavailable", "the server is stopping");
      r.headers.emplace_back("Retry-After", "1");
      return write(std::move(r), true);
    }
    if (buffer_.size() > 0) {
      // A client may not send frames before the 101 it has not seen.
      return reply_and_close(400, "bad_request",
                             "data after a WebSocket upgrade request");
    }
    stream_.expires_never();
    beast::error_code ec;
    auto fd = stream_.socket().release(ec);
    if (ec)
      return close();
    closed_ = true; // the socket is the WebSocket's now
    detail::websocket_handoff h;
    h.fd = fd;
    h.upgrade = std::move(upgrade);
    h.authorization = std::move(authorization);
    h.auth_message_required = auth_message;
    h.disp = server_->disp;
    h.max_message_bytes = static_cast<std::size_t>(limits().max_body_bytes);
    h.ask_timeout = server_->options.handler_timeout;
    h.metrics = server_->ws_metrics;
    h.owner = shared_from_this();
    websocket_ = detail::start_websocket(server_->ioc, std::move(h));
  }

  void fill(bhttp::response<bhttp::string_body>& res, response& r) {
    res.result(static_cast<unsigned>(r.status));
    res.version(version_ ? version_ : 11);
    res.set(bhttp::field::server, "karvon");
    res.set(bhttp::field::date, http_date());
    if (!r.body.empty() || r.status >= 200)
      res.set(bhttp::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers)
      res.set(name, value);
    res.body() = std::move(r.body);
    res.prepare_payload();
  }

  void write(response r, bool close_after) {
    res_.emplace();
    fill(*res_, r);
    bool keep
        = keep_alive_ && !close_after && !closing_ && !server_->stopping.load();
    res_->keep_alive(keep);
    if (head_)
      res_->body().clear(); // Content-Length stays that of the GET body
    stream_.expires_after(std::chrono::milliseconds{limits().read_timeout_ms});
    bhttp::async_write(
        stream_, *res_,
        [self = shared_from_this(), keep](beast::error_code ec, std::size_t) {
          self->res_.reset();
          self->busy_ = false;
          if (ec || !keep)
            return self->close();
          self->wait_for_request();
        });
  }

  // Early refusals: the rest of the request is not read, so the connection
  // cannot be reused.
  void reply_and_close(int status, std::string_view code,
                       const std::string& message) {
    server_->disp->record_early(status, clock_type::now() - started_);
    spdlog::debug("http refused ip={} status={} reason={}", client_ip_, status,
                  message);
    busy_ = true;
    ++generation_;
    if (!version_)
      version_ = 11;
    head_ = false;
    write(error_response(status, code, message), true);
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    handler_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close(); // also cancels the stream's timer
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::string_body>> res_;
  std::shared_ptr<http_server::impl> server_;
  net::steady_timer handler_timer_;
  std::string client_ip_;
  clock_type::time_point started_ = clock_type::now();
  std::uint64_t generation_ = 0;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool head_ = false;
  bool busy_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool reading_idle_ = false;
  bool timer_armed_ = false;
  std::optional<response> sync_response_;
  // An upgrade being checked by the dispatcher, and its Authorization.
  std::optional<request> upgrade_;
  std::string upgrade_authorization_;
  // Set once the connection is a WebSocket; it owns this session.
  std::weak_ptr<detail::websocket_connection> websocket_;
};

} // namespace

void http_server::impl::do_accept() {
  acceptor.async_accept(
      net::make_strand(ioc),
      [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        self->on_accept(ec, std::move(socket));
      });
}

void http_server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (stopping.load())
    return;
  if (ec) {
    if (ec == net::error::operation_aborted)
      return;
    // Out of file descriptors and the like: say so, and keep accepting.
    spdlog::warn("http accept failed: {}", ec.message());
  } else if (open.load()
             >= static_cast<std::size_t>(options.http.max_connections)) {
    rejected->inc();
    auto s = std::make_shared<tcp::socket>(std::move(socket));
    net::async_write(*s, net::buffer(over_capacity_reply),
                     [s](beast::error_code, std::size_t) {
                       beast::error_code ignored;
                       s->shutdown(tcp::socket::shutdown_send, ignored);
                       s->close(ignored);
                     });
  } else {
    accepted->inc();
    open.fetch_add(1);
    auto s = std::make_shared<session>(std::move(socket), shared_from_this());
    {
      std::lock_guard lock{sessions_mutex};
      // Drop entries of sessions that have ended, so the list stays small.
      if (sessions.size() > 2 * open.load() + 64)
        sessions.remove_if([](auto& w) { return w.expired(); });
      sessions.push_back(s);
    }
    s->run();
  }
  do_accept();
}

http_server::http_server(server_options options, metrics::registry& metrics)
    : impl_(std::make_shared<impl>(std::move(options), metrics)) {
  metrics.callback_gauge("karvon_http_open_connections",
                         "HTTP connections open now.",
                         [weak = std::weak_ptr<impl>(impl_)] {
                           auto s = weak.lock();
                           return s ? static_cast<double>(s->open.load()) : 0.0;
                         });
}

http_server::~http_server() {
  stop(std::chrono::milliseconds{0});
}

void http_server::listen() {
  auto& i = *impl_;
  if (i.listening)
    return;
  try {
    auto address = net::ip::make_address(i.options.host);
    tcp::endpoint endpoint{address, i.options.port};
    i.acceptor.open(endpoint.protocol());
    i.acceptor.set_option(net::socket_base::reuse_address(true));
    i.acceptor.bind(endpoint);
    i.acceptor.listen(net::socket_base::max_listen_connections);
    i.bound_port = i.acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw std::system_error(e.code().value(), std::system_category(),
                            "cannot listen on " + i.options.host + ":"
                                + std::to_string(i.options.port));
  }
  i.listening = true;
}

void http_server::start(dispatcher& d) {
  auto& i = *impl_;
  listen();
  i.disp = &d;
  i.do_accept();
  i.started = true;
  for (int t = 0; t < std::max(1, i.options.threads); ++t)
    i.threads.emplace_back([self = impl_] { self->ioc.run(); });
}

std::uint16_t http_server::port() const {
  return impl_->bound_port;
}

std::size_t http_server::open_connections() const {
  return impl_->open.load();
}

void http_server::stop(std::chrono::milliseconds grace) {
  auto& i = *impl_;
  if (i.stopped)
    return;
  i.stopped = true;
  i.stopping.store(true);
  if (i.started) {
    net::post(i.acceptor.get_executor(), [self = impl_] {
      beast::error_code ec;
      self->acceptor.close(ec);
    });
    std::vector<std::shared_ptr<session>> live;
    {
      std::lock_guard lock{i.sessions_mutex};
      for (auto& w : i.sessions)
        if (auto s = w.lock())
          live.push_back(std::move(s));
    }
    for (auto& s : live)
      s->shutdown();
    live.clear();
    auto deadline = clock_type::now() + grace;
    while (i.open.load() > 0 && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    {
      std::lock_guard lock{i.sessions_mutex};
      for (auto& w : i.sessions)
        if (auto s = w.lock())
          s->force_close();
    }
    // Give the forced closes a moment to run their handlers.
    auto hard = clock_type::now() + std::chrono::milliseconds{500};
    while (i.open.load() > 0 && clock_type::now() < hard)
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  i.ioc.stop();
  for (auto& t : i.threads)
    if (t.joinable())
      t.join();
  i.threads.clear();
  // Sessions and the handlers that hold them would otherwise keep this impl
  // (and its io_context) alive in a cycle: run what is left on this thread,
  // now the only one, so every closed session completes and lets go.
  {
    std::lock_guard lock{i.post_mutex};
    i.posts_closed = true;
  }
  i.ioc.restart();
  {
    std::lock_guard lock{i.sessions_mutex};
    for (auto& w : i.sessions)
      if (auto s = w.lock())
        s->force_close();
    i.sessions.clear();
  }
  for (int round = 0; round < 100 && i.ioc.poll() > 0; ++round)
    ;
}

} // namespace karvon::gateway
