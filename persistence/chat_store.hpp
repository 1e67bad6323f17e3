// SQL for chat sessions and turns (migration 0009). Blocking: call on a
// db_pool thread. Errors are libpqxx's exceptions.
#pragma once

#include <string>

namespace pqxx {
class transaction_base;
}

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

/// Inside `tx`: creates the session for `owner` if it is new (or touches
/// it), then records the turn. False, recording nothing, when the session
/// belongs to another owner.
bool record_chat_turn(pqxx::transaction_base& tx, const chat_turn_row& turn);

} // namespace karvon::persistence
