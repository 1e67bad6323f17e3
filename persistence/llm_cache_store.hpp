// SQL for the LLM's shared answer cache (migration 0011). Blocking: call on
// a db_pool thread. Errors are libpqxx's exceptions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

struct llm_cache_row {
  std::string key;
  std::string model;
  std::string response;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
};

/// The unexpired answer under `key`, if any.
std::optional<llm_cache_row> find_llm_answer(pqxx::connection_base& c,
                                             const std::string& key);

/// Stores (or replaces) the answer for `ttl` from now.
void store_llm_answer(pqxx::connection_base& c, const llm_cache_row& row,
                      std::chrono::seconds ttl);

/// Deletes up to `batch` expired answers; returns how many.
int delete_expired_llm_answers(pqxx::connection_base& c, int batch);

} // namespace karvon::persistence
