// The chat assistant's user entity ("user/api:<client key id>:<user id>"):
// it answers a question and records the turn in its session.
//
// - Retrieval finds the knowledge base's best passages (retrieval.hpp).
// - Without an LLM the answer is the best passage (source "kb").
// - With one, the LLM service (llm.hpp) gets a prompt of the passages, the
//   session's last turns and the question, with the caller's deadline; the
//   answer is "llm", or "cache" when it was cached. When the model is down
//   or its queue holds the question past the deadline, the answer is the
//   best passage with a note ("fallback"). A full LLM queue is an error
//   (errc::overloaded: 503), not an answer.
// - The turn goes through the group-committed batch writer; the reply waits
//   for its commit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/entity.hpp"
#include "actors/errors.hpp"
#include "persistence/chat_store.hpp"

namespace karvon::persistence {
class db_pool;
class batch_writer;
} // namespace karvon::persistence

namespace karvon::metrics {
class registry;
}

namespace karvon::actors {

class kb_index;

/// (ask, chat_request) to a user entity: answered with a chat_reply.
using ask_atom = caf::atom_constant<caf::atom("kask")>;

struct chat_request {
  std::string question;
  std::string session_id; //!< empty: a new session
  std::string language;   //!< empty: detected from the question
  /// Set to stream an LLM answer: gets (llm_token_atom, stream_id, text).
  caf::actor stream_to;
  std::string stream_id;
};

struct chat_source {
  std::int64_t document_id = 0;
  std::string title;
  double score = 0;
};

struct chat_reply {
  std::string session_id;
  std::string answer;
  std::string language;
  std::string source; //!< "cache", "kb", "llm" or "fallback"
  double confidence = 0;
  std::vector<chat_source> sources; //!< best first
  double llm_ms = 0;                //!< the LLM's own part of the answer's time
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_request& x) {
  return f(caf::meta::type_name("karvon.chat_request"), x.question,
           x.session_id, x.language, x.stream_to, x.stream_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_source& x) {
  return f(caf::meta::type_name("karvon.chat_source"), x.document_id, x.title,
           x.score);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_reply& x) {
  return f(caf::meta::type_name("karvon.chat_reply"), x.session_id, x.answer,
           x.language, x.source, x.confidence, x.sources, x.llm_ms);
}

/// The user entity of an API client's end user.
std::string chat_user_key(std::int64_t client_key_id,
                          const std::string& user_id);

/// True for a user id of 1 to 128 of A-Z a-z 0-9 _ . : @ -.
bool valid_chat_user_id(const std::string& user_id);

/// True for a session id of 1 to 64 of A-Z a-z 0-9 _ -.
bool valid_session_id(const std::string& session_id);

/// What user entities answer with.
struct chat_services {
  const kb_index* index = nullptr;
  /// Writes the turns (chat_turn_writer_options).
  persistence::batch_writer* turns = nullptr;
  /// The LLM service (spawn_llm); unset: answers from the knowledge base.
  caf::actor llm;
  /// How long an ask may wait for the LLM before it falls back.
  std::chrono::milliseconds deadline{20000};
  /// Optional: karvon_chat_answer_seconds{source} and
  /// karvon_chat_overhead_seconds (an LLM answer's time less the LLM's).
  metrics::registry* metrics = nullptr;
};

/// The kind "user"; what `services` points to must outlive every entity.
entity_kind user_kind(chat_services services);

/// The turns of chat sessions, for GET /api/v1/chat/sessions/{id}/turns.
class chat_history {
public:
  /// `pool` must outlive this.
  explicit chat_history(persistence::db_pool& pool);

  /// The session's newest `limit` turns below id `before` (0: the newest),
  /// oldest first; not_found unless its owner starts with `owner_prefix`.
  void
  list(std::string session_id, std::string owner_prefix, std::int64_t before,
       int limit,
       std::function<void(result<std::vector<persistence::chat_turn_view>>)>
           done);

private:
  persistence::db_pool* pool_;
};

/// The owner prefix of every user of a client key ("user/api:12:").
std::string chat_owner_prefix(std::int64_t client_key_id);

/// Registers the chat's message types with the actor system.
void add_chat_message_types(caf::actor_system_config& cfg);

} // namespace karvon::actors
