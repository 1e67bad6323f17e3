#include "actors/knowledge_base.hpp"

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "actors/passages.hpp"
#include "actors/retrieval.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::actors {

namespace {

const failure busy{errc::overloaded, "the database is busy; retry later", {}};

} // namespace

bool is_kb_language(const std::string& code) {
  return code == "uz" || code == "ru" || code == "en";
}

knowledge_base::knowledge_base(persistence::db_pool& pool, kb_index* index)
    : pool_(&pool), index_(index) {}

void knowledge_base::create(kb_document doc,
                            std::function<void(result<kb_document>)> done) {
  auto out = std::make_shared<kb_document>(std::move(doc));
  if (!pool_->submit(
          [this, out](pqxx::connection_base& c) {
            *out = persistence::insert_kb_document(
                c, *out, split_passages(out->content));
            if (index_)
              index_->reload(c);
          },
          [out, done](std::optional<persistence::db_error> err) {
            if (err)
              return done(failure_of(*err));
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
              return done(failure_of(*err));
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
              return done(failure_of(*err));
            done(std::move(*out));
          }))
    done(busy);
}

void knowledge_base::remove(std::int64_t id,
                            std::function<void(result<bool>)> done) {
  auto deleted = std::make_shared<bool>(false);
  if (!pool_->submit(
          [this, deleted, id](pqxx::connection_base& c) {
            *deleted = persistence::delete_kb_document(c, id);
            if (*deleted && index_)
              index_->reload(c);
          },
          [deleted, done](std::optional<persistence::db_error> err) {
            if (err)
              return done(failure_of(*err));
            if (!*deleted)
              return done(failure{errc::not_found, "no such document", {}});
            done(true);
          }))
    done(busy);
}

} // namespace karvon::actors

namespace karvon::actors {

struct kb_index::impl {
  persistence::db_pool* pool = nullptr;
  mutable std::mutex mutex; // guards index and version
  std::shared_ptr<const retrieval_index> index
      = std::make_shared<retrieval_index>();
  std::int64_t version = -1;
  std::atomic<bool> in_flight{false};
  std::mutex run_mutex;
  std::condition_variable run_cv;
  bool stopping = false;
  bool poke = false;
  std::thread poller;

  // On a database thread: rebuilds when the version moved.
  void reload_if_changed(pqxx::connection_base& c) {
    auto now = persistence::kb_version(c);
    {
      std::lock_guard lock{mutex};
      if (now == version)
        return;
    }
    auto snap = persistence::read_kb_snapshot(c);
    auto next = std::make_shared<retrieval_index>();
    for (auto& p : snap.passages)
      next->add({p.document_id, p.ordinal, std::move(p.title),
                 std::move(p.language), std::move(p.text)});
    std::lock_guard lock{mutex};
    if (snap.version > version) {
      index = std::move(next);
      version = snap.version;
      spdlog::info("knowledge base: index rebuilt at version {} ({} "
                   "passages)",
                   version, index->size());
    }
  }

  void poll(const std::shared_ptr<impl>& self) {
    if (in_flight.exchange(true))
      return; // one at a time: a slow database must not pile them up
    if (!pool->submit(
            [self](pqxx::connection_base& c) { self->reload_if_changed(c); },
            [self](std::optional<persistence::db_error> err) {
              self->in_flight.store(false);
              if (err)
                spdlog::warn("knowledge base: reloading the index: {}",
                             err->message);
            }))
      in_flight.store(false);
  }
};

kb_index::kb_index(persistence::db_pool& pool)
    : impl_(std::make_shared<impl>()) {
  impl_->pool = &pool;
}

kb_index::~kb_index() {
  stop();
}

bool kb_index::load(std::chrono::milliseconds timeout) {
  auto done = std::make_shared<std::promise<bool>>();
  auto self = impl_;
  if (!impl_->pool->submit(
          [self](pqxx::connection_base& c) { self->reload_if_changed(c); },
          [done](std::optional<persistence::db_error> err) {
            done->set_value(!err);
          }))
    return false;
  auto f = done->get_future();
  return f.wait_for(timeout) == std::future_status::ready && f.get();
}

void kb_index::start(std::chrono::milliseconds interval) {
  auto self = impl_;
  impl_->poller = std::thread([self, interval] {
    std::unique_lock lock{self->run_mutex};
    while (!self->stopping) {
      self->run_cv.wait_for(lock, interval,
                            [&] { return self->stopping || self->poke; });
      if (self->stopping)
        break;
      self->poke = false;
      lock.unlock();
      self->poll(self);
      lock.lock();
    }
  });
}

void kb_index::reload(pqxx::connection_base& c) {
  try {
    impl_->reload_if_changed(c);
  } catch (const std::exception& e) {
    // The write is done; the poller catches up within its interval.
    spdlog::warn("knowledge base: reloading the index: {}", e.what());
    refresh();
  }
}

void kb_index::refresh() {
  {
    std::lock_guard lock{impl_->run_mutex};
    impl_->poke = true;
  }
  impl_->run_cv.notify_all();
}

void kb_index::stop() {
  {
    std::lock_guard lock{impl_->run_mutex};
    impl_->stopping = true;
  }
  impl_->run_cv.notify_all();
  if (impl_->poller.joinable())
    impl_->poller.join();
}

std::shared_ptr<const retrieval_index> kb_index::current() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->index;
}

std::int64_t kb_index::version() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->version;
}

} // namespace karvon::actors
