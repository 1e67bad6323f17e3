#include "bench/load_client.hpp"

#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

namespace karvon::bench {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using clock_type = std::chrono::steady_clock;

namespace {

// Appends the bytes of one request of `o` with `body` to `out`.
void append_request(std::string& out, const load_options& o,
                    std::string_view body) {
  out += o.method;
  out += ' ';
  out += o.target;
  out += " HTTP/1.1\r\nHost: ";
  out += o.host;
  out += ':';
  out += std::to_string(o.port);
  out += "\r\nUser-Agent: karvon-bench\r\n";
  out += o.headers;
  if (!body.empty() || o.method != "GET") {
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n";
  }
  out += "\r\n";
  out += body;
}

class connection;

// What one client thread owns. Only that thread touches it while the run
// lasts, so counting needs no atomics; the workers are merged afterwards.
struct worker {
  worker(const load_options& o, std::uint64_t first_index, std::uint64_t step)
      : options(o), next_index(first_index), index_step(step) {}

  const load_options& options;
  // Request indexes for options.body: worker t of n takes t, t + n, ...,
  // so that every index is used once without a shared counter.
  std::uint64_t next_index;
  const std::uint64_t index_step;
  net::io_context ioc{1};
  net::steady_timer drain_timer{ioc};
  std::vector<std::shared_ptr<connection>> connections;
  std::size_t active = 0; // connections still sending or waiting
  clock_type::time_point end;
  load_result result;

  void fail(std::string what) {
    ++result.errors;
    if (result.first_error.empty())
      result.first_error = std::move(what);
  }

  // The last connection to finish lets the drain timer go, so that run()
  // returns as soon as every answer is in.
  void finished() {
    if (--active == 0)
      drain_timer.cancel();
  }
};

class connection : public std::enable_shared_from_this<connection> {
public:
  // `fixed_request`: the bytes of every request, unless options.body is
  // set; it outlives the run.
  connection(worker& w, const tcp::endpoint& endpoint,
             const std::string& fixed_request)
      : w_(w), endpoint_(endpoint), fixed_request_(fixed_request),
        socket_(w.ioc) {}

  // Runs on the calling thread before the window opens: connection set-up
  // is not part of what is measured.
  bool connect() {
    error_code ec;
    socket_.connect(endpoint_, ec);
    if (ec) {
      w_.fail("connect: " + ec.message());
      return false;
    }
    socket_.set_option(tcp::no_delay(true), ec);
    return true;
  }

  void start() { send(); }

  // The drain time is over: what is still in flight fails.
  void cut_off() {
    if (done_)
      return;
    error_code ec;
    socket_.close(ec);
  }

private:
  void send() {
    const std::string* request = &fixed_request_;
    if (w_.options.body) {
      // Built before the clock starts, into a buffer kept from the last
      // request so that it seldom allocates.
      own_request_.clear();
      append_request(own_request_, w_.options, w_.options.body(w_.next_index));
      w_.next_index += w_.index_step;
      request = &own_request_;
    }
    sent_ = clock_type::now();
    net::async_write(socket_, net::buffer(*request),
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       self->on_write(ec);
                     });
  }

  void on_write(error_code ec) {
    if (ec)
      return on_error("write", ec);
    parser_.emplace();
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(error_code ec) {
    if (ec)
      return on_error("read", ec);
    auto now = clock_type::now();
    auto& res = parser_->get();
    if (now <= w_.end) {
      auto& r = w_.result;
      if (res.result_int() != 200) {
        ++r.non_200;
        if (r.first_error.empty())
          r.first_error = "HTTP " + std::to_string(res.result_int()) + ": "
                          + res.body().substr(0, 200);
      } else if (w_.options.accept && !w_.options.accept(res.body())) {
        ++r.rejected;
        if (r.first_error.empty())
          r.first_error = "unexpected answer: " + res.body().substr(0, 200);
      } else {
        ++r.ok;
        r.latency.record(now - sent_);
        if (w_.options.keep_latencies)
          r.latencies.push_back(now - sent_);
      }
    }
    if (now >= w_.end)
      return finish();
    if (!res.keep_alive())
      return reconnect();
    send();
  }

  void on_error(const char* what, error_code ec) {
    w_.fail(std::string{what} + ": " + ec.message());
    // Before the end a broken connection is replaced, so that one error
    // does not lower the concurrency for the rest of the run.
    if (clock_type::now() < w_.end && socket_.is_open())
      return reconnect();
    finish();
  }

  void reconnect() {
    error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
    socket_.async_connect(
        endpoint_, [self = shared_from_this()](error_code ec) {
          if (ec) {
            self->w_.fail("connect: " + ec.message());
            return self->finish();
          }
          error_code ignored;
          self->socket_.set_option(tcp::no_delay(true), ignored);
          if (clock_type::now() >= self->w_.end)
            return self->finish();
          self->send();
        });
  }

  void finish() {
    if (done_)
      return;
    done_ = true;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    w_.finished();
  }

  worker& w_;
  tcp::endpoint endpoint_;
  const std::string& fixed_request_;
  std::string own_request_; // with options.body: the request in flight
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  clock_type::time_point sent_;
  bool done_ = false;
};

} // namespace

std::string request_bytes(const load_options& o, std::string_view body) {
  std::string out;
  append_request(out, o, body);
  return out;
}

double load_result::req_per_s() const {
  auto seconds = std::chrono::duration<double>(window).count();
  return seconds > 0 ? static_cast<double>(ok) / seconds : 0.0;
}

load_result run_load(const load_options& o) {
  load_result total;
  error_code ec;
  auto address = net::ip::make_address(o.host, ec);
  if (ec) {
    total.errors = 1;
    total.first_error = "address " + o.host + ": " + ec.message();
    return total;
  }
  tcp::endpoint endpoint{address, o.port};
  // Without a body per request, the same bytes for every request, built
  // once: the client's own cost per request stays a write and a parse.
  const std::string fixed_request = o.body ? std::string{} : request_bytes(o);

  auto threads = std::max(1, std::min(o.threads, o.connections));
  std::vector<std::unique_ptr<worker>> workers;
  for (int t = 0; t < threads; ++t)
    workers.push_back(std::make_unique<worker>(
        o, static_cast<std::uint64_t>(t), static_cast<std::uint64_t>(threads)));
  for (int c = 0; c < o.connections; ++c) {
    auto& w = *workers[static_cast<std::size_t>(c % threads)];
    auto conn = std::make_shared<connection>(w, endpoint, fixed_request);
    if (conn->connect())
      w.connections.push_back(std::move(conn));
  }

  auto start = clock_type::now();
  auto end = start + o.duration;
  for (auto& w : workers) {
    w->end = end;
    w->active = w->connections.size();
    if (w->active == 0)
      continue;
    for (auto& c : w->connections)
      net::post(w->ioc, [c] { c->start(); });
    w->drain_timer.expires_at(end + o.drain);
    w->drain_timer.async_wait([w = w.get()](error_code ec) {
      if (ec)
        return; // every connection finished in time
      for (auto& c : w->connections)
        c->cut_off();
    });
  }
  std::vector<std::thread> running;
  for (auto& w : workers)
    running.emplace_back([w = w.get()] { w->ioc.run(); });
  for (auto& t : running)
    t.join();

  total.window = end - start;
  for (auto& w : workers) {
    auto& r = w->result;
    total.ok += r.ok;
    total.non_200 += r.non_200;
    total.rejected += r.rejected;
    total.errors += r.errors;
    if (total.first_error.empty())
      total.first_error = r.first_error;
    total.latency.merge(r.latency);
    total.latencies.insert(total.latencies.end(), r.latencies.begin(),
                           r.latencies.end());
    // Connections hold a reference to their worker: drop them first.
    w->connections.clear();
  }
  return total;
}

} // namespace karvon::bench
