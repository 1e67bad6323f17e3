#include "persistence/chat_store.hpp"

#include <pqxx/pqxx>

namespace karvon::persistence {

bool record_chat_turn(pqxx::transaction_base& tx, const chat_turn_row& t) {
  // The WHERE keeps another owner's session untouched: then no row.
  auto mine = tx.exec_params(
      "INSERT INTO chat_sessions (id, owner) VALUES ($1, $2) "
      "ON CONFLICT (id) DO UPDATE SET last_at = now() "
      "WHERE chat_sessions.owner = EXCLUDED.owner RETURNING id",
      t.session_id, t.owner);
  if (mine.empty())
    return false;
  tx.exec_params("INSERT INTO chat_turns (session_id, question, answer, "
                 "language, source, confidence) VALUES ($1, $2, $3, $4, $5, "
                 "$6)",
                 t.session_id, t.question, t.answer, t.language, t.source,
                 t.confidence);
  return true;
}

} // namespace karvon::persistence
