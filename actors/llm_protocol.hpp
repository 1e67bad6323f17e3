// The two chat protocols the LLM sink speaks, as plain functions: Ollama's
// POST /api/chat (NDJSON when streamed) and the OpenAI-compatible POST
// /v1/chat/completions (server-sent events when streamed). Building the
// request and reading each streamed piece; no I/O here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace karvon::actors {

enum class llm_provider { ollama, openai };

/// "ollama" or "openai" (llm.provider); nullopt for anything else.
std::optional<llm_provider> parse_llm_provider(std::string_view name);

struct llm_message {
  std::string role; //!< "system", "user", "assistant"
  std::string content;
};

struct llm_call {
  std::string model;
  std::vector<llm_message> messages;
  bool stream = true;
};

/// The path on the server: "/api/chat" or "/v1/chat/completions".
const char* llm_path(llm_provider p);

/// The request body (JSON).
std::string llm_request_body(llm_provider p, const llm_call& call);

/// What one piece of a response says.
struct llm_piece {
  std::string text;  //!< content to append (may be empty)
  bool done = false; //!< the last piece
  std::optional<std::int64_t> prompt_tokens;
  std::optional<std::int64_t> completion_tokens;
  std::string error; //!< the server reported an error in the stream
};

/// One streamed piece: an NDJSON line (Ollama) or one event's data (OpenAI;
/// "[DONE]" is the end). nullopt when it is not what the protocol sends.
std::optional<llm_piece> parse_llm_stream_piece(llm_provider p,
                                                std::string_view piece);

/// A whole (not streamed) response body; nullopt when malformed.
std::optional<llm_piece> parse_llm_response(llm_provider p,
                                            std::string_view body);

} // namespace karvon::actors
