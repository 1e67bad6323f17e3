// SQL for chat sessions and turns (migrations 0009, 0010). Blocking: call on a
// db_pool thread. Errors are libpqxx's exceptions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "persistence/batch_writer.hpp"

namespace pqxx {
class connection_base;
class transaction_base;
} // namespace pqxx

namespace karvon::persistence {

/// One turn as the batch writer stores it (migration 0010): its natural
/// key is (session_id, turn_no).
struct chat_turn_row {
  std::string session_id;
  std::int32_t turn_no = 1;
  std::string owner; //!< the user entity's key
  std::string question;
  std::string answer;
  std::string language;
  std::string source; //!< cache, kb, llm, fallback
  double confidence = 0;
  double latency_ms = 0; //!< the whole answer, in karvon
  double llm_ms = 0;     //!< the LLM's own part of it
  bool cache_hit = false;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::string model;
};

/// The batch writer's table, columns and natural key for chat turns.
batch_writer_options chat_turn_writer_options(std::string conninfo);

/// A turn as the batch writer's row, in chat_turn_writer_options' order.
batch_row to_batch_row(const chat_turn_row& t);

/// What a user entity needs of a session it has not seen yet.
struct chat_session_state {
  std::string owner;
  std::int32_t last_turn = 0;
  /// The newest turns' questions and answers, oldest first.
  std::vector<std::pair<std::string, std::string>> recent;
};

/// The session's owner, last turn number and newest `recent` turns;
/// nullopt when it has no turns.
std::optional<chat_session_state>
load_chat_session(pqxx::connection_base& c, const std::string& session_id,
                  int recent);

struct chat_turn_view {
  std::int64_t id = 0;
  std::string question;
  std::string answer;
  std::string language;
  std::string source;
  double confidence = 0;
  std::string created_at; //!< ISO 8601 UTC
};

/// The session's turns with ids below `before` (all when 0), the newest
/// `limit` of them, oldest first. nullopt when the session does not exist
/// or its owner does not start with `owner_prefix`.
std::optional<std::vector<chat_turn_view>>
list_chat_turns(pqxx::connection_base& c, const std::string& session_id,
                const std::string& owner_prefix, std::int64_t before,
                int limit);

/// Deletes the turns of up to `batch` sessions whose newest turn is older
/// than `days`, walking the old turns in order from after `cursor` (a turn
/// id; 0 from the start) so that sessions still in use are passed over.
/// Returns how many sessions it deleted and the cursor to go on from, 0
/// when it has walked every old turn.
std::pair<int, std::int64_t> delete_old_chat_sessions(pqxx::connection_base& c,
                                                      int days, int batch,
                                                      std::int64_t cursor);

} // namespace karvon::persistence
