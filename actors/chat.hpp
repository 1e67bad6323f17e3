// The chat assistant's user entity ("user/api:<client key id>:<user id>"):
// it answers a question from the knowledge base and records the turn in
// its session. Answering through the LLM sink comes next (issue 6); without
// an LLM the answer is the best passage (source "kb").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/entity.hpp"
#include "actors/errors.hpp"
#include "persistence/chat_store.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

class kb_index;

/// (ask, chat_request) to a user entity: answered with a chat_reply.
using ask_atom = caf::atom_constant<caf::atom("kask")>;

struct chat_request {
  std::string question;
  std::string session_id; //!< empty: a new session
  std::string language;   //!< empty: detected from the question
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
  std::string source; //!< "kb" (later also "cache", "llm", "fallback")
  double confidence = 0;
  std::vector<chat_source> sources; //!< best first
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_request& x) {
  return f(caf::meta::type_name("karvon.chat_request"), x.question,
           x.session_id, x.language);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_source& x) {
  return f(caf::meta::type_name("karvon.chat_source"), x.document_id, x.title,
           x.score);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_reply& x) {
  return f(caf::meta::type_name("karvon.chat_reply"), x.session_id, x.answer,
           x.language, x.source, x.confidence, x.sources);
}

/// The user entity of an API client's end user.
std::string chat_user_key(std::int64_t client_key_id,
                          const std::string& user_id);

/// True for a user id of 1 to 128 of A-Z a-z 0-9 _ . : @ -.
bool valid_chat_user_id(const std::string& user_id);

/// True for a session id of 1 to 64 of A-Z a-z 0-9 _ -.
bool valid_session_id(const std::string& session_id);

/// The kind "user"; `index` must outlive every entity.
entity_kind user_kind(const kb_index& index);

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
