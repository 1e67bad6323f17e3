#include "persistence/kb_store.hpp"

#include <algorithm>
#include <limits>

#include <pqxx/pqxx>

namespace karvon::persistence {

namespace {

const char* const utc = R"sql(to_char(created_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))sql";

const std::string insert_sql
    = std::string{"INSERT INTO kb_documents (title, content, language, "
                  "category) VALUES ($1, $2, $3, $4) RETURNING id, "}
      + utc;

const char* const insert_passage_sql
    = "INSERT INTO kb_passages (document_id, ordinal, text) "
      "VALUES ($1, $2, $3)";

const char* const bump_sql
    = "UPDATE kb_state SET version = version + 1 WHERE id = 1";

const std::string find_sql
    = std::string{"SELECT id, title, content, language, category, "} + utc
      + ", (SELECT count(*) FROM kb_passages p WHERE p.document_id = d.id) "
        "FROM kb_documents d WHERE id = $1";

const std::string list_sql
    = std::string{"SELECT id, title, '', language, category, "} + utc
      + ", (SELECT count(*) FROM kb_passages p WHERE p.document_id = d.id) "
        "FROM kb_documents d WHERE id < $1 AND ($2 = '' OR language = $2) "
        "AND ($3 = '' OR category = $3) ORDER BY id DESC LIMIT $4";

kb_document_row read_row(const pqxx::row& r) {
  kb_document_row d;
  d.id = r[0].as<std::int64_t>();
  d.title = r[1].as<std::string>();
  d.content = r[2].as<std::string>();
  d.language = r[3].as<std::string>();
  d.category = r[4].as<std::string>();
  d.created_at = r[5].as<std::string>();
  d.passages = r[6].as<int>();
  return d;
}

} // namespace

kb_document_row insert_kb_document(pqxx::connection_base& c,
                                   kb_document_row doc,
                                   const std::vector<std::string>& passages) {
  pqxx::work tx{c};
  auto r = tx.exec_params1(insert_sql, doc.title, doc.content, doc.language,
                           doc.category);
  doc.id = r[0].as<std::int64_t>();
  doc.created_at = r[1].as<std::string>();
  for (std::size_t i = 0; i < passages.size(); ++i)
    tx.exec_params(insert_passage_sql, doc.id, static_cast<int>(i),
                   passages[i]);
  tx.exec(bump_sql);
  tx.commit();
  doc.passages = static_cast<int>(passages.size());
  return doc;
}

std::optional<kb_document_row> find_kb_document(pqxx::connection_base& c,
                                                std::int64_t id) {
  pqxx::nontransaction tx{c};
  auto r = tx.exec_params(find_sql, id);
  if (r.empty())
    return std::nullopt;
  return read_row(r[0]);
}

std::vector<kb_document_row> list_kb_documents(pqxx::connection_base& c,
                                               const kb_document_query& q) {
  auto before = q.before.value_or(std::numeric_limits<std::int64_t>::max());
  pqxx::nontransaction tx{c};
  std::vector<kb_document_row> out;
  for (const auto& r : tx.exec_params(list_sql, before, q.language, q.category,
                                      std::clamp(q.limit, 1, 1000)))
    out.push_back(read_row(r));
  return out;
}

bool delete_kb_document(pqxx::connection_base& c, std::int64_t id) {
  pqxx::work tx{c};
  auto deleted = tx.exec_params("DELETE FROM kb_documents WHERE id = $1", id)
                     .affected_rows()
                 == 1;
  if (deleted)
    tx.exec(bump_sql);
  tx.commit();
  return deleted;
}

kb_snapshot read_kb_snapshot(pqxx::connection_base& c) {
  // REPEATABLE READ: the version and the passages of one moment.
  pqxx::transaction<pqxx::repeatable_read> tx{c};
  kb_snapshot s;
  s.version = tx.exec1("SELECT version FROM kb_state WHERE id = 1")[0]
                  .as<std::int64_t>();
  for (const auto& r :
       tx.exec("SELECT p.document_id, p.ordinal, d.title, d.language, p.text "
               "FROM kb_passages p JOIN kb_documents d ON d.id = "
               "p.document_id ORDER BY p.document_id, p.ordinal"))
    s.passages.push_back({r[0].as<std::int64_t>(), r[1].as<int>(),
                          r[2].as<std::string>(), r[3].as<std::string>(),
                          r[4].as<std::string>()});
  tx.commit();
  return s;
}

std::int64_t kb_version(pqxx::connection_base& c) {
  pqxx::nontransaction tx{c};
  return tx.exec1("SELECT version FROM kb_state WHERE id = 1")[0]
      .as<std::int64_t>();
}

} // namespace karvon::persistence
