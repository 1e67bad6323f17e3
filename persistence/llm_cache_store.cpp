#include "persistence/llm_cache_store.hpp"

#include <pqxx/pqxx>

namespace karvon::persistence {

std::optional<llm_cache_row> find_llm_answer(pqxx::connection_base& c,
                                             const std::string& key) {
  pqxx::nontransaction tx{c};
  auto r = tx.exec_params(
      "SELECT model, response, prompt_tokens, completion_tokens FROM "
      "llm_cache WHERE key = $1 AND expires_at > now()",
      key);
  if (r.empty())
    return std::nullopt;
  return llm_cache_row{key, r[0][0].as<std::string>(),
                       r[0][1].as<std::string>(), r[0][2].as<std::int64_t>(),
                       r[0][3].as<std::int64_t>()};
}

void store_llm_answer(pqxx::connection_base& c, const llm_cache_row& row,
                      std::chrono::seconds ttl) {
  pqxx::nontransaction tx{c};
  tx.exec_params(
      "INSERT INTO llm_cache (key, model, response, prompt_tokens, "
      "completion_tokens, expires_at) VALUES ($1, $2, $3, $4, $5, now() + "
      "make_interval(secs => $6)) ON CONFLICT (key) DO UPDATE SET model = "
      "EXCLUDED.model, response = EXCLUDED.response, prompt_tokens = "
      "EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens, "
      "created_at = now(), expires_at = EXCLUDED.expires_at",
      row.key, row.model, row.response, row.prompt_tokens,
      row.completion_tokens, static_cast<double>(ttl.count()));
}

int delete_expired_llm_answers(pqxx::connection_base& c, int batch) {
  pqxx::nontransaction tx{c};
  return static_cast<int>(
      tx.exec_params("DELETE FROM llm_cache WHERE key IN (SELECT key FROM "
                     "llm_cache WHERE expires_at <= now() LIMIT $1)",
                     batch)
          .affected_rows());
}

} // namespace karvon::persistence
