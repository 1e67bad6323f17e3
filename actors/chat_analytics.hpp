// Chat analytics for operators (GET /api/v1/chat/analytics): per-day counts,
// latency percentiles, cache hit rate, the top questions and the questions
// the knowledge base answers badly, over a range of UTC days. The report is
// computed by the database on the pool; nothing here blocks.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "actors/errors.hpp"
#include "persistence/chat_analytics.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::actors {

using chat_analytics_report = persistence::chat_analytics_report;

/// A range of UTC days, both included: "YYYY-MM-DD".
struct analytics_range {
  std::string from;
  std::string to;
};

/// The UTC date of `t`, "YYYY-MM-DD".
std::string utc_date(std::chrono::system_clock::time_point t);

/// The range the query parameters `from` and `to` ask for (nullopt when
/// absent): `to` defaults to the UTC day of `now`, `from` to six days
/// before `to` (a week). invalid_input naming the parameter when a date is
/// not a real "YYYY-MM-DD", and naming "from" when from is after to or the
/// range is longer than persistence::chat_analytics_max_days days.
result<analytics_range>
analytics_range_of(const std::optional<std::string>& from,
                   const std::optional<std::string>& to,
                   std::chrono::system_clock::time_point now);

class chat_analytics {
public:
  /// `pool` must outlive this. At most `max_running` reports run at once
  /// (more are refused as overloaded): each holds one of the connections
  /// the chat writes its turns through, for up to seconds.
  explicit chat_analytics(persistence::db_pool& pool, int max_running = 2);

  /// The report for `range` (from analytics_range_of). `done` once, from a
  /// database thread, or at once on this thread when refused: invalid_input
  /// for a bad range, overloaded when too many reports run or the pool's
  /// queue is full, timeout when the database cut the report off,
  /// unavailable when the database is down. Any thread; never blocks.
  void report(analytics_range range,
              std::function<void(result<chat_analytics_report>)> done);

private:
  persistence::db_pool* pool_;
  int max_running_;
  /// Shared with the jobs in flight, which may finish after this is gone.
  std::shared_ptr<std::atomic<int>> running_;
};

} // namespace karvon::actors
