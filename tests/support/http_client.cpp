#include "http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace karvon::testing {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string http_reply::header(const std::string& name) const {
  for (auto& [k, v] : headers)
    if (beast::iequals(k, name))
      return v;
  return {};
}

struct http_connection::impl {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
};

http_connection::http_connection(std::uint16_t port)
    : impl_(std::make_unique<impl>()) {
  impl_->stream.connect(
      tcp::endpoint{net::ip::make_address("127.0.0.1"), port});
}

http_connection::~http_connection() {
  beast::error_code ec;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

void http_connection::send(const std::string& bytes) {
  beast::error_code ec;
  net::write(impl_->stream.socket(), net::buffer(bytes), ec);
}

http_reply http_connection::read(std::chrono::milliseconds timeout) {
  http_reply out;
  bhttp::response_parser<bhttp::string_body> parser;
  // A response to HEAD announces a body it does not send.
  parser.skip(last_was_head_);
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code ec;
  impl_->stream.expires_after(timeout);
  // The blocking read has no timeout of its own: run the async one.
  bhttp::async_read(impl_->stream, impl_->buffer, parser,
                    [&](beast::error_code e, std::size_t) { ec = e; });
  impl_->ioc.restart();
  impl_->ioc.run();
  if (ec) {
    out.error = ec.message();
    out.closed = true;
    return out;
  }
  auto& msg = parser.get();
  out.status = static_cast<int>(msg.result_int());
  for (auto& f : msg)
    out.headers.emplace_back(std::string{f.name_string()},
                             std::string{f.value()});
  out.body = msg.body();
  out.closed = !msg.keep_alive();
  return out;
}

http_reply http_connection::raw(const std::string& bytes,
                                std::chrono::milliseconds timeout) {
  last_was_head_ = bytes.rfind("HEAD ", 0) == 0;
  send(bytes);
  return read(timeout);
}

http_reply http_connection::request(const std::string& method,
                                    const std::string& target,
                                    const std::string& body, const headers& h,
                                    std::chrono::milliseconds timeout) {
  std::string text = method + " " + target + " HTTP/1.1\r\nHost: test\r\n";
  bool has_type = false;
  for (auto& [k, v] : h) {
    text += k + ": " + v + "\r\n";
    has_type |= beast::iequals(k, "content-type");
  }
  if (!body.empty() || method == "POST" || method == "PUT")
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  text += "\r\n" + body;
  return raw(text, timeout);
}

bool http_connection::closed_by_server(std::chrono::milliseconds within) {
  // Not the stream's own timeout: that closes our socket, and a test may
  // want to keep using it after "not closed yet".
  char byte;
  bool closed = false;
  auto& socket = impl_->stream.socket();
  net::steady_timer timer{impl_->ioc};
  timer.expires_after(within);
  timer.async_wait([&](beast::error_code e) {
    if (!e)
      socket.cancel();
  });
  socket.async_read_some(
      net::buffer(&byte, 1), [&](beast::error_code e, std::size_t) {
        closed = e == net::error::eof || e == net::error::connection_reset;
        timer.cancel();
      });
  impl_->ioc.restart();
  impl_->ioc.run();
  return closed;
}

http_reply http_request(std::uint16_t port, const std::string& method,
                        const std::string& target, const std::string& body,
                        const headers& h) {
  http_connection c{port};
  return c.request(method, target, body, h);
}

headers bearer(const std::string& key, bool json_body) {
  headers h{{"Authorization", "Bearer " + key}};
  if (json_body)
    h.emplace_back("Content-Type", "application/json");
  return h;
}

} // namespace karvon::testing
