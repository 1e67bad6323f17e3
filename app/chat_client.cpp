#include "app/chat_client.hpp"

#include <iostream>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace karvon::app {

namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;

// "http://host:port" -> host, port; false when it is not that.
bool split_server(const std::string& server, std::string& host,
                  std::string& port) {
  std::string rest = server;
  for (const char* scheme : {"http://", "ws://"})
    if (rest.rfind(scheme, 0) == 0)
      rest = rest.substr(std::string{scheme}.size());
  while (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto colon = rest.rfind(':');
  host = colon == std::string::npos ? rest : rest.substr(0, colon);
  port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  return !host.empty() && rest.find('/') == std::string::npos && !port.empty();
}

} // namespace

int run_chat_client(const chat_client_options& o) {
  std::string host, port;
  if (!split_server(o.server, host, port)) {
    std::cerr << "karvon chat: --server must be http://HOST:PORT\n";
    return 1;
  }
  try {
    boost::asio::io_context io;
    tcp::resolver resolver{io};
    websocket::stream<tcp::socket> ws{io};
    boost::asio::connect(ws.next_layer(), resolver.resolve(host, port));
    ws.set_option(
        websocket::stream_base::decorator([&](websocket::request_type& req) {
          if (!o.key.empty())
            req.set(beast::http::field::authorization, "Bearer " + o.key);
        }));
    beast::error_code ec;
    ws.handshake(host + ":" + port, "/api/v1/ws", ec);
    if (ec) {
      std::cerr << "karvon chat: " << o.server << ": " << ec.message();
      if (ec == websocket::error::upgrade_declined)
        std::cerr << " (a missing or bad key, a key that is not a client's, "
                     "or a rate limit)";
      std::cerr << "\n";
      return 1;
    }
    json ask{{"type", "ask"},
             {"id", "1"},
             {"user_id", o.user_id},
             {"question", o.question}};
    if (!o.session_id.empty())
      ask["session_id"] = o.session_id;
    if (!o.language.empty())
      ask["language"] = o.language;
    ws.write(boost::asio::buffer(ask.dump()));
    beast::flat_buffer buffer;
    bool streamed = false;
    for (;;) {
      buffer.clear();
      ws.read(buffer);
      auto text = beast::buffers_to_string(buffer.data());
      if (o.json)
        std::cout << text << "\n" << std::flush;
      auto frame = json::parse(text, nullptr, false);
      auto type = frame.is_object() ? frame.value("type", "") : "";
      if (type == "token") {
        streamed = true;
        if (!o.json)
          std::cout << frame.value("text", "") << std::flush;
      } else if (type == "answer") {
        if (!o.json) {
          // An LLM answer has streamed already; the others come whole.
          if (!streamed)
            std::cout << frame.value("answer", "");
          std::cout << "\n\n[" << frame.value("source", "") << ", confidence "
                    << frame.value("confidence", 0.0) << ", session "
                    << frame.value("session_id", "") << ", "
                    << frame.value("latency_ms", 0.0) << " ms]\n";
        }
        ws.close(websocket::close_code::normal);
        return 0;
      } else if (type == "error") {
        std::cerr << "karvon chat: " << frame["error"].dump() << "\n";
        ws.close(websocket::close_code::normal);
        return 1;
      }
    }
  } catch (const beast::system_error& e) {
    std::cerr << "karvon chat: " << o.server << ": " << e.code().message()
              << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "karvon chat: " << e.what() << "\n";
    return 1;
  }
}

} // namespace karvon::app
