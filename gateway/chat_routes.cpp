// POST /api/v1/chat/ask (client): a question to the asking user's entity.
#include <chrono>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/chat.hpp"
#include "actors/knowledge_base.hpp"
#include "actors/llm.hpp"
#include "actors/messages.hpp"
#include "cluster/ask.hpp"
#include "gateway/api_routes.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/status.hpp"
#include "gateway/websocket.hpp"

namespace karvon::gateway {

namespace {

using nlohmann::json;

constexpr std::size_t max_question_bytes = 4000;
// Beyond the chat's own deadline, for the turn's write and the way back.
constexpr std::chrono::seconds ask_margin{10};

using reply_fn = std::function<void(caf::expected<actors::chat_reply>)>;

// Asks the user entity. With `stream` (a WebSocket ask), a short-lived
// actor takes the LLM's pieces on the way and hands each to it.
void ask_entity(cluster::router& entities, std::string key,
                actors::chat_request ask, std::chrono::milliseconds timeout,
                std::function<void(std::string_view)> stream, reply_fn done) {
  if (!stream)
    return cluster::ask<actors::chat_reply>(
        entities, std::move(key),
        caf::make_message(actors::ask_atom::value, std::move(ask)), timeout,
        std::move(done));
  auto dest = entities.route_for(key);
  if (!dest)
    return done(actors::make_error(actors::errc::not_found,
                                   "no entity kind for " + key));
  entities.system().spawn(
      [](caf::event_based_actor* self, caf::actor dest, std::string key,
         actors::chat_request ask, std::chrono::milliseconds timeout,
         std::function<void(std::string_view)> stream,
         reply_fn done) -> caf::behavior {
        ask.stream_to = caf::actor_cast<caf::actor>(self);
        self->request(dest, timeout, actors::route_atom::value, key,
                      caf::make_message(actors::ask_atom::value, ask))
            .then(
                [self, done](actors::chat_reply& r) {
                  done(std::move(r));
                  self->quit();
                },
                [self, done](caf::error& err) {
                  done(std::move(err));
                  self->quit();
                });
        return {[stream](actors::llm_token_atom, const std::string&,
                         const std::string& text) { stream(text); }};
      },
      dest, std::move(key), std::move(ask), timeout, std::move(stream),
      std::move(done));
}

std::optional<std::string> text_field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string())
    return std::nullopt;
  return it->get<std::string>();
}

// Fills `out` from the body, or returns the 400 naming the first bad field.
std::optional<response> parse_ask(const json& body, std::string& user_id,
                                  actors::chat_request& out) {
  auto user = text_field(body, "user_id");
  if (!user || !actors::valid_chat_user_id(*user))
    return invalid_field("user_id", "user_id is required: 1 to 128 of "
                                    "A-Z a-z 0-9 _ . : @ -");
  auto question = text_field(body, "question");
  if (!question || question->find_first_not_of(" \t\r\n") == std::string::npos
      || question->size() > max_question_bytes)
    return invalid_field("question",
                         "question is required: 1 to 4000 bytes of text");
  if (auto s = body.find("session_id"); s != body.end() && !s->is_null()) {
    if (!s->is_string() || !actors::valid_session_id(s->get<std::string>()))
      return invalid_field("session_id", "session_id must be 1 to 64 of "
                                         "A-Z a-z 0-9 _ -");
    out.session_id = s->get<std::string>();
  }
  if (auto l = body.find("language"); l != body.end() && !l->is_null()) {
    if (!l->is_string() || !actors::is_kb_language(l->get<std::string>()))
      return invalid_field("language", "language must be one of uz, ru, en");
    out.language = l->get<std::string>();
  }
  user_id = std::move(*user);
  out.question = std::move(*question);
  return std::nullopt;
}

json to_json(const actors::chat_reply& r, double latency_ms) {
  json sources = json::array();
  for (auto& s : r.sources)
    sources.push_back({{"document_id", s.document_id},
                       {"title", s.title},
                       {"score", s.score}});
  return {{"session_id", r.session_id}, {"answer", r.answer},
          {"confidence", r.confidence}, {"source", r.source},
          {"language", r.language},     {"sources", std::move(sources)},
          {"latency_ms", latency_ms}};
}

} // namespace

void add_chat_routes(router& r, cluster::router& entities,
                     actors::chat_history& history, bool allow_anonymous,
                     std::chrono::milliseconds deadline) {
  auto* e = &entities;
  auto* h = &history;
  // Anonymous chat (chat.allow_anonymous): users are "user/anon:<id>",
  // limited per IP like every request without a key.
  auto who
      = allow_anonymous ? access::none() : access::only({actors::role::client});
  // The WebSocket's asks are this route's, with the same access.
  add_websocket_route(r, who);
  r.add(
      {"POST", "/api/v1/chat/ask", who, true, true,
       [e, timeout = deadline + ask_margin](const request& req,
                                            responder done) {
         auto started = std::chrono::steady_clock::now();
         std::string user_id;
         actors::chat_request ask;
         if (auto bad = parse_ask(*req.json, user_id, ask))
           return done(std::move(*bad));
         auto key = req.caller
                        ? actors::chat_user_key(req.caller->key_id, user_id)
                        : "user/anon:" + user_id;
         ask_entity(
             *e, key, std::move(ask), timeout, req.stream,
             [done, started](caf::expected<actors::chat_reply> res) {
               if (!res)
                 return done(failure_response(actors::to_failure(res.error())));
               auto ms = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - started)
                             .count();
               done(json_response(
                   200,
                   to_json(*res, std::round(ms * 1000) / 1000)
                       .dump(-1, ' ', false, json::error_handler_t::replace)));
             });
       }});
  r.add(
      {"GET", "/api/v1/chat/sessions/{session_id}/turns",
       access::only({actors::role::client}), false, true,
       [h](const request& req, responder done) {
         auto session = req.param("session_id");
         if (!actors::valid_session_id(session))
           return done(error_response(404, "not_found", "no such session"));
         std::optional<std::int64_t> before, limit;
         if (!positive_param(req, "before", before))
           return done(
               invalid_field("before", "before must be a positive turn id"));
         if (!positive_param(req, "limit", limit) || (limit && *limit > 200))
           return done(invalid_field("limit",
                                     "limit must be an integer from 1 to 200"));
         // A client reads only its own users' sessions; an admin any.
         std::string prefix
             = req.caller->who == actors::role::client
                   ? actors::chat_owner_prefix(req.caller->key_id)
                   : "";
         auto want = static_cast<int>(limit.value_or(50));
         h->list(
             session, prefix, before.value_or(0), want,
             [done, session, want](
                 actors::result<std::vector<persistence::chat_turn_view>> res) {
               if (auto f = std::get_if<actors::failure>(&res))
                 return done(failure_response(*f));
               auto& turns
                   = std::get<std::vector<persistence::chat_turn_view>>(res);
               json items = json::array();
               for (auto& t : turns)
                 items.push_back({{"id", t.id},
                                  {"question", t.question},
                                  {"answer", t.answer},
                                  {"language", t.language},
                                  {"source", t.source},
                                  {"confidence", t.confidence},
                                  {"created_at", t.created_at}});
               // Newest last; a full page may have older turns before it.
               json next = static_cast<int>(turns.size()) == want
                               ? json(turns.front().id)
                               : json(nullptr);
               done(json_response(
                   200,
                   json{{"session_id", session},
                        {"turns", std::move(items)},
                        {"next_before", std::move(next)}}
                       .dump(-1, ' ', false, json::error_handler_t::replace)));
             });
       }});
}

} // namespace karvon::gateway
