#include "actors/knowledge_base.hpp"

#include <memory>
#include <optional>

#include "actors/passages.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::actors {

namespace {

failure from_db(const persistence::db_error& e) {
  using kind = persistence::db_error::kind;
  if (e.what == kind::overloaded)
    return {errc::overloaded, "the database is busy; retry later", {}};
  if (e.what == kind::unavailable || e.what == kind::in_doubt)
    return {errc::unavailable, "the database is unavailable", {}};
  return {errc::internal, "database error", {}};
}

const failure busy{errc::overloaded, "the database is busy; retry later", {}};

} // namespace

bool is_kb_language(const std::string& code) {
  return code == "uz" || code == "ru" || code == "en";
}

knowledge_base::knowledge_base(persistence::db_pool& pool) : pool_(&pool) {}

void knowledge_base::create(kb_document doc,
                            std::function<void(result<kb_document>)> done) {
  auto out = std::make_shared<kb_document>(std::move(doc));
  if (!pool_->submit(
          [out](pqxx::connection_base& c) {
            *out = persistence::insert_kb_document(
                c, *out, split_passages(out->content));
          },
          [out, done](std::optional<persistence::db_error> err) {
            if (err)
              return done(from_db(*err));
            done(std::move(*out));
          }))
    done(busy);
}

void knowledge_base::get(std::int64_t id,
                         std::function<void(result<kb_document>)> done) {
  auto out = std::make_shared<std::optional<kb_document>>();
  if (!pool_->submit(
          [out, id](pqxx::connection_base& c) {
            *out = persistence::find_kb_document(c, id);
          },
          [out, done](std::optional<persistence::db_error> err) {
            if (err)
              return done(from_db(*err));
            if (!*out)
              return done(failure{errc::not_found, "no such document", {}});
            done(std::move(**out));
          }))
    done(busy);
}

void knowledge_base::list(
    kb_document_query q,
    std::function<void(result<std::vector<kb_document>>)> done) {
  auto out = std::make_shared<std::vector<kb_document>>();
  if (!pool_->submit(
          [out, q](pqxx::connection_base& c) {
            *out = persistence::list_kb_documents(c, q);
          },
          [out, done](std::optional<persistence::db_error> err) {
            if (err)
              return done(from_db(*err));
            done(std::move(*out));
          }))
    done(busy);
}

void knowledge_base::remove(std::int64_t id,
                            std::function<void(result<bool>)> done) {
  auto deleted = std::make_shared<bool>(false);
  if (!pool_->submit(
          [deleted, id](pqxx::connection_base& c) {
            *deleted = persistence::delete_kb_document(c, id);
          },
          [deleted, done](std::optional<persistence::db_error> err) {
            if (err)
              return done(from_db(*err));
            if (!*deleted)
              return done(failure{errc::not_found, "no such document", {}});
            done(true);
          }))
    done(busy);
}

} // namespace karvon::actors
