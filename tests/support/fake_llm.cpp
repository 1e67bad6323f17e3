#include "tests/support/fake_llm.hpp"

#include <deque>
#include <mutex>
#include <sstream>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace karvon::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

std::vector<std::string> tokens_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream words{text};
  std::string w;
  while (words >> w)
    out.push_back(out.empty() ? w : " " + w);
  return out;
}

std::size_t word_count(const std::string& text) {
  std::istringstream words{text};
  std::string w;
  std::size_t n = 0;
  while (words >> w)
    ++n;
  return n;
}

std::string chunk(const std::string& data) {
  std::ostringstream out;
  out << std::hex << data.size() << "\r\n" << data << "\r\n";
  return out.str();
}

} // namespace

struct fake_llm::impl {
  fake_llm_options options;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;

  mutable std::mutex mutex;
  std::size_t active = 0;
  std::size_t max_seen = 0;
  std::size_t refusals = 0;
  std::size_t started = 0;
  std::vector<std::string> prompts;
  std::deque<std::function<void()>> waiting; // generations not yet started

  struct session : std::enable_shared_from_this<session> {
    impl* owner; // outlives every session: they live in its io_context
    tcp::socket socket;
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    asio::steady_timer timer;
    std::vector<std::string> tokens;
    std::size_t next = 0;
    bool openai = false, stream = true;
    std::string model;
    std::size_t prompt_tokens = 0;

    session(impl* o, tcp::socket s)
        : owner(o), socket(std::move(s)), timer(socket.get_executor()) {}

    void read() {
      req = {};
      http::async_read(
          socket, buffer, req,
          [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec)
              self->handle();
          });
    }

    void write_raw(std::string data, std::function<void()> then) {
      auto buf = std::make_shared<std::string>(std::move(data));
      asio::async_write(
          socket, asio::buffer(*buf),
          [self = shared_from_this(), buf,
           then = std::move(then)](beast::error_code ec, std::size_t) {
            if (!ec && then)
              then();
          });
    }

    void respond(int status, const std::string& body, bool retry_after) {
      std::ostringstream out;
      out << "HTTP/1.1 " << status << " "
          << (status == 200   ? "OK"
              : status == 503 ? "Service Unavailable"
              : status == 429 ? "Too Many Requests"
                              : "Error")
          << "\r\nContent-Type: application/json\r\nContent-Length: "
          << body.size() << "\r\n";
      if (retry_after)
        out << "Retry-After: 1\r\n";
      out << "\r\n" << body;
      write_raw(out.str(), [self = shared_from_this()] { self->read(); });
    }

    void handle() {
      auto target = std::string{req.target()};
      openai = target == "/v1/chat/completions";
      // The model lists health checks read.
      if (req.method() == http::verb::get && target == "/api/tags")
        return respond(200, R"({"models":[{"name":"qwen2.5:7b-instruct"}]})",
                       false);
      if (req.method() == http::verb::get && target == "/v1/models")
        return respond(
            200, R"({"object":"list","data":[{"id":"qwen2.5:7b-instruct"}]})",
            false);
      if (req.method() != http::verb::post
          || (target != "/api/chat" && !openai))
        return respond(404, R"({"error":"not found"})", false);
      if (auto status = owner->options.fail_with; status != 0)
        return respond(status, R"({"error":"scripted failure"})",
                       status == 503 || status == 429);
      auto body = json::parse(req.body(), nullptr, false);
      if (!body.is_object() || !body.contains("messages"))
        return respond(400, R"({"error":"messages required"})", false);
      model = body.value("model", "");
      stream = body.value("stream", !openai); // Ollama streams by default
      auto messages = body["messages"].dump();
      std::string text;
      for (auto& m : body["messages"])
        text += m.value("content", "") + " ";
      prompt_tokens = word_count(text);
      auto self = shared_from_this();
      std::function<void()> start
          = [self, messages] { self->generate(messages); };
      {
        std::lock_guard lock{owner->mutex};
        if (owner->active < owner->options.num_parallel) {
          ++owner->active;
          owner->max_seen = std::max(owner->max_seen, owner->active);
        } else if (owner->waiting.size() < owner->options.max_queue) {
          owner->waiting.push_back(std::move(start));
          return;
        } else {
          ++owner->refusals;
          start = nullptr;
        }
      }
      if (!start)
        return respond(503,
                       R"({"error":"server busy, please try again.  maximum )"
                       R"(pending requests exceeded"})",
                       true);
      start();
    }

    void generate(const std::string& messages) {
      {
        std::lock_guard lock{owner->mutex};
        owner->prompts.push_back(messages);
        ++owner->started;
      }
      tokens = tokens_of(owner->options.answer(messages));
      next = 0;
      if (stream) {
        std::string head
            = std::string{"HTTP/1.1 200 OK\r\nContent-Type: "}
              + (openai ? "text/event-stream" : "application/x-ndjson")
              + "\r\nTransfer-Encoding: chunked\r\n\r\n";
        write_raw(head, [self = shared_from_this()] { self->tick(); });
      } else {
        tick();
      }
    }

    // One token per token_latency; then the end.
    void tick() {
      timer.expires_after(owner->options.token_latency);
      timer.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (ec)
          return;
        if (self->next < self->tokens.size()) {
          auto& tok = self->tokens[self->next++];
          if (!self->stream)
            return self->tick();
          self->write_raw(chunk(self->token_line(tok)),
                          [self] { self->tick(); });
        } else {
          self->finish();
        }
      });
    }

    std::string token_line(const std::string& tok) const {
      if (openai)
        return "data: "
               + json{{"id", "chatcmpl-fake"},
                      {"object", "chat.completion.chunk"},
                      {"model", model},
                      {"choices",
                       {{{"index", 0},
                         {"delta", {{"content", tok}}},
                         {"finish_reason", nullptr}}}}}
                     .dump()
               + "\n\n";
      return json{{"model", model},
                  {"message", {{"role", "assistant"}, {"content", tok}}},
                  {"done", false}}
                 .dump()
             + "\n";
    }

    std::string whole() const {
      std::string text;
      for (auto& t : tokens)
        text += t;
      return text;
    }

    void finish() {
      auto n = tokens.size();
      // The slot is free once the last token is generated, before the
      // client reads it: a client that sends its next request the moment
      // the answer ends must find it free, as with Ollama.
      release();
      auto done = [self = shared_from_this()] { self->read(); };
      if (!stream) {
        json j = openai
                     ? json{{"id", "chatcmpl-fake"},
                            {"object", "chat.completion"},
                            {"model", model},
                            {"choices",
                             {{{"index", 0},
                               {"message",
                                {{"role", "assistant"}, {"content", whole()}}},
                               {"finish_reason", "stop"}}}},
                            {"usage",
                             {{"prompt_tokens", prompt_tokens},
                              {"completion_tokens", n},
                              {"total_tokens", prompt_tokens + n}}}}
                     : json{{"model", model},
                            {"message",
                             {{"role", "assistant"}, {"content", whole()}}},
                            {"done", true},
                            {"done_reason", "stop"},
                            {"prompt_eval_count", prompt_tokens},
                            {"eval_count", n}};
        auto body = j.dump();
        std::string out = "HTTP/1.1 200 OK\r\nContent-Type: "
                          "application/json\r\nContent-Length: "
                          + std::to_string(body.size()) + "\r\n\r\n" + body;
        return write_raw(out, done);
      }
      std::string last;
      if (openai) {
        last = "data: "
               + json{{"id", "chatcmpl-fake"},
                      {"object", "chat.completion.chunk"},
                      {"model", model},
                      {"choices",
                       {{{"index", 0},
                         {"delta", json::object()},
                         {"finish_reason", "stop"}}}},
                      {"usage",
                       {{"prompt_tokens", prompt_tokens},
                        {"completion_tokens", n},
                        {"total_tokens", prompt_tokens + n}}}}
                     .dump()
               + "\n\ndata: [DONE]\n\n";
      } else {
        last = json{{"model", model},
                    {"message", {{"role", "assistant"}, {"content", ""}}},
                    {"done", true},
                    {"done_reason", "stop"},
                    {"prompt_eval_count", prompt_tokens},
                    {"eval_count", n}}
                   .dump()
               + "\n";
      }
      write_raw(chunk(last) + "0\r\n\r\n", done);
    }

    // The generation slot goes to the next waiting request.
    void release() {
      std::function<void()> next_start;
      {
        std::lock_guard lock{owner->mutex};
        if (!owner->waiting.empty()) {
          next_start = std::move(owner->waiting.front());
          owner->waiting.pop_front();
        } else {
          --owner->active;
        }
      }
      if (next_start)
        next_start();
    }
  };

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec)
        return;
      // As Ollama (Go) does: each token goes out at once, not after the
      // reader's delayed ACK.
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<session>(this, std::move(socket))->read();
      accept();
    });
  }
};

fake_llm::fake_llm(fake_llm_options options) : impl_(std::make_shared<impl>()) {
  impl_->options = std::move(options);
  tcp::endpoint where{asio::ip::make_address("127.0.0.1"), 0};
  impl_->acceptor.open(where.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(where);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  impl_->accept();
  impl_->thread = std::thread{[i = impl_.get()] { i->io.run(); }};
}

fake_llm::~fake_llm() {
  impl_->io.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

std::uint16_t fake_llm::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::string fake_llm::url() const {
  return "http://127.0.0.1:" + std::to_string(port());
}

std::size_t fake_llm::generations() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->started;
}

std::vector<std::string> fake_llm::prompts() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->prompts;
}

std::size_t fake_llm::max_concurrency() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->max_seen;
}

std::size_t fake_llm::busy_refusals() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->refusals;
}

void fake_llm::fail_with(int status) {
  asio::post(impl_->io,
             [i = impl_.get(), status] { i->options.fail_with = status; });
}

} // namespace karvon::testing
