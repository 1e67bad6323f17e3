// The knowledge base behind the chat assistant: documents in uz, ru or en,
// split into passages when they are written. Every call goes to the
// database on the pool and answers through a callback; none blocks.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "actors/errors.hpp"
#include "persistence/kb_store.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

using kb_document = persistence::kb_document_row;
using kb_document_query = persistence::kb_document_query;

/// The languages of the knowledge base and of answers.
bool is_kb_language(const std::string& code);

class knowledge_base {
public:
  /// `pool` must outlive this.
  explicit knowledge_base(persistence::db_pool& pool);

  /// Stores a document (title, content, language, category; already
  /// validated) with its passages; `done` gets it with its id.
  void create(kb_document doc, std::function<void(result<kb_document>)> done);

  /// The document with its content, or not_found.
  void get(std::int64_t id, std::function<void(result<kb_document>)> done);

  /// Documents newest first, without content.
  void list(kb_document_query q,
            std::function<void(result<std::vector<kb_document>>)> done);

  /// Deletes the document and its passages; not_found when there is none.
  void remove(std::int64_t id, std::function<void(result<bool>)> done);

private:
  persistence::db_pool* pool_;
};

} // namespace karvon::actors
