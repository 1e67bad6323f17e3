#include "actors/dead_letters.hpp"

#include <memory>
#include <optional>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/sink.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::actors {

dead_letter_service::dead_letter_service(persistence::db_pool& pool)
    : pool_(&pool) {}

void dead_letter_service::add_sink(const std::string& name, caf::actor sink) {
  sinks_[name] = std::move(sink);
}

void dead_letter_service::list(
    dead_letter_query q,
    std::function<void(result<std::vector<dead_letter>>)> done) {
  auto rows = std::make_shared<std::vector<dead_letter>>();
  bool queued = pool_->submit(
      [rows, q](pqxx::connection_base& c) {
        *rows = persistence::list_dead_letters(c, q);
      },
      [rows, done](std::optional<persistence::db_error> err) {
        if (err)
          return done(failure_of(*err));
        done(std::move(*rows));
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

void dead_letter_service::replay(
    std::int64_t id, std::function<void(result<dead_letter>)> done) {
  auto row = std::make_shared<std::optional<dead_letter>>();
  auto sinks = sinks_; // handles are cheap; the map is read-only by now
  bool queued = pool_->submit(
      [row, id, sinks](pqxx::connection_base& c) {
        *row = persistence::find_dead_letter(c, id);
        if (!*row)
          return;
        auto it = sinks.find((*row)->sink);
        if (it == sinks.end())
          return; // reported below; nothing is marked
        sink_job job;
        job.priority = static_cast<std::uint8_t>((*row)->priority);
        job.sub_key = (*row)->sub_key;
        job.window
            = window_limit{static_cast<std::uint32_t>((*row)->window_calls),
                           std::chrono::milliseconds{(*row)->window_ms}};
        job.kind = (*row)->kind;
        job.payload = (*row)->payload;
        // Marked first: a replay that is lost with this node is visible as
        // replayed (and can be replayed again); one never shown as pending
        // after it ran.
        persistence::mark_dead_letter_replayed(c, id);
        caf::anon_send(it->second, submit_atom::value, std::move(job));
        *row = persistence::find_dead_letter(c, id);
      },
      [row, id, sinks, done](std::optional<persistence::db_error> err) {
        if (err)
          return done(failure_of(*err));
        if (!*row)
          return done(failure{errc::not_found, "no such dead letter", {}});
        if (!sinks.count((*row)->sink))
          return done(failure{errc::conflict,
                              "its sink '" + (*row)->sink
                                  + "' does not run on this node",
                              {}});
        spdlog::info("replayed dead letter {} ({}) to sink {}", id,
                     (*row)->kind, (*row)->sink);
        done(std::move(**row));
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

} // namespace karvon::actors
