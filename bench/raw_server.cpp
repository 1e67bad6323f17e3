#include "bench/raw_server.hpp"

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace karvon::bench {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

namespace {

// One keep-alive connection: read a request, answer, read the next.
class raw_session : public std::enable_shared_from_this<raw_session> {
public:
  explicit raw_session(tcp::socket&& socket) : stream_(std::move(socket)) {}

  void run() {
    // The socket sits on a strand: with several threads, its handlers
    // still run one at a time.
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this()] { self->read(); });
  }

private:
  void read() {
    req_ = {};
    // A real server would not wait forever for an idle client either.
    stream_.expires_after(std::chrono::seconds{30});
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(error_code ec) {
    if (ec == http::error::end_of_stream)
      return close();
    if (ec)
      return; // reset, timeout, or stop(): the socket closes with us
    res_ = {};
    res_.result(http::status::ok);
    res_.version(req_.version());
    res_.set(http::field::server, "raw-beast");
    res_.set(http::field::content_type, "application/json");
    res_.keep_alive(req_.keep_alive());
    res_.body() = R"({"status":"ok"})";
    res_.prepare_payload();
    http::async_write(stream_, res_,
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        self->on_write(ec);
                      });
  }

  void on_write(error_code ec) {
    if (ec)
      return;
    if (!res_.keep_alive())
      return close();
    read();
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

} // namespace

struct raw_http_server::impl {
  int threads;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> running;
  std::uint16_t bound_port = 0;

  explicit impl(int n)
      : threads(std::max(1, n)), ioc(threads), acceptor(net::make_strand(ioc)) {
  }

  // The accept loop runs until the acceptor is closed. The handler holds
  // `this`: stop() joins the threads before impl goes away, and the
  // io_context destroys what it never ran.
  void accept() {
    acceptor.async_accept(
        net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
          if (ec == net::error::operation_aborted)
            return;
          if (!ec)
            std::make_shared<raw_session>(std::move(socket))->run();
          accept();
        });
  }
};

raw_http_server::raw_http_server(int threads)
    : impl_(std::make_unique<impl>(threads)) {}

raw_http_server::~raw_http_server() {
  stop();
}

void raw_http_server::start() {
  auto& i = *impl_;
  tcp::endpoint endpoint{net::ip::make_address("127.0.0.1"), 0};
  i.acceptor.open(endpoint.protocol());
  i.acceptor.set_option(net::socket_base::reuse_address(true));
  i.acceptor.bind(endpoint);
  i.acceptor.listen(net::socket_base::max_listen_connections);
  i.bound_port = i.acceptor.local_endpoint().port();
  i.accept();
  for (int t = 0; t < i.threads; ++t)
    i.running.emplace_back([&i] { i.ioc.run(); });
}

std::uint16_t raw_http_server::port() const {
  return impl_->bound_port;
}

void raw_http_server::stop() {
  auto& i = *impl_;
  if (i.running.empty())
    return;
  i.ioc.stop();
  for (auto& t : i.running)
    t.join();
  i.running.clear();
  error_code ignored;
  i.acceptor.close(ignored);
}

} // namespace karvon::bench
