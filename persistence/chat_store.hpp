// SQL for chat sessions and turns (migration 0009). Blocking: call on a
// db_pool thread. Errors are libpqxx's exceptions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pqxx {
class connection_base;
class transaction_base;
} // namespace pqxx

namespace karvon::persistence {

struct chat_turn_row {
  std::string session_id;
  std::string owner; //!< the user entity's key
  std::string question;
  std::string answer;
  std::string language;
  std::string source;
  double confidence = 0;
};

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

/// Deletes, with their turns, up to `batch` sessions unused for `days`;
/// returns how many.
int delete_old_chat_sessions(pqxx::connection_base& c, int days, int batch);

/// Inside `tx`: creates the session for `owner` if it is new (or touches
/// it), then records the turn. False, recording nothing, when the session
/// belongs to another owner.
bool record_chat_turn(pqxx::transaction_base& tx, const chat_turn_row& turn);

} // namespace karvon::persistence
