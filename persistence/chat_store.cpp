#include "persistence/chat_store.hpp"

#include <algorithm>
#include <cstdio>

#include <pqxx/pqxx>

namespace karvon::persistence {

std::optional<std::vector<chat_turn_view>>
list_chat_turns(pqxx::connection_base& c, const std::string& session_id,
                const std::string& owner_prefix, std::int64_t before,
                int limit) {
  pqxx::nontransaction tx{c};
  auto owner = tx.exec_params(
      "SELECT owner FROM chat_turns WHERE session_id = $1 LIMIT 1", session_id);
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

std::pair<int, std::int64_t> delete_old_chat_sessions(pqxx::connection_base& c,
                                                      int days, int batch,
                                                      std::int64_t cursor) {
  pqxx::work tx{c};
  // The next old turns, each naming a session that may be old; the cursor
  // moves past them whether or not their session goes, so a session still
  // in use is looked at once per run, not forever.
  auto walked = tx.exec_params(
      "SELECT max(id), count(*) FROM (SELECT id FROM chat_turns WHERE id > $1 "
      "AND created_at < now() - make_interval(days => $2) ORDER BY id LIMIT "
      "$3) t",
      cursor, days, batch);
  if (walked[0][1].as<std::int64_t>() == 0)
    return {0, 0};
  auto next = walked[0][0].as<std::int64_t>();
  auto deleted = tx.exec_params(
      "WITH old AS (SELECT DISTINCT session_id FROM chat_turns WHERE id > $1 "
      "AND id <= $2 AND created_at < now() - make_interval(days => $3)), "
      "stale AS (SELECT o.session_id FROM old o WHERE NOT EXISTS (SELECT 1 "
      "FROM chat_turns n WHERE n.session_id = o.session_id AND n.created_at "
      ">= now() - make_interval(days => $3))), gone AS (DELETE FROM "
      "chat_turns t USING stale s WHERE t.session_id = s.session_id "
      "RETURNING t.session_id) SELECT count(DISTINCT session_id) FROM gone",
      cursor, next, days);
  tx.commit();
  return {deleted[0][0].as<int>(), next};
}

batch_writer_options chat_turn_writer_options(std::string conninfo) {
  batch_writer_options o;
  o.conninfo = std::move(conninfo);
  o.table = "chat_turns";
  o.columns = {"session_id",
               "turn_no",
               "owner",
               "question",
               "answer",
               "language",
               "source",
               "confidence",
               "latency_ms",
               "llm_ms",
               "cache_hit",
               "prompt_tokens",
               "completion_tokens",
               "model"};
  o.key_columns = {"session_id", "turn_no"};
  // A user waits for this commit: write at once when idle.
  o.write_when_idle = true;
  return o;
}

batch_row to_batch_row(const chat_turn_row& t) {
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return std::string{buf};
  };
  return {t.session_id,
          std::to_string(t.turn_no),
          t.owner,
          t.question,
          t.answer,
          t.language,
          t.source,
          num(t.confidence),
          num(t.latency_ms),
          num(t.llm_ms),
          std::string{t.cache_hit ? "t" : "f"},
          std::to_string(t.prompt_tokens),
          std::to_string(t.completion_tokens),
          t.model};
}

std::optional<chat_session_state>
load_chat_session(pqxx::connection_base& c, const std::string& session_id,
                  int recent) {
  pqxx::nontransaction tx{c};
  auto rows = tx.exec_params(
      "SELECT owner, turn_no, question, answer FROM chat_turns WHERE "
      "session_id = $1 ORDER BY turn_no DESC LIMIT $2",
      session_id, std::max(1, recent));
  if (rows.empty())
    return std::nullopt;
  chat_session_state s;
  s.owner = rows[0][0].as<std::string>();
  s.last_turn = rows[0][1].as<std::int32_t>();
  for (auto it = rows.rbegin(); it != rows.rend(); ++it)
    s.recent.emplace_back((*it)[2].as<std::string>(),
                          (*it)[3].as<std::string>());
  if (recent <= 0)
    s.recent.clear();
  return s;
}

} // namespace karvon::persistence
