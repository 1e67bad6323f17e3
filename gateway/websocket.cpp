#include "gateway/websocket.hpp"

#include <atomic>
#include <charconv>
#include <deque>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/dispatcher.hpp"
#include "metrics/registry.hpp"

namespace karvon::gateway {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::ordered_json; // frames keep "type" and "id" first

namespace detail {

struct websocket_metrics {
  metrics::gauge* connections = nullptr;
  metrics::family<metrics::counter>* closed = nullptr;
};

std::shared_ptr<websocket_metrics>
register_websocket_metrics(metrics::registry& m) {
  auto out = std::make_shared<websocket_metrics>();
  out->connections
      = &m.gauges("karvon_ws_connections",
                  "WebSocket connections open and not closing.", {})
             .with({});
  out->closed
      = &m.counters("karvon_ws_closed_total",
                    "WebSocket connections closed, by reason.", {"reason"});
  return out;
}

} // namespace detail

namespace {

using clock_type = std::chrono::steady_clock;

// Asks one socket may have in flight: each holds handler work (an LLM
// request, perhaps), so one client cannot queue an unbounded amount of it.
constexpr std::size_t max_in_flight = 64;
// Frames queued for a client that reads slower than answers stream: past
// either bound it gets close 1013 and the queue is dropped, so a slow
// reader costs at most about this much memory.
constexpr std::size_t max_queued_bytes = std::size_t{1} << 20;
constexpr std::size_t max_queued_frames = 1024;
// No frame either way for this long (asks in flight count as activity):
// close 1000. Beast's own keep-alive pings find dead peers on the same
// period.
constexpr auto idle_timeout = std::chrono::minutes{5};
// Without a key on the upgrade, the first message must be auth, this soon.
constexpr auto auth_timeout = std::chrono::seconds{10};
// A close handshake (or the flush before it) that takes longer, because the
// peer does not read, ends with the TCP connection closed.
constexpr auto close_timeout = std::chrono::seconds{5};
// Ask ids are echoed in every frame of the answer: keep them short.
constexpr std::size_t max_id_bytes = 128;

std::string dump(const json& j) {
  // Handler text (LLM tokens cut anywhere) may not be valid UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_frame(const json& id, std::string_view code,
                        std::string_view message, json details = nullptr) {
  json error = {{"code", code}, {"message", message}};
  if (!details.is_null())
    error["details"] = std::move(details);
  return dump({{"type", "error"}, {"id", id}, {"error", std::move(error)}});
}

const std::string* find_header(const header_list& headers,
                               std::string_view lower_name) {
  for (auto& [name, value] : headers) {
    if (name.size() != lower_name.size())
      continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(name[i])) == lower_name[i];
    if (same)
      return &value;
  }
  return nullptr;
}

// The frame for the answer to ask `id`: 200 becomes "answer" with the body's
// fields, anything else "error" with the body's error object, and a
// Retry-After header "retry_after_s".
std::string answer_frame(const json& id, const response& r) {
  auto body = json::parse(r.body, nullptr, false);
  if (r.status >= 200 && r.status < 300) {
    if (!body.is_object())
      return error_frame(id, "internal_error", "the answer was not JSON");
    json out = {{"type", "answer"}, {"id", id}};
    for (auto& [name, value] : body.items())
      if (name != "type" && name != "id")
        out[name] = value;
    return dump(out);
  }
  json error;
  if (body.is_object() && body.contains("error") && body["error"].is_object())
    error = std::move(body["error"]);
  else
    error = {{"code", "internal_error"},
             {"message", "status " + std::to_string(r.status)}};
  json out = {{"type", "error"}, {"id", id}, {"error", std::move(error)}};
  if (auto* retry = find_header(r.headers, "retry-after")) {
    long seconds = 0;
    auto [end, ec] = std::from_chars(retry->data(),
                                     retry->data() + retry->size(), seconds);
    if (ec == std::errc{})
      out["retry_after_s"] = seconds;
  }
  return dump(out);
}

class ws_session final : public detail::websocket_connection,
                         public std::enable_shared_from_this<ws_session> {
public:
  ws_session(tcp::socket&& socket, detail::websocket_handoff h)
      : owner_(std::move(h.owner)), metrics_(std::move(h.metrics)),
        ws_(std::move(socket)), idle_timer_(ws_.get_executor()),
        auth_timer_(ws_.get_executor()), close_timer_(ws_.get_executor()),
        disp_(h.disp), ask_timeout_(h.ask_timeout),
        max_message_bytes_(h.max_message_bytes), upgrade_(std::move(h.upgrade)),
        authorization_(std::move(h.authorization)),
        needs_auth_(h.auth_message_required) {}

  ~ws_session() override {
    if (accepted_)
      count_close("error"); // no-op when a reason was counted already
  }

  void start() {
    net::post(ws_.get_executor(),
              [self = shared_from_this()] { self->accept(); });
  }

  void shutdown() override {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      if (self->accepted_)
        self->begin_close(websocket::close_code::going_away, "shutdown",
                          "the server is stopping");
    });
  }

  void force_close() override {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      self->count_close("shutdown");
      self->end();
    });
  }

private:
  using weak = std::weak_ptr<ws_session>;

  // Runs `f(session)` on the session's strand, from any thread, if the
  // session is still there then. Only weak references wait in the queue: a
  // socket that has gone drops late tokens and answers, and nothing queued
  // keeps a session (and through it the server) alive.
  template <class F>
  static void post_to(const weak& w, F f) {
    auto s = w.lock();
    if (!s)
      return;
    net::post(s->ws_.get_executor(), [w, f = std::move(f)]() mutable {
      if (auto s = w.lock())
        f(*s);
    });
  }

  void accept() {
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, upgrade_.target,
                                          11};
    for (auto& [name, value] : upgrade_.headers)
      req.insert(name, value);
    ws_.set_option(
        websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(
        websocket::stream_base::decorator([](websocket::response_type& res) {
          res.set(bhttp::field::server, "karvon");
        }));
    ws_.read_message_max(0); // read() keeps the limit
    ws_.text(true);
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      self->on_accept(ec);
    });
  }

  void on_accept(beast::error_code ec) {
    if (ec) {
      // Beast has answered a malformed upgrade with 400 already.
      spdlog::debug("ws upgrade failed ip={}: {}", upgrade_.client_ip,
                    ec.message());
      return end();
    }
    accepted_ = true;
    metrics_->connections->add(1);
    touch();
    arm_idle();
    if (stopping_)
      return begin_close(websocket::close_code::going_away, "shutdown",
                         "the server is stopping");
    if (needs_auth_) {
      auth_timer_.expires_after(auth_timeout);
      auth_timer_.async_wait([w = weak_from_this()](beast::error_code ec) {
        if (ec)
          return;
        if (auto s = w.lock(); s && s->needs_auth_ && !s->auth_checking_)
          s->refuse_auth(error_frame(nullptr, "unauthorized",
                                     "no auth message within 10 s"));
      });
    }
    read();
  }

  // Reads a message piece by piece, holding at most one byte over the
  // limit. Beast's own limit (read_message_max) is off: on hitting it Beast
  // 1.74 closes the socket with the rest of the message unread, so the
  // peer gets a reset instead of close 1009. Our close reads on to the
  // peer's close frame.
  void read() {
    if (closing_ || closed_)
      return;
    ws_.async_read_some(
        in_, max_message_bytes_ + 1 - in_.size(),
        [self = shared_from_this()](beast::error_code ec, std::size_t) {
          self->on_read(ec);
        });
  }

  void on_read(beast::error_code ec) {
    if (ec)
      return on_read_error(ec);
    touch();
    if (in_.size() > max_message_bytes_) {
      in_.consume(in_.size());
      return begin_close(websocket::close_code::too_big, "too_big",
                         "a message is over the size limit");
    }
    if (!ws_.is_message_done())
      return read();
    std::string text = beast::buffers_to_string(in_.data());
    in_.consume(in_.size());
    bool binary = !ws_.got_text();
    if (closing_)
      return; // Beast's close reads on until the peer's close frame
    auto frame = binary ? json{} : json::parse(text, nullptr, false);
    if (needs_auth_ && !auth_message(frame))
      return refuse_auth(error_frame(
          frame.is_object() ? frame.value("id", json{}) : json{},
          "unauthorized",
          "the first message must be {\"type\":\"auth\",\"api_key\":...}"));
    if (binary) {
      send(error_frame(nullptr, "bad_request", "frames must be JSON text"));
      return read();
    }
    if (!frame.is_object()) {
      send(
          error_frame(nullptr, "bad_request", "a frame must be a JSON object"));
      return read();
    }
    auto type = frame.find("type");
    if (type == frame.end() || !type->is_string()) {
      send(error_frame(frame.value("id", json{}), "bad_request",
                       "a frame needs a string \"type\"", {{"field", "type"}}));
      return read();
    }
    auto kind = type->get<std::string>();
    if (kind == "auth" && authorization_.empty())
      return on_auth(frame); // reads on once the key is checked
    if (kind == "ask")
      on_ask(std::move(frame));
    else if (kind == "ping")
      on_ping(frame);
    else if (kind == "subscribe")
      send(error_frame(frame.value("id", json{}), "unknown_topic",
                       "task updates are not available yet",
                       {{"topic", frame.value("topic", json{})}}));
    else if (kind == "auth")
      send(error_frame(frame.value("id", json{}), "bad_request",
                       "this socket is authenticated already"));
    else
      send(error_frame(frame.value("id", json{}), "bad_request",
                       "unknown message type \"" + kind + "\"",
                       {{"type", kind}}));
    read();
  }

  static bool auth_message(const json& frame) {
    auto type = frame.is_object() ? frame.find("type") : frame.end();
    return type != frame.end() && *type == "auth";
  }

  void on_read_error(beast::error_code ec) {
    if (ec == websocket::error::closed)
      count_close("normal"); // the peer's close, or its reply to ours
    else if (ec == beast::error::timeout)
      count_close("idle"); // a peer that answers no keep-alive ping
    else
      count_close("error");
    end();
  }

  // The key comes in the first message: checked exactly as the upgrade's
  // header would be, by the dispatcher, through GET /api/v1/ws.
  void on_auth(const json& frame) {
    auto key = frame.find("api_key");
    if (key == frame.end() || !key->is_string() || key->empty())
      return refuse_auth(error_frame(frame.value("id", json{}), "unauthorized",
                                     "the auth message needs an \"api_key\" "
                                     "string"));
    auth_checking_ = true;
    auth_timer_.cancel();
    std::string bearer = "Bearer " + key->get<std::string>();
    request check;
    check.method = "GET";
    check.target = check.path = std::string{websocket_path};
    check.headers = {{"authorization", bearer},
                     {std::string{websocket_check_header}, "1"}};
    check.client_ip = upgrade_.client_ip;
    // No read is pending until the answer, so this reference keeps the
    // session alive meanwhile. The check never waits on anything (keys
    // are in memory, the route answers at once), so it comes back while
    // the server runs.
    disp_->dispatch(std::move(check), [self = shared_from_this(),
                                       bearer](response r) mutable {
      net::post(self->ws_.get_executor(),
                [self, bearer = std::move(bearer), r = std::move(r)] {
                  self->on_auth_checked(bearer, r);
                });
    });
  }

  void on_auth_checked(const std::string& bearer, const response& r) {
    auth_checking_ = false;
    if (closing_ || closed_)
      return;
    if (r.status < 200 || r.status >= 300)
      return refuse_auth(answer_frame(nullptr, r));
    authorization_ = bearer;
    needs_auth_ = false;
    read();
  }

  void refuse_auth(std::string frame) {
    send(std::move(frame));
    begin_close(websocket::close_code::policy_error, "unauthorized",
                "unauthorized");
  }

  void on_ping(const json& frame) {
    json pong = {{"type", "pong"}};
    if (auto id = frame.find("id"); id != frame.end())
      pong["id"] = *id;
    send(dump(pong));
  }

  struct ask_state {
    std::uint64_t seq = 0; // tells a reused id from the ask it replaced
    std::unique_ptr<net::steady_timer> deadline;
  };

  void on_ask(json frame) {
    auto id_it = frame.find("id");
    if (id_it == frame.end() || !id_it->is_string() || id_it->empty()
        || id_it->get_ref<const std::string&>().size() > max_id_bytes)
      return send(error_frame(nullptr, "invalid_field",
                              "an ask needs an \"id\": a string of 1 to 128 "
                              "bytes",
                              {{"field", "id"}}));
    auto id = id_it->get<std::string>();
    if (asks_.count(id))
      return send(error_frame(id, "invalid_field",
                              "an ask with this id is still in flight",
                              {{"field", "id"}}));
    if (asks_.size() >= max_in_flight)
      return send(error_frame(id, "too_many_in_flight",
                              "at most 64 asks may be in flight on one "
                              "socket; wait for an answer",
                              {{"limit", max_in_flight}}));
    frame.erase("type");
    frame.erase("id");

    auto seq = ++next_seq_;
    auto& a = asks_[id];
    a.seq = seq;
    // Like HTTP's handler deadline: an ask never answered does not hold its
    // slot (or keep the socket from idling) forever.
    a.deadline = std::make_unique<net::steady_timer>(ws_.get_executor());
    a.deadline->expires_after(ask_timeout_);
    a.deadline->async_wait(
        [w = weak_from_this(), id, seq](beast::error_code ec) {
          if (ec)
            return;
          if (auto s = w.lock())
            s->on_ask_timeout(id, seq);
        });

    request req;
    req.method = "POST";
    req.target = req.path = "/api/v1/chat/ask";
    req.headers.emplace_back("content-type", "application/json");
    if (!authorization_.empty())
      req.headers.emplace_back("authorization", authorization_);
    req.body = dump(frame);
    req.client_ip = upgrade_.client_ip;
    weak w = weak_from_this();
    req.stream = [w, id, seq](std::string_view piece) {
      auto s = w.lock();
      if (!s)
        return;
      // Tokens wait on the strand before they reach the queue: bound them
      // there too, so a handler that streams faster than the strand runs
      // cannot grow memory either.
      if (s->posted_bytes_.fetch_add(piece.size()) + piece.size()
          > max_queued_bytes) {
        s->posted_bytes_.fetch_sub(piece.size());
        if (!s->posted_overflow_.exchange(true))
          post_to(w, [](ws_session& s) { s.close_slow_reader(); });
        return;
      }
      net::post(s->ws_.get_executor(), [w, id, seq, text = std::string{piece}] {
        if (auto s = w.lock()) {
          s->posted_bytes_.fetch_sub(text.size());
          s->on_token(id, seq, text);
        }
      });
    };
    disp_->dispatch(std::move(req), [w, id, seq](response r) {
      post_to(w, [id, seq, r = std::move(r)](ws_session& s) {
        s.on_answer(id, seq, r);
      });
    });
  }

  bool current(const std::string& id, std::uint64_t seq) const {
    auto it = asks_.find(id);
    return it != asks_.end() && it->second.seq == seq;
  }

  void on_token(const std::string& id, std::uint64_t seq,
                const std::string& text) {
    if (current(id, seq))
      send(dump({{"type", "token"}, {"id", id}, {"text", text}}));
  }

  void on_answer(const std::string& id, std::uint64_t seq, const response& r) {
    if (!current(id, seq))
      return;
    asks_.erase(id);
    send(answer_frame(id, r));
  }

  void on_ask_timeout(const std::string& id, std::uint64_t seq) {
    if (!current(id, seq))
      return;
    asks_.erase(id);
    json frame = {{"type", "error"},
                  {"id", id},
                  {"error",
                   {{"code", "timeout"},
                    {"message", "the ask took too long; retry later"}}},
                  {"retry_after_s", 1}};
    send(dump(frame));
  }

  // Queues a frame. Nothing is queued once closing: the close frame is the
  // last one.
  void send(std::string frame) {
    if (closing_ || closed_)
      return;
    touch();
    out_bytes_ += frame.size();
    out_.push_back(std::move(frame));
    // A single frame always goes (an answer may be large); the bound is on
    // what waits behind it.
    if (out_.size() > 1
        && (out_bytes_ > max_queued_bytes || out_.size() > max_queued_frames)) {
      // Drop what the client has not taken; the frame being written stays
      // until its write completes.
      while (out_.size() > (writing_ ? 1u : 0u)) {
        out_bytes_ -= out_.back().size();
        out_.pop_back();
      }
      return close_slow_reader();
    }
    if (!writing_)
      write_next();
  }

  void close_slow_reader() {
    spdlog::debug("ws slow reader ip={}: closing 1013", upgrade_.client_ip);
    begin_close(websocket::close_code::try_again_later, "slow_reader",
                "the client reads too slowly");
  }

  void write_next() {
    if (closed_)
      return;
    if (out_.empty()) {
      if (close_pending_)
        close_now();
      return;
    }
    writing_ = true;
    ws_.async_write(
        net::buffer(out_.front()),
        [self = shared_from_this()](beast::error_code ec, std::size_t) {
          self->on_write(ec);
        });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    out_bytes_ -= out_.front().size();
    out_.pop_front();
    if (ec) {
      count_close("error");
      return end();
    }
    touch();
    write_next();
  }

  // Closes with `code` once the frames queued so far are written (the error
  // frame that explains a 1008, for instance).
  void begin_close(websocket::close_code code, const char* reason,
                   std::string_view text) {
    if (closing_ || closed_)
      return;
    closing_ = true;
    close_pending_ = true;
    close_reason_ = websocket::close_reason{code, text};
    count_close(reason);
    idle_timer_.cancel();
    auth_timer_.cancel();
    asks_.clear(); // their answers have nowhere to go
    close_timer_.expires_after(close_timeout);
    close_timer_.async_wait([w = weak_from_this()](beast::error_code ec) {
      if (ec)
        return;
      if (auto s = w.lock())
        s->end();
    });
    if (!writing_)
      write_next();
  }

  void close_now() {
    close_pending_ = false;
    ws_.async_close(close_reason_, [self = shared_from_this()](
                                       beast::error_code) { self->end(); });
  }

  // Counts how the connection ended, once: the first reason wins.
  void count_close(const char* reason) {
    if (counted_ || !accepted_)
      return;
    counted_ = true;
    metrics_->connections->add(-1);
    metrics_->closed->with({reason}).inc();
  }

  // The end: the TCP connection closes and every wait is cancelled, so the
  // handlers that hold this session return and let it go.
  void end() {
    if (closed_)
      return;
    closed_ = true;
    closing_ = true;
    idle_timer_.cancel();
    auth_timer_.cancel();
    close_timer_.cancel();
    asks_.clear();
    beast::error_code ignored;
    auto& socket = beast::get_lowest_layer(ws_).socket();
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

  void touch() { last_activity_ = clock_type::now(); }

  void arm_idle() {
    idle_timer_.expires_at(last_activity_ + idle_timeout);
    idle_timer_.async_wait([w = weak_from_this()](beast::error_code ec) {
      if (ec)
        return;
      if (auto s = w.lock())
        s->on_idle();
    });
  }

  void on_idle() {
    if (closing_)
      return;
    if (!asks_.empty())
      touch(); // an ask in flight is activity
    if (clock_type::now() - last_activity_ < idle_timeout)
      return arm_idle();
    begin_close(websocket::close_code::normal, "idle", "idle for 5 minutes");
  }

  // Declared first, destroyed last: the server (and its io_context) outlives
  // every member below.
  std::shared_ptr<void> owner_;
  std::shared_ptr<detail::websocket_metrics> metrics_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer in_;
  net::steady_timer idle_timer_;
  net::steady_timer auth_timer_;
  net::steady_timer close_timer_;
  dispatcher* disp_;
  std::chrono::milliseconds ask_timeout_;
  std::size_t max_message_bytes_;
  request upgrade_;
  std::string authorization_;
  bool needs_auth_;

  std::deque<std::string> out_;
  std::size_t out_bytes_ = 0;
  std::unordered_map<std::string, ask_state> asks_;
  std::uint64_t next_seq_ = 0;
  clock_type::time_point last_activity_ = clock_type::now();
  websocket::close_reason close_reason_;
  bool accepted_ = false;
  bool auth_checking_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool close_pending_ = false;
  bool closed_ = false;
  bool counted_ = false;
  bool stopping_ = false;
  // Token bytes posted to the strand and not yet queued (any thread).
  std::atomic<std::size_t> posted_bytes_{0};
  std::atomic<bool> posted_overflow_{false};
};

} // namespace

void add_websocket_route(router& r, access who) {
  r.add({"GET", std::string{websocket_path}, std::move(who), false, true,
         [](const request& req, responder done) {
           auto* check = req.header(websocket_check_header);
           if (check && *check == "1")
             return done(json_response(200, R"({"status":"ok"})"));
           auto res = error_response(
               426, "upgrade_required",
               "GET /api/v1/ws is a WebSocket: send an upgrade request "
               "(Connection: Upgrade, Upgrade: websocket)");
           res.headers.emplace_back("Upgrade", "websocket");
           done(std::move(res));
         }});
}

namespace detail {

std::shared_ptr<websocket_connection> start_websocket(net::io_context& ioc,
                                                      websocket_handoff h) {
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (::getsockname(h.fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    ::close(h.fd);
    return nullptr;
  }
  tcp::socket socket{net::make_strand(ioc)};
  beast::error_code ec;
  socket.assign(local.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), h.fd, ec);
  if (ec) {
    ::close(h.fd);
    return nullptr;
  }
  // Tokens are small frames written one after another: without this, Nagle
  // holds each until the last is acknowledged (40 ms with delayed ACKs).
  socket.set_option(tcp::no_delay(true), ec);
  auto s = std::make_shared<ws_session>(std::move(socket), std::move(h));
  s->start();
  return s;
}

} // namespace detail

} // namespace karvon::gateway
