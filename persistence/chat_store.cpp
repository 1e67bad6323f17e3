#include "persistence/chat_store.hpp"

#include <algorithm>

#include <pqxx/pqxx>

namespace karvon::persistence {

std::optional<std::vector<chat_turn_view>>
list_chat_turns(pqxx::connection_base& c, const std::string& session_id,
                const std::string& owner_prefix, std::int64_t before,
                int limit) {
  pqxx::nontransaction tx{c};
  auto owner = tx.exec_params("SELECT owner FROM chat_sessions WHERE id = $1",
                              session_id);
  if (owner.empty()
      || owner[0][0].as<std::string>().rfind(owner_prefix, 0) != 0)
    return std::nullopt;
  std::vector<chat_turn_view> out;
  for (const auto& r : tx.exec_params(
           "SELECT id, question, answer, language, source, confidence, "
           "to_char(created_at AT TIME ZONE 'UTC', "
           "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM chat_turns "
           "WHERE session_id = $1 AND ($2 = 0 OR id < $2) "
           "ORDER BY id DESC LIMIT $3",
           session_id, before, limit))
    out.push_back({r[0].as<std::int64_t>(), r[1].as<std::string>(),
                   r[2].as<std::string>(), r[3].as<std::string>(),
                   r[4].as<std::string>(), r[5].as<double>(),
                   r[6].as<std::string>()});
  std::reverse(out.begin(), out.end());
  return out;
}

int delete_old_chat_sessions(pqxx::connection_base& c, int days, int batch) {
  pqxx::nontransaction tx{c};
  return static_cast<int>(
      tx.exec_params("DELETE FROM chat_sessions WHERE id IN (SELECT id FROM "
                     "chat_sessions WHERE last_at < now() - make_interval("
                     "days => $1) LIMIT $2)",
                     days, batch)
          .affected_rows());
}

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
