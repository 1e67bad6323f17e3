#include "actors/http_client.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "metrics/registry.hpp"

namespace karvon::actors {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto no_deadline = clock_type::time_point::max();

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// ---------------------------------------------------------------- URLs

struct url_parts {
  bool tls = false;
  std::string host; //!< lower case; an IPv6 literal without brackets
  std::uint16_t port = 0;
  std::string target;      //!< path and query
  std::string host_header; //!< host[:port] as the Host header wants it
  std::string pool_key;    //!< scheme://host:port
};

std::optional<url_parts> parse_url(std::string_view url, std::string& why) {
  url_parts u;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    why = "no scheme";
    return std::nullopt;
  }
  auto scheme = lower(url.substr(0, sep));
  if (scheme == "https")
    u.tls = true;
  else if (scheme != "http") {
    why = "scheme '" + scheme + "' is not http or https";
    return std::nullopt;
  }
  auto rest = url.substr(sep + 3);
  auto end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, end);
  std::string_view target
      = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (auto hash = target.find('#'); hash != std::string_view::npos)
    target = target.substr(0, hash);
  if (authority.find('@') != std::string_view::npos) {
    // Credentials in URLs end up in logs; callers send an Authorization
    // header instead.
    why = "user info in URLs is not supported";
    return std::nullopt;
  }
  std::string_view host;
  std::string_view port;
  bool ipv6 = false;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "unclosed IPv6 literal";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "junk after the IPv6 literal";
        return std::nullopt;
      }
      port = after.substr(1);
    }
    ipv6 = true;
  } else {
    auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos)
      port = authority.substr(colon + 1);
  }
  if (host.empty()) {
    why = "no host";
    return std::nullopt;
  }
  for (char c : host) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.'
              || (ipv6 ? c == ':' : (c == '-' || c == '_'));
    if (!ok) {
      why = "bad character in the host";
      return std::nullopt;
    }
  }
  if (port.empty())
    u.port = u.tls ? 443 : 80;
  else {
    unsigned long value = 0;
    for (char c : port) {
      if (!is_digit(c) || value > 65535) {
        why = "bad port";
        return std::nullopt;
      }
      value = value * 10 + static_cast<unsigned long>(c - '0');
    }
    if (value == 0 || value > 65535) {
      why = "bad port";
      return std::nullopt;
    }
    u.port = static_cast<std::uint16_t>(value);
  }
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      // A space or CR/LF in the target would split the request line.
      why = "space or control character in the path";
      return std::nullopt;
    }
  u.host = lower(host);
  u.target = target.empty() || target.front() == '?' ? "/" + std::string{target}
                                                     : std::string{target};
  auto bracketed = ipv6 ? "[" + u.host + "]" : u.host;
  bool default_port = u.port == (u.tls ? 443 : 80);
  u.host_header
      = default_port ? bracketed : bracketed + ":" + std::to_string(u.port);
  u.pool_key = scheme + "://" + bracketed + ":" + std::to_string(u.port);
  return u;
}

bool valid_header(const std::string& name, const std::string& value) {
  if (name.empty())
    return false;
  for (char c : name)
    if (static_cast<unsigned char>(c) <= 0x20 || c == ':' || c == 0x7f)
      return false;
  // CR or LF in a value would inject headers of the caller's choosing.
  return value.find_first_of("\r\n") == std::string::npos
         && value.find('\0') == std::string::npos;
}

bool idempotent(bhttp::verb v) {
  switch (v) {
  case bhttp::verb::get:
  case bhttp::verb::head:
  case bhttp::verb::put:
  case bhttp::verb::delete_:
  case bhttp::verb::options:
  case bhttp::verb::trace:
    return true;
  default:
    return false;
  }
}

// ----------------------------------------------------------- stream decoding

// Cuts a streamed body into NDJSON lines or server-sent events (the
// WHATWG "event stream interpretation"), holding at most `max` bytes of an
// unfinished line or event.
class stream_decoder {
public:
  enum class result { more, aborted, too_large };

  stream_decoder(stream_format format, std::size_t max)
      : format_(format), max_(max) {}

  template <class Emit>
  result feed(std::string_view data, Emit&& emit) {
    while (!data.empty()) {
      if (skip_lf_) {
        skip_lf_ = false;
        if (data.front() == '\n') {
          data.remove_prefix(1);
          continue;
        }
      }
      // SSE ends lines with CR, LF or CRLF; NDJSON with LF (a CR before it
      // is dropped below).
      auto end = format_ == stream_format::sse ? data.find_first_of("\r\n")
                                               : data.find('\n');
      if (end == std::string_view::npos) {
        if (line_.size() + data.size() > max_)
          return result::too_large;
        line_.append(data);
        return result::more;
      }
      if (line_.size() + end > max_)
        return result::too_large;
      line_.append(data.substr(0, end));
      skip_lf_ = data[end] == '\r';
      data.remove_prefix(end + 1);
      auto r = line(emit);
      line_.clear();
      if (r != result::more)
        return r;
    }
    return result::more;
  }

  /// The body has ended: a last NDJSON line without its newline still
  /// counts; an SSE event without its blank line does not (as browsers do).
  template <class Emit>
  result finish(Emit&& emit) {
    if (format_ == stream_format::lines && !line_.empty()) {
      auto r = line(emit);
      line_.clear();
      return r;
    }
    return result::more;
  }

private:
  template <class Emit>
  result line(Emit& emit) {
    std::string_view l = line_;
    if (format_ == stream_format::lines) {
      if (!l.empty() && l.back() == '\r')
        l.remove_suffix(1);
      if (l.empty())
        return result::more;
      return emit(l) ? result::more : result::aborted;
    }
    if (l.empty()) { // dispatch
      if (!has_data_)
        return result::more;
      has_data_ = false;
      std::string event = std::move(data_);
      data_.clear();
      return emit(std::string_view{event}) ? result::more : result::aborted;
    }
    if (l.front() == ':')
      return result::more; // a comment, often a keep-alive ping
    auto colon = l.find(':');
    auto field = l.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
      value = l.substr(colon + 1);
      if (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
    }
    if (field != "data")
      return result::more; // event, id, retry: no caller needs them yet
    if (data_.size() + value.size() + 1 > max_)
      return result::too_large;
    if (has_data_)
      data_ += '\n';
    data_.append(value);
    has_data_ = true;
    return result::more;
  }

  stream_format format_;
  std::size_t max_;
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool skip_lf_ = false;
};

// string_body's reader reserves the announced Content-Length at once; a
// streamed body has no parser limit, so a server announcing 100 GB would
// make that throw. This body grows only with what arrives.
struct growing_body {
  using value_type = std::string;

  class reader {
  public:
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>&, beast::error_code& ec) {
      ec = {};
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      auto n = net::buffer_size(buffers);
      auto size = body_.size();
      body_.resize(size + n);
      net::buffer_copy(net::buffer(&body_[size], n), buffers);
      ec = {};
      return n;
    }

    void finish(beast::error_code& ec) { ec = {}; }

  private:
    value_type& body_;
  };
};

// ----------------------------------------------------------- client state

struct job {
  http_request req;
  std::function<void(http_response)> done;
  url_parts url;
  bhttp::verb verb = bhttp::verb::get;
  clock_type::time_point deadline = no_deadline;
  bool idempotent = false;
  bool retried = false;
  bool sent = false; //!< a byte of it may have reached the server
  bool finished = false;
  bool counted = false;                        //!< in the in-flight gauge
  std::optional<net::steady_timer> wait_timer; //!< while queued
};

struct host_pool;

struct client_state {
  explicit client_state(http_client_options o);

  /// Calls the job's done once, counts it, and lets stop() know.
  void finish(job& j, http_response r, const std::string& host);

  http_client_options options;
  // Declared before the io_context so that it outlives handlers the
  // io_context destroys last (they may hold TLS streams).
  ssl::context tls{ssl::context::tls_client};
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;

  std::mutex mutex;
  std::condition_variable all_done;
  std::size_t active = 0; //!< jobs whose done has not run; under mutex
  bool stopped = false;   //!< under mutex
  std::map<std::string, std::unique_ptr<host_pool>> pools; //!< under mutex

  std::atomic<std::uint64_t> opened{0};
  metrics::family<metrics::counter>* requests = nullptr;
  metrics::family<metrics::gauge>* in_flight = nullptr;
  metrics::family<metrics::counter>* connections = nullptr;
};

class connection;

// Everything of one (scheme, host, port) runs on its strand: the pool's
// lists and every connection's I/O, so none of it needs a lock.
struct host_pool {
  host_pool(client_state& c, const url_parts& u)
      : client(c), tls(u.tls), host(u.host), port(u.port), label(u.host_header),
        strand(net::make_strand(c.ioc)) {}

  void submit(std::shared_ptr<job> j);
  bool try_start(const std::shared_ptr<job>& j);
  void pump();
  void release(const std::shared_ptr<connection>& c, bool keep);
  void forget(connection* c);
  void drop_idle(connection* c);
  void retry(connection* failed, std::shared_ptr<job> j);
  void finish(const std::shared_ptr<job>& j, http_response r);
  void fail(const std::shared_ptr<job>& j, http_error kind, std::string text);
  void shutdown();

  client_state& client;
  bool tls;
  std::string host;
  std::uint16_t port;
  std::string label; //!< the metric's host label: host, or host:port
  net::strand<net::io_context::executor_type> strand;
  std::unordered_map<connection*, std::shared_ptr<connection>> open;
  std::vector<std::shared_ptr<connection>> idle; //!< back: used last
  std::deque<std::shared_ptr<job>> waiting;
  bool stopping = false;
};

// One TCP (or TLS) connection. Every handler carries the generation it was
// started in; a state change bumps it, so late handlers of a closed or
// recycled connection do nothing.
class connection : public std::enable_shared_from_this<connection> {
public:
  explicit connection(host_pool& pool)
      : pool_(pool), resolver_(pool.strand), timer_(pool.strand) {
    if (pool.tls)
      tls_.emplace(pool.strand, pool.client.tls);
    else
      plain_.emplace(pool.strand);
  }

  void connect(std::shared_ptr<job> j);
  void run(std::shared_ptr<job> j);
  bool usable();
  void go_idle();
  void close();
  std::shared_ptr<job> take_job() { return std::move(job_); }

private:
  enum class state { fresh, connecting, busy, idle, closed };

  beast::tcp_stream& lowest() {
    return tls_ ? beast::get_lowest_layer(*tls_) : *plain_;
  }

  template <class F>
  void with_stream(F&& f) {
    if (tls_)
      f(*tls_);
    else
      f(*plain_);
  }

  void on_resolve(std::uint64_t gen, beast::error_code ec,
                  const tcp::resolver::results_type& results);
  void on_connect(std::uint64_t gen, beast::error_code ec);
  void on_handshake(std::uint64_t gen, beast::error_code ec);
  void start_request();
  void new_parser();
  void set_io_expiry();
  void on_write(std::uint64_t gen, beast::error_code ec, std::size_t n);
  void read_some(std::uint64_t gen);
  void on_read(std::uint64_t gen, beast::error_code ec);
  bool deliver(std::string_view piece);
  void complete();
  void fail_io(beast::error_code ec, bool nothing_written);
  void fail(http_error kind, std::string text);
  std::string handshake_error(beast::error_code ec);

  host_pool& pool_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  tcp::resolver resolver_;
  net::steady_timer timer_; //!< the resolve deadline, then the idle timeout
  beast::flat_buffer buffer_;
  std::optional<bhttp::request<bhttp::string_body>> req_;
  std::optional<bhttp::response_parser<growing_body>> parser_;
  std::optional<stream_decoder> decoder_;
  std::shared_ptr<job> job_;
  state state_ = state::fresh;
  std::uint64_t generation_ = 0;
  clock_type::time_point connect_deadline_ = no_deadline;
  bool resolving_ = false;
  bool reused_ = false; //!< it has served a request before this one
  bool header_seen_ = false;
  bool streaming_ = false;
};

// ------------------------------------------------------------- connection

void connection::connect(std::shared_ptr<job> j) {
  job_ = std::move(j);
  state_ = state::connecting;
  auto gen = ++generation_;
  connect_deadline_ = job_->deadline;
  if (job_->req.connect_timeout.count() > 0)
    connect_deadline_ = std::min(connect_deadline_,
                                 clock_type::now() + job_->req.connect_timeout);
  // The resolver has no deadline of its own; this timer gives it one (the
  // lookup itself runs on asio's resolver thread and is abandoned, not
  // interrupted). Connect and handshake use the stream's expiry.
  resolving_ = true;
  if (connect_deadline_ != no_deadline) {
    timer_.expires_at(connect_deadline_);
    timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->generation_ || !self->resolving_)
        return;
      self->fail(http_error::timeout, "connect timeout");
    });
  }
  resolver_.async_resolve(
      pool_.host, std::to_string(pool_.port),
      [self = shared_from_this(), gen](beast::error_code ec,
                                       tcp::resolver::results_type results) {
        self->on_resolve(gen, ec, results);
      });
}

void connection::on_resolve(std::uint64_t gen, beast::error_code ec,
                            const tcp::resolver::results_type& results) {
  if (gen != generation_)
    return;
  resolving_ = false;
  timer_.cancel();
  if (ec)
    return fail(http_error::dns, "DNS resolution failed for " + pool_.host
                                     + ": " + ec.message());
  if (connect_deadline_ == no_deadline)
    lowest().expires_never();
  else
    lowest().expires_at(connect_deadline_);
  lowest().async_connect(results,
                         [self = shared_from_this(),
                          gen](beast::error_code ec, const tcp::endpoint&) {
                           self->on_connect(gen, ec);
                         });
}

void connection::on_connect(std::uint64_t gen, beast::error_code ec) {
  if (gen != generation_)
    return;
  if (ec) {
    if (ec == beast::error::timeout)
      return fail(http_error::timeout, "connect timeout");
    if (ec == net::error::connection_refused)
      return fail(http_error::connect, "connection refused");
    return fail(http_error::connect, "connect failed: " + ec.message());
  }
  pool_.client.opened.fetch_add(1, std::memory_order_relaxed);
  if (pool_.client.connections)
    pool_.client.connections->with({pool_.label}).inc();
  if (!tls_)
    return start_request();

  SSL* ssl = tls_->native_handle();
  beast::error_code not_ip;
  net::ip::make_address(pool_.host, not_ip);
  // SNI carries names only (RFC 6066 §3); an IP literal is checked against
  // the certificate's IP SANs instead. OpenSSL checks the name during the
  // handshake, so a mismatch fails there with a precise verify error.
  if (not_ip && SSL_set_tlsext_host_name(ssl, pool_.host.c_str()) != 1)
    return fail(http_error::tls, "TLS setup failed: cannot set SNI");
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  int set = not_ip ? X509_VERIFY_PARAM_set1_host(param, pool_.host.data(),
                                                 pool_.host.size())
                   : X509_VERIFY_PARAM_set1_ip_asc(param, pool_.host.c_str());
  if (set != 1)
    return fail(http_error::tls, "TLS setup failed: cannot set the host name");
  tls_->async_handshake(ssl::stream_base::client,
                        [self = shared_from_this(), gen](beast::error_code ec) {
                          self->on_handshake(gen, ec);
                        });
}

std::string connection::handshake_error(beast::error_code ec) {
  long verify = SSL_get_verify_result(tls_->native_handle());
  if (verify != X509_V_OK)
    return std::string{"TLS handshake failed: certificate verify failed: "}
           + X509_verify_cert_error_string(verify);
  if (ec.category() == net::error::get_ssl_category()) {
    if (const char* reason
        = ERR_reason_error_string(static_cast<unsigned long>(ec.value())))
      return std::string{"TLS handshake failed: "} + reason;
  }
  return "TLS handshake failed: " + ec.message();
}

void connection::on_handshake(std::uint64_t gen, beast::error_code ec) {
  if (gen != generation_)
    return;
  if (ec) {
    if (ec == beast::error::timeout)
      return fail(http_error::timeout, "TLS handshake timeout");
    return fail(http_error::tls, handshake_error(ec));
  }
  start_request();
}

void connection::run(std::shared_ptr<job> j) {
  timer_.cancel();
  beast::error_code ignored;
  lowest().socket().cancel(ignored); // the idle watch
  reused_ = true;
  job_ = std::move(j);
  start_request();
}

bool connection::usable() {
  if (state_ != state::idle || !lowest().socket().is_open())
    return false;
  // The watch below may not have run yet: look at the socket itself. EOF
  // (0) means the server closed; bytes on an idle connection (a TLS
  // close_notify, junk) mean it cannot carry a new request either.
  char c;
  auto n = ::recv(lowest().socket().native_handle(), &c, 1,
                  MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void connection::go_idle() {
  state_ = state::idle;
  reused_ = true;
  auto gen = ++generation_;
  lowest().expires_never();
  timer_.expires_after(pool_.client.options.idle_connection_timeout);
  timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
    if (ec || gen != self->generation_)
      return;
    self->pool_.drop_idle(self.get());
  });
  // Readable while idle: the server closed it (or sent what it should not).
  lowest().socket().async_wait(
      tcp::socket::wait_read,
      [self = shared_from_this(), gen](beast::error_code ec) {
        if (ec || gen != self->generation_)
          return;
        self->pool_.drop_idle(self.get());
      });
}

void connection::close() {
  if (state_ == state::closed)
    return;
  state_ = state::closed;
  ++generation_;
  resolving_ = false;
  timer_.cancel();
  resolver_.cancel();
  beast::error_code ignored;
  // No TLS close_notify: it would cost a round of I/O for a connection
  // whose server answers or times out all the same.
  lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest().close();
}

void connection::new_parser() {
  auto& o = pool_.client.options;
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(o.max_header_bytes, UINT32_MAX)));
  // A stream has no total limit, only one per line; its non-2xx body is
  // checked against max_body_bytes as it arrives. Not boost::none: Beast
  // 1.74 compares a Content-Length with the empty optional as "over".
  if (job_->req.on_chunk)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  else
    parser_->body_limit(static_cast<std::uint64_t>(o.max_body_bytes));
  if (job_->verb == bhttp::verb::head)
    parser_->skip(true);
}

void connection::set_io_expiry() {
  auto until = job_->deadline;
  if (job_->req.read_timeout.count() > 0)
    until = std::min(until, clock_type::now() + job_->req.read_timeout);
  if (until == no_deadline)
    lowest().expires_never();
  else
    lowest().expires_at(until);
}

void connection::start_request() {
  state_ = state::busy;
  auto gen = ++generation_;
  header_seen_ = false;
  streaming_ = false;
  decoder_.reset();
  buffer_.clear();
  auto& j = *job_;
  req_.emplace(j.verb, j.url.target, 11);
  for (auto& [name, value] : j.req.headers)
    req_->insert(name, value);
  if (req_->find(bhttp::field::host) == req_->end())
    req_->set(bhttp::field::host, j.url.host_header);
  if (req_->find(bhttp::field::user_agent) == req_->end()
      && !pool_.client.options.user_agent.empty())
    req_->set(bhttp::field::user_agent, pool_.client.options.user_agent);
  req_->body() = j.req.body; // a copy: a retry sends it again
  req_->prepare_payload();
  new_parser();
  set_io_expiry();
  with_stream([&](auto& s) {
    bhttp::async_write(
        s, *req_,
        [self = shared_from_this(), gen](beast::error_code ec, std::size_t n) {
          self->on_write(gen, ec, n);
        });
  });
}

void connection::on_write(std::uint64_t gen, beast::error_code ec,
                          std::size_t n) {
  if (gen != generation_)
    return;
  if (!ec || n > 0)
    job_->sent = true;
  if (ec)
    return fail_io(ec, n == 0);
  read_some(gen);
}

void connection::read_some(std::uint64_t gen) {
  set_io_expiry();
  with_stream([&](auto& s) {
    bhttp::async_read_some(
        s, buffer_, *parser_,
        [self = shared_from_this(), gen](beast::error_code ec, std::size_t) {
          self->on_read(gen, ec);
        });
  });
}

bool connection::deliver(std::string_view piece) {
  try {
    return job_->req.on_chunk(piece);
  } catch (const std::exception& e) {
    spdlog::error("http client: on_chunk threw: {}", e.what());
  } catch (...) {
    spdlog::error("http client: on_chunk threw");
  }
  return false;
}

void connection::on_read(std::uint64_t gen, beast::error_code ec) {
  if (gen != generation_)
    return;
  // Beast turns a plain EOF into the end of a close-delimited body; over
  // TLS the same EOF arrives as stream_truncated (no close_notify), which
  // most servers never send.
  if (ec == ssl::error::stream_truncated && parser_->got_some()
      && parser_->is_header_done()) {
    beast::error_code eof;
    parser_->put_eof(eof);
    ec = eof;
  }
  if (ec)
    return fail_io(ec, false);
  auto& o = pool_.client.options;
  if (parser_->is_header_done() && !header_seen_) {
    int status = parser_->get().result_int();
    if (status / 100 == 1 && status != 101) {
      // An interim response (103 Early Hints): the real one follows.
      if (parser_->is_done()) {
        new_parser();
        return read_some(gen);
      }
    } else {
      header_seen_ = true;
      streaming_ = job_->req.on_chunk && status / 100 == 2
                   && job_->verb != bhttp::verb::head;
      if (streaming_) {
        auto format = job_->req.format;
        if (format == stream_format::by_content_type) {
          auto type = lower(parser_->get()[bhttp::field::content_type]);
          format = type.rfind("text/event-stream", 0) == 0
                       ? stream_format::sse
                       : stream_format::lines;
        }
        decoder_.emplace(format, o.max_line_bytes);
      }
    }
  }
  if (header_seen_) {
    auto& body = parser_->get().body();
    if (streaming_) {
      auto r = decoder_->feed(
          body, [this](std::string_view piece) { return deliver(piece); });
      body.clear();
      if (r == stream_decoder::result::aborted)
        return fail(http_error::aborted, "aborted by on_chunk");
      if (r == stream_decoder::result::too_large)
        return fail(http_error::too_large,
                    "stream line over " + std::to_string(o.max_line_bytes)
                        + " bytes");
    } else if (job_->req.on_chunk && body.size() > o.max_body_bytes) {
      return fail(http_error::too_large, "response body over "
                                             + std::to_string(o.max_body_bytes)
                                             + " bytes");
    }
  }
  if (!parser_->is_done())
    return read_some(gen);
  if (streaming_) {
    auto r = decoder_->finish(
        [this](std::string_view piece) { return deliver(piece); });
    if (r == stream_decoder::result::aborted)
      return fail(http_error::aborted, "aborted by on_chunk");
  }
  complete();
}

void connection::complete() {
  http_response r;
  auto& msg = parser_->get();
  r.status = msg.result_int();
  r.headers.reserve(16);
  for (auto& field : msg)
    r.headers.emplace_back(lower(field.name_string()),
                           std::string{field.value()});
  if (!streaming_)
    r.body = std::move(msg.body());
  r.request_sent = true;
  // Leftover bytes after the response would be an unasked-for answer:
  // such a connection is not reused.
  bool keep = parser_->keep_alive() && buffer_.size() == 0 && r.status != 101;
  auto j = std::move(job_);
  parser_.reset();
  req_.reset();
  decoder_.reset();
  auto self = shared_from_this();
  pool_.release(self, keep);
  pool_.finish(j, std::move(r));
}

void connection::fail_io(beast::error_code ec, bool nothing_written) {
  bool closed = ec == net::error::eof || ec == bhttp::error::end_of_stream
                || ec == ssl::error::stream_truncated
                || ec == net::error::connection_reset
                || ec == net::error::connection_aborted
                || ec == net::error::broken_pipe
                || ec == bhttp::error::partial_message;
  bool started = (parser_ && parser_->got_some()) || buffer_.size() > 0;
  if (closed && reused_ && !started && !job_->retried && !pool_.stopping
      && (nothing_written || job_->idempotent)) {
    // The server dropped a kept-alive connection as we reused it (its idle
    // timeout raced our request): the one case worth a second attempt.
    auto j = std::move(job_);
    j->retried = true;
    close();
    return pool_.retry(this, std::move(j));
  }
  auto& o = pool_.client.options;
  if (ec == beast::error::timeout)
    return fail(http_error::timeout, clock_type::now() >= job_->deadline
                                         ? "response timeout"
                                         : "read timeout");
  if (closed)
    return fail(http_error::connection_closed,
                started ? "connection closed by server during the response"
                        : "connection closed by server before the response");
  if (ec == bhttp::error::body_limit)
    return fail(http_error::too_large, "response body over "
                                           + std::to_string(o.max_body_bytes)
                                           + " bytes");
  if (ec == bhttp::error::header_limit)
    return fail(http_error::bad_response,
                "response header over " + std::to_string(o.max_header_bytes)
                    + " bytes");
  if (ec.category()
      == bhttp::make_error_code(bhttp::error::bad_version).category())
    return fail(http_error::bad_response,
                "malformed HTTP response: " + ec.message());
  fail(http_error::connection_closed, "I/O error: " + ec.message());
}

void connection::fail(http_error kind, std::string text) {
  auto j = std::move(job_);
  close();
  auto self = shared_from_this(); // forget() drops the pool's reference
  pool_.forget(this);
  if (j)
    pool_.fail(j, kind, std::move(text));
}

// -------------------------------------------------------------- host pool

void host_pool::submit(std::shared_ptr<job> j) {
  if (stopping)
    return fail(j, http_error::stopped, "client stopped");
  if (client.in_flight) {
    client.in_flight->with({label}).add(1);
    j->counted = true;
  }
  if (try_start(j))
    return;
  if (waiting.size() >= client.options.max_queue_per_host)
    return fail(j, http_error::overloaded,
                "too many requests waiting for " + label);
  waiting.push_back(j);
  if (j->deadline != no_deadline) {
    j->wait_timer.emplace(strand, j->deadline);
    j->wait_timer->async_wait(
        [this, weak = std::weak_ptr<job>(j)](beast::error_code ec) {
          auto j = weak.lock();
          if (ec || !j || j->finished)
            return;
          auto it = std::find(waiting.begin(), waiting.end(), j);
          if (it == waiting.end())
            return;
          waiting.erase(it);
          fail(j, http_error::timeout,
               "response timeout while waiting for a free connection");
        });
  }
}

// Starts `j` on an idle connection or a new one; false at the bound.
bool host_pool::try_start(const std::shared_ptr<job>& j) {
  while (!idle.empty()) {
    auto c = std::move(idle.back());
    idle.pop_back();
    if (c->usable()) {
      if (j->wait_timer)
        j->wait_timer->cancel();
      c->run(j);
      return true;
    }
    c->close();
    open.erase(c.get());
  }
  if (open.size() >= client.options.max_connections_per_host)
    return false;
  if (j->wait_timer)
    j->wait_timer->cancel();
  auto c = std::make_shared<connection>(*this);
  open.emplace(c.get(), c);
  c->connect(j);
  return true;
}

void host_pool::pump() {
  while (!stopping && !waiting.empty()) {
    if (!try_start(waiting.front()))
      return;
    waiting.pop_front();
  }
}

void host_pool::release(const std::shared_ptr<connection>& c, bool keep) {
  if (!keep || stopping) {
    c->close();
    return forget(c.get());
  }
  if (!waiting.empty()) {
    auto j = std::move(waiting.front());
    waiting.pop_front();
    if (j->wait_timer)
      j->wait_timer->cancel();
    return c->run(std::move(j));
  }
  if (idle.size() >= client.options.max_idle_per_host) {
    c->close();
    open.erase(c.get());
    return;
  }
  c->go_idle();
  idle.push_back(c);
}

void host_pool::forget(connection* c) {
  open.erase(c);
  pump();
}

void host_pool::drop_idle(connection* c) {
  auto it = std::find_if(idle.begin(), idle.end(),
                         [c](auto& p) { return p.get() == c; });
  if (it == idle.end())
    return;
  auto keep_alive = std::move(*it);
  idle.erase(it);
  c->close();
  open.erase(c);
}

void host_pool::retry(connection* failed, std::shared_ptr<job> j) {
  // Always a fresh connection: the other idle ones are likely as stale as
  // the one that just failed. The fresh one takes the failed one's place,
  // so the bound holds (no pump() in between to fill the slot).
  open.erase(failed);
  idle.erase(std::remove_if(idle.begin(), idle.end(),
                            [this](auto& c) {
                              if (c->usable())
                                return false;
                              c->close();
                              open.erase(c.get());
                              return true;
                            }),
             idle.end());
  auto c = std::make_shared<connection>(*this);
  open.emplace(c.get(), c);
  c->connect(std::move(j));
}

void host_pool::finish(const std::shared_ptr<job>& j, http_response r) {
  if (j->finished)
    return;
  if (j->counted && client.in_flight)
    client.in_flight->with({label}).add(-1);
  client.finish(*j, std::move(r), label);
}

void host_pool::fail(const std::shared_ptr<job>& j, http_error kind,
                     std::string text) {
  http_response r;
  r.error = std::move(text);
  r.kind = kind;
  r.request_sent = j->sent;
  finish(j, std::move(r));
}

void host_pool::shutdown() {
  stopping = true;
  auto queued = std::move(waiting);
  waiting.clear();
  for (auto& j : queued)
    fail(j, http_error::stopped, "client stopped");
  idle.clear();
  auto conns = std::move(open);
  open.clear();
  for (auto& [ptr, c] : conns) {
    auto j = c->take_job();
    c->close();
    if (j)
      fail(j, http_error::stopped, "client stopped");
  }
}

// ------------------------------------------------------------ client state

client_state::client_state(http_client_options o) : options(std::move(o)) {
  options.threads = std::max(1, options.threads);
  options.max_connections_per_host
      = std::max<std::size_t>(1, options.max_connections_per_host);
  try {
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                    | ssl::context::no_sslv3 | ssl::context::no_compression);
    SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
    tls.set_verify_mode(ssl::verify_peer);
    tls.set_default_verify_paths();
    if (!options.extra_ca_file.empty())
      tls.load_verify_file(options.extra_ca_file);
    if (!options.extra_ca_pem.empty())
      tls.add_certificate_authority(net::buffer(options.extra_ca_pem));
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("http client: cannot load the CA certificates"
                             + (options.extra_ca_file.empty()
                                    ? std::string{}
                                    : " (" + options.extra_ca_file + ")")
                             + ": " + e.what());
  }
  if (options.metrics) {
    auto& m = *options.metrics;
    requests = &m.counters("karvon_http_client_requests_total",
                           "Outgoing HTTP requests by host and outcome (2xx, "
                           "4xx, timeout, connect, tls, ...).",
                           {"host", "outcome"});
    in_flight
        = &m.gauges("karvon_http_client_in_flight",
                    "Outgoing HTTP requests queued or in flight.", {"host"});
    connections = &m.counters("karvon_http_client_connections_opened_total",
                              "Outgoing connections opened.", {"host"});
  }
}

void client_state::finish(job& j, http_response r, const std::string& host) {
  j.finished = true;
  if (j.wait_timer)
    j.wait_timer->cancel();
  if (requests) {
    std::string outcome = r.kind != http_error::none
                              ? to_string(r.kind)
                              : std::to_string(r.status / 100) + "xx";
    requests->with({host, outcome}).inc();
  }
  auto done = std::move(j.done);
  j.req.on_chunk = nullptr; // lets go of what the caller captured
  try {
    if (done)
      done(std::move(r));
  } catch (const std::exception& e) {
    spdlog::error("http client: a done callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("http client: a done callback threw");
  }
  std::lock_guard lock{mutex};
  if (--active == 0)
    all_done.notify_all();
}

} // namespace

// ----------------------------------------------------------------- public

const char* to_string(http_error e) {
  switch (e) {
  case http_error::none:
    return "none";
  case http_error::invalid_request:
    return "invalid_request";
  case http_error::overloaded:
    return "overloaded";
  case http_error::dns:
    return "dns";
  case http_error::connect:
    return "connect";
  case http_error::tls:
    return "tls";
  case http_error::timeout:
    return "timeout";
  case http_error::connection_closed:
    return "connection_closed";
  case http_error::bad_response:
    return "bad_response";
  case http_error::too_large:
    return "too_large";
  case http_error::aborted:
    return "aborted";
  case http_error::stopped:
    return "stopped";
  }
  return "unknown";
}

std::string_view http_response::header(std::string_view lower_name) const {
  for (auto& [name, value] : headers)
    if (name == lower_name)
      return value;
  return {};
}

std::optional<std::chrono::seconds>
http_response::retry_after(std::chrono::system_clock::time_point now) const {
  for (auto& [name, value] : headers)
    if (name == "retry-after")
      return parse_retry_after(value, now);
  return std::nullopt;
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil): no timegm, no time zone.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

class date_cursor {
public:
  explicit date_cursor(std::string_view s) : s_(s) {}

  bool literal(char c) {
    if (s_.empty() || s_.front() != c)
      return false;
    s_.remove_prefix(1);
    return true;
  }
  bool spaces() {
    if (s_.empty() || s_.front() != ' ')
      return false;
    while (!s_.empty() && s_.front() == ' ')
      s_.remove_prefix(1);
    return true;
  }
  bool number(int min_digits, int max_digits, int& out) {
    int n = 0;
    out = 0;
    while (n < max_digits && !s_.empty() && is_digit(s_.front())) {
      out = out * 10 + (s_.front() - '0');
      s_.remove_prefix(1);
      ++n;
    }
    return n >= min_digits;
  }
  std::string_view word() {
    std::size_t n = 0;
    while (n < s_.size() && std::isalpha(static_cast<unsigned char>(s_[n])))
      ++n;
    auto w = s_.substr(0, n);
    s_.remove_prefix(n);
    return w;
  }
  bool month(int& out) {
    static constexpr const char* names[]
        = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    auto w = word();
    for (int i = 0; i < 12; ++i)
      if (iequals(w, names[i])) {
        out = i + 1;
        return true;
      }
    return false;
  }
  bool time(int& h, int& m, int& s) {
    return number(2, 2, h) && literal(':') && number(2, 2, m) && literal(':')
           && number(2, 2, s);
  }
  bool gmt() { return iequals(word(), "GMT"); }
  bool at_end() const { return s_.empty(); }

private:
  std::string_view s_;
};

} // namespace

std::optional<std::chrono::system_clock::time_point>
parse_http_date(std::string_view value) {
  value = trim(value);
  date_cursor c{value};
  int day = 0, month = 0, year = 0, h = 0, m = 0, s = 0;
  if (c.word().empty())
    return std::nullopt; // the day name; its value is redundant
  bool ok = false;
  if (c.literal(',')) {
    c.spaces();
    // IMF-fixdate "06 Nov 1994 08:49:37 GMT" or RFC 850
    // "06-Nov-94 08:49:37 GMT".
    if (!c.number(1, 2, day))
      return std::nullopt;
    if (c.literal('-')) {
      ok = c.month(month) && c.literal('-') && c.number(2, 2, year)
           && c.spaces() && c.time(h, m, s) && c.spaces() && c.gmt();
      // A two-digit year more than 50 years ahead is in the past
      // (RFC 9110 §5.6.7); a retry hint cannot be that far anyway.
      year += year < 70 ? 2000 : 1900;
    } else {
      ok = c.spaces() && c.month(month) && c.spaces() && c.number(4, 4, year)
           && c.spaces() && c.time(h, m, s) && c.spaces() && c.gmt();
    }
  } else {
    // asctime: "Sun Nov  6 08:49:37 1994"
    ok = c.spaces() && c.month(month) && c.spaces() && c.number(1, 2, day)
         && c.spaces() && c.time(h, m, s) && c.spaces() && c.number(4, 4, year);
  }
  if (!ok || !c.at_end() || day < 1 || day > 31 || h > 23 || m > 59 || s > 60)
    return std::nullopt;
  auto days = days_from_civil(year, static_cast<unsigned>(month),
                              static_cast<unsigned>(day));
  auto secs = days * 86400 + h * 3600 + m * 60 + s;
  return std::chrono::system_clock::time_point{std::chrono::seconds{secs}};
}

std::optional<std::chrono::seconds>
parse_retry_after(std::string_view value,
                  std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty())
    return std::nullopt;
  if (std::all_of(value.begin(), value.end(), is_digit)) {
    // Clamped, so a hostile value cannot overflow a caller's arithmetic:
    // nobody waits longer than a day on a hint.
    constexpr std::int64_t cap = 86400;
    std::int64_t n = 0;
    for (char c : value)
      n = std::min(cap, n * 10 + (c - '0'));
    return std::chrono::seconds{n};
  }
  auto date = parse_http_date(value);
  if (!date)
    return std::nullopt;
  if (*date <= now)
    return std::chrono::seconds{0};
  auto delta = *date - now;
  auto secs = std::chrono::ceil<std::chrono::seconds>(delta);
  return std::min(secs, std::chrono::seconds{86400});
}

struct http_client::impl : client_state {
  using client_state::client_state;
};

http_client::http_client(http_client_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {
  auto& s = *impl_;
  s.work.emplace(net::make_work_guard(s.ioc));
  for (int t = 0; t < s.options.threads; ++t)
    s.threads.emplace_back([&s] { s.ioc.run(); });
}

http_client::~http_client() {
  stop();
}

std::uint64_t http_client::connections_opened() const {
  return impl_->opened.load(std::memory_order_relaxed);
}

void http_client::request(http_request req,
                          std::function<void(http_response)> done) {
  auto& s = *impl_;
  auto j = std::make_shared<job>();
  j->req = std::move(req);
  j->done = std::move(done);
  auto start = clock_type::now();
  if (j->req.response_timeout.count() > 0)
    j->deadline = start + j->req.response_timeout;

  std::string why;
  auto url = parse_url(j->req.url, why);
  if (url) {
    j->url = *url;
    j->verb = bhttp::string_to_verb(j->req.method);
    j->idempotent = idempotent(j->verb);
    if (j->verb == bhttp::verb::unknown)
      why = "unsupported method '" + j->req.method + "'";
    for (auto& [name, value] : j->req.headers)
      if (why.empty() && !valid_header(name, value))
        why = "invalid header '" + name + "'";
  }

  std::unique_lock lock{s.mutex};
  if (s.stopped) {
    lock.unlock();
    http_response r;
    r.error = "client stopped";
    r.kind = http_error::stopped;
    if (j->done)
      j->done(std::move(r));
    return;
  }
  ++s.active;
  if (!why.empty()) {
    // Still answered on a client thread, never inside this call, so that a
    // caller's done cannot run under its own lock.
    net::post(s.ioc, [&s, j, why = "invalid request: " + why] {
      http_response r;
      r.error = why;
      r.kind = http_error::invalid_request;
      s.finish(*j, std::move(r), j->url.host_header);
    });
    return;
  }
  auto& pool = s.pools[j->url.pool_key];
  if (!pool)
    pool = std::make_unique<host_pool>(s, j->url);
  net::post(pool->strand, [p = pool.get(), j] { p->submit(j); });
}

void http_client::stop() {
  auto& s = *impl_;
  std::vector<host_pool*> pools;
  {
    std::lock_guard lock{s.mutex};
    if (s.stopped)
      return;
    s.stopped = true;
    for (auto& [key, pool] : s.pools)
      pools.push_back(pool.get());
  }
  for (auto& t : s.threads)
    if (t.get_id() == std::this_thread::get_id()) {
      // A programmer error: joining this thread from itself cannot work.
      spdlog::critical("http client: stop() called on the client's thread");
      std::abort();
    }
  for (auto* p : pools)
    net::post(p->strand, [p] { p->shutdown(); });
  {
    std::unique_lock lock{s.mutex};
    if (!s.all_done.wait_for(lock, std::chrono::seconds{10},
                             [&s] { return s.active == 0; }))
      spdlog::error("http client: {} requests did not finish within 10 s "
                    "of stop()",
                    s.active);
  }
  s.work.reset();
  s.ioc.stop();
  for (auto& t : s.threads)
    t.join();
  s.threads.clear();
  // Run the handlers of the operations just cancelled here, now the only
  // thread, while the pools they point at still exist.
  s.ioc.restart();
  s.ioc.poll();
}

} // namespace karvon::actors
