// The knowledge base behind the chat assistant: documents in uz, ru or en,
// split into passages when they are written. Every call goes to the
// database on the pool and answers through a callback; none blocks.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/errors.hpp"
#include "persistence/kb_store.hpp"

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

class retrieval_index;

using kb_document = persistence::kb_document_row;
using kb_document_query = persistence::kb_document_query;

/// The languages of the knowledge base and of answers.
bool is_kb_language(const std::string& code);

class knowledge_base {
public:
  /// `pool` (and `index`, when given: it is told of every change made
  /// here) must outlive this.
  explicit knowledge_base(persistence::db_pool& pool,
                          class kb_index* index = nullptr);

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
  class kb_index* index_;
};

/// The retrieval index of the knowledge base, kept in step with the table:
/// it polls kb_state.version and rebuilds the index (on a database thread)
/// when it changed. Readers get the current index, never a half-built one.
class kb_index {
public:
  /// `pool` must outlive this. Holds an empty index until load().
  explicit kb_index(persistence::db_pool& pool);
  /// Stops polling.
  ~kb_index();

  kb_index(const kb_index&) = delete;
  kb_index& operator=(const kb_index&) = delete;

  /// Builds the index now; false when the database did not answer in time.
  /// Blocking: for start-up.
  bool load(std::chrono::milliseconds timeout);

  /// Polls every `interval` from now on.
  void start(std::chrono::milliseconds interval);

  /// Asks for a poll now.
  void refresh();

  /// Rebuilds now, on this database thread, if the version moved: a change
  /// made through this node is searchable here by the time it is
  /// acknowledged (other nodes follow within the poll interval).
  void reload(pqxx::connection_base& c);

  void stop();

  /// The index now. Any thread.
  std::shared_ptr<const retrieval_index> current() const;

  /// The version of the knowledge base the current index was built from.
  std::int64_t version() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace karvon::actors
