// SQL for the knowledge base (migration 0008): documents, their passages,
// and the version every change bumps. Blocking: call on a db_pool thread.
// Errors are libpqxx's exceptions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

struct kb_document_row {
  std::int64_t id = 0; //!< set by the database
  std::string title;
  std::string content;
  std::string language; //!< "uz", "ru" or "en"
  std::string category;
  std::string created_at; //!< ISO 8601 UTC
  int passages = 0;
};

struct kb_document_query {
  /// Only ids below this (the next page of a newest-first listing).
  std::optional<std::int64_t> before;
  int limit = 50;       //!< 1 to 1000
  std::string language; //!< empty: any
  std::string category; //!< empty: any
};

/// Inserts the document with its passages (in order) and bumps the version,
/// in one transaction. Fills in id and created_at; returns the row.
kb_document_row insert_kb_document(pqxx::connection_base& c,
                                   kb_document_row doc,
                                   const std::vector<std::string>& passages);

/// The document with its content; nullopt when there is none.
std::optional<kb_document_row> find_kb_document(pqxx::connection_base& c,
                                                std::int64_t id);

/// Documents newest first, without their content (empty).
std::vector<kb_document_row> list_kb_documents(pqxx::connection_base& c,
                                               const kb_document_query& q);

/// Deletes the document and its passages and bumps the version; false when
/// there was none.
bool delete_kb_document(pqxx::connection_base& c, std::int64_t id);

/// The knowledge base's version: it grows with every change.
std::int64_t kb_version(pqxx::connection_base& c);

struct kb_passage_row {
  std::int64_t document_id = 0;
  int ordinal = 0;
  std::string title;    //!< the document's
  std::string language; //!< the document's
  std::string text;
};

struct kb_snapshot {
  std::int64_t version = 0;
  std::vector<kb_passage_row> passages; //!< by document, then ordinal
};

/// Every passage with its document's title and language, and the version
/// they are of, read in one snapshot.
kb_snapshot read_kb_snapshot(pqxx::connection_base& c);

} // namespace karvon::persistence
