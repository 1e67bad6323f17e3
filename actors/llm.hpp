// The LLM service: one actor per node between every caller (user entities,
// later partner tasks) and the language model.
//
//   entity --(llm_ask_atom, llm_request)--> llm actor --> memory cache
//                                               |    --> in-flight calls
//                                               |        (coalescing)
//                                               |    --> PostgreSQL cache
//                                               v
//                                     sink "llm" (bounded queue, priority,
//                                     max_concurrency, retries) --> HTTP
//
// - Identical requests (same model, same messages) in flight at once make
//   one call; its answer goes to every waiter, and its streamed pieces to
//   every waiter that asked for them (a late joiner first gets what has
//   streamed so far).
// - Answers are cached in memory (bounded, least recently used first out)
//   and in PostgreSQL (table llm_cache), both for llm.cache_ttl_s.
// - The sink runs at most llm.max_concurrency calls, queues at most
//   llm.max_queue (interactive before background), retries a 503, 429 or a
//   lost connection with backoff, obeying Retry-After. A full queue answers
//   errc::overloaded at once.
// - A request has a deadline: one still queued when its deadline passes is
//   dropped before it reaches the model (errc::timeout).
// - After three calls in a row fail to reach the model, it counts as down
//   for five seconds: requests fail at once with errc::unavailable (the
//   caller falls back), then calls are let through again.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/llm_protocol.hpp"

namespace karvon::persistence {
class db_pool;
}
namespace karvon::metrics {
class registry;
}

namespace karvon::actors {

class http_client;

/// (llm_ask_atom, llm_request) -> llm_result, or an error: overloaded (the
/// queue is full), timeout (the deadline passed first), unavailable (the
/// model cannot be reached or refused the request).
using llm_ask_atom = caf::atom_constant<caf::atom("llmask")>;

/// (llm_token_atom, stream_id, text): a streamed piece, sent to a
/// request's stream_to as it arrives.
using llm_token_atom = caf::atom_constant<caf::atom("llmtoken")>;

/// Priority classes of llm_request::priority.
constexpr std::uint8_t llm_interactive = 0;
constexpr std::uint8_t llm_background = 1;

struct llm_request {
  std::string model; //!< empty: llm.model
  std::vector<llm_message> messages;
  std::uint8_t priority = llm_interactive;
  /// How long the caller will wait, from when the actor reads the request;
  /// zero: llm.timeout_ms.
  std::chrono::milliseconds budget{0};
  caf::actor stream_to; //!< may be unset: no pieces
  std::string stream_id;
};

struct llm_result {
  std::string text;
  std::string model;
  bool cached = false;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  /// The call's own time, from the request leaving to the last piece
  /// arriving; zero for a cached answer.
  double llm_ms = 0;
};

struct llm_options {
  llm_provider provider = llm_provider::ollama;
  std::string url; //!< base URL, "http://127.0.0.1:11434"
  std::string api_key;
  std::string model = "qwen2.5:7b-instruct";
  int max_concurrency = 4;
  int max_queue = 10000;
  std::chrono::milliseconds timeout{60000};
  /// Zero: no cache.
  std::chrono::seconds cache_ttl{86400};
  std::size_t cache_entries = 10000;
  /// Attempts per call, the first included.
  int max_attempts = 4;
};

/// Spawns the LLM actor and its sink. `client` must outlive the actor;
/// `pool` (may be null: no PostgreSQL cache) and `metrics` (may be null)
/// too. Stop it with anon_send_exit.
caf::actor spawn_llm(caf::actor_system& sys, llm_options options,
                     http_client& client, persistence::db_pool* pool,
                     metrics::registry* metrics);

/// The health check: asks the server for its models (GET /api/tags or
/// /v1/models) and calls `done` once, from any thread, with an empty string
/// when it answered 2xx, else why not.
void check_llm(http_client& client, const llm_options& options,
               std::chrono::milliseconds timeout,
               std::function<void(std::string error)> done);

/// The cache key of a request: a hash of the model and the messages.
std::string llm_cache_key(const std::string& model,
                          const std::vector<llm_message>& messages);

/// Registers the LLM's message types with the actor system.
void add_llm_message_types(caf::actor_system_config& cfg);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, llm_message& x) {
  return f(caf::meta::type_name("karvon.llm_message"), x.role, x.content);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, llm_request& x) {
  return f(caf::meta::type_name("karvon.llm_request"), x.model, x.messages,
           x.priority, x.budget, x.stream_to, x.stream_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, llm_result& x) {
  return f(caf::meta::type_name("karvon.llm_result"), x.text, x.model, x.cached,
           x.prompt_tokens, x.completion_tokens, x.llm_ms);
}

} // namespace karvon::actors
