#include "actors/llm_protocol.hpp"

#include <nlohmann/json.hpp>

namespace karvon::actors {

namespace {

using nlohmann::json;

std::optional<std::int64_t> int_at(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    return std::nullopt;
  return it->get<std::int64_t>();
}

std::string error_of(const json& j) {
  auto it = j.find("error");
  if (it == j.end() || it->is_null())
    return {};
  if (it->is_string())
    return it->get<std::string>();
  if (it->is_object() && it->contains("message")
      && (*it)["message"].is_string())
    return (*it)["message"].get<std::string>();
  return it->dump();
}

// An error reported in place of content ends the response.
bool reports_error(const json& j, llm_piece& p) {
  p.error = error_of(j);
  p.done = !p.error.empty();
  return p.done;
}

// Ollama: {"message":{"content":...},"done":...,"prompt_eval_count":..}
std::optional<llm_piece> read_ollama(const json& j) {
  if (!j.is_object())
    return std::nullopt;
  llm_piece p;
  if (reports_error(j, p))
    return p;
  auto m = j.find("message");
  if (m != j.end() && m->is_object()) {
    auto c = m->find("content");
    if (c != m->end() && c->is_string())
      p.text = c->get<std::string>();
  } else if (!j.contains("done")) {
    return std::nullopt;
  }
  p.done = j.value("done", false);
  if (p.done) {
    p.prompt_tokens = int_at(j, "prompt_eval_count");
    p.completion_tokens = int_at(j, "eval_count");
  }
  return p;
}

// OpenAI: {"choices":[{"delta"|"message":{"content":..},"finish_reason":..}],
// "usage":{...}}
std::optional<llm_piece> read_openai(const json& j, const char* part) {
  if (!j.is_object())
    return std::nullopt;
  llm_piece p;
  if (reports_error(j, p))
    return p;
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array())
    return std::nullopt;
  if (!choices->empty()) {
    auto& c = (*choices)[0];
    if (auto d = c.find(part); d != c.end() && d->is_object()) {
      auto t = d->find("content");
      if (t != d->end() && t->is_string())
        p.text = t->get<std::string>();
    }
    if (auto f = c.find("finish_reason"); f != c.end() && f->is_string())
      p.done = true;
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    p.prompt_tokens = int_at(*u, "prompt_tokens");
    p.completion_tokens = int_at(*u, "completion_tokens");
  }
  return p;
}

} // namespace

std::optional<llm_provider> parse_llm_provider(std::string_view name) {
  if (name == "ollama")
    return llm_provider::ollama;
  if (name == "openai")
    return llm_provider::openai;
  return std::nullopt;
}

const char* llm_path(llm_provider p) {
  return p == llm_provider::ollama ? "/api/chat" : "/v1/chat/completions";
}

std::string llm_request_body(llm_provider p, const llm_call& call) {
  json messages = json::array();
  for (auto& m : call.messages)
    messages.push_back({{"role", m.role}, {"content", m.content}});
  json body = {{"model", call.model},
               {"messages", std::move(messages)},
               {"stream", call.stream}};
  // OpenAI sends the token counts of a stream only when asked.
  if (p == llm_provider::openai && call.stream)
    body["stream_options"] = {{"include_usage", true}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<llm_piece> parse_llm_stream_piece(llm_provider p,
                                                std::string_view piece) {
  if (p == llm_provider::openai && piece == "[DONE]") {
    llm_piece end;
    end.done = true;
    return end;
  }
  auto j = json::parse(piece, nullptr, false);
  if (j.is_discarded())
    return std::nullopt;
  return p == llm_provider::ollama ? read_ollama(j) : read_openai(j, "delta");
}

std::optional<llm_piece> parse_llm_response(llm_provider p,
                                            std::string_view body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded())
    return std::nullopt;
  auto piece
      = p == llm_provider::ollama ? read_ollama(j) : read_openai(j, "message");
  if (piece)
    piece->done = true;
  return piece;
}

} // namespace karvon::actors
