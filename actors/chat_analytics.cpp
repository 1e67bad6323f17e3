#include "actors/chat_analytics.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>

#include "persistence/db_pool.hpp"

namespace karvon::actors {

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil): C++17 has no calendar types.
std::int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = static_cast<int>(y - era * 400);
  const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// The inverse: "YYYY-MM-DD" of a day number.
std::string civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int doe = static_cast<int>(z - era * 146097);
  const int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int mp = (5 * doy + 2) / 153;
  const int d = doy - (153 * mp + 2) / 5 + 1;
  const int m = mp + (mp < 10 ? 3 : -9);
  const auto y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
  char buf[48]; // room for any int64 year, to keep -Wformat-truncation quiet
  std::snprintf(buf, sizeof buf, "%04lld-%02d-%02d", static_cast<long long>(y),
                m, d);
  return buf;
}

bool leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

// The day number of a real date written "YYYY-MM-DD" (years 0001 to 9999),
// nullopt for anything else: "2024-02-30", "2024-2-3", " 2024-02-03".
std::optional<std::int64_t> parse_date(const std::string& s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-')
    return std::nullopt;
  int parts[3] = {0, 0, 0};
  const std::size_t starts[3] = {0, 5, 8};
  const std::size_t lengths[3] = {4, 2, 2};
  for (int p = 0; p < 3; ++p)
    for (std::size_t i = starts[p]; i < starts[p] + lengths[p]; ++i) {
      if (s[i] < '0' || s[i] > '9')
        return std::nullopt;
      parts[p] = parts[p] * 10 + (s[i] - '0');
    }
  static const int month_days[12]
      = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  auto [y, m, d] = parts;
  if (y < 1 || m < 1 || m > 12 || d < 1)
    return std::nullopt;
  if (d > month_days[m - 1] + (m == 2 && leap(y) ? 1 : 0))
    return std::nullopt;
  return days_from_civil(y, m, d);
}

failure bad(const char* field, std::string message) {
  return {errc::invalid_input, std::move(message), field};
}

const std::string date_message = " must be a date, YYYY-MM-DD (UTC)";

// Both dates real, from <= to, at most chat_analytics_max_days days.
std::optional<failure> check_range(std::int64_t from, std::int64_t to) {
  if (from > to)
    return bad("from", "from must not be after to");
  if (to - from + 1 > persistence::chat_analytics_max_days)
    return bad("from",
               "the range may be at most "
                   + std::to_string(persistence::chat_analytics_max_days)
                   + " days");
  return std::nullopt;
}

} // namespace

std::string utc_date(std::chrono::system_clock::time_point t) {
  auto secs
      = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch())
            .count();
  // Floor division: a time before 1970 belongs to the day before.
  auto days = secs / 86400 - (secs % 86400 < 0 ? 1 : 0);
  return civil_from_days(days);
}

result<analytics_range>
analytics_range_of(const std::optional<std::string>& from,
                   const std::optional<std::string>& to,
                   std::chrono::system_clock::time_point now) {
  std::int64_t last = 0;
  if (to) {
    auto d = parse_date(*to);
    if (!d)
      return bad("to", "to" + date_message);
    last = *d;
  } else {
    last = *parse_date(utc_date(now));
  }
  std::int64_t first = last - 6;
  if (from) {
    auto d = parse_date(*from);
    if (!d)
      return bad("from", "from" + date_message);
    first = *d;
  }
  if (auto f = check_range(first, last))
    return *f;
  return analytics_range{civil_from_days(first), civil_from_days(last)};
}

chat_analytics::chat_analytics(persistence::db_pool& pool, int max_running)
    : pool_(&pool), max_running_(max_running),
      running_(std::make_shared<std::atomic<int>>(0)) {}

void chat_analytics::report(
    analytics_range range,
    std::function<void(result<chat_analytics_report>)> done) {
  auto first = parse_date(range.from);
  if (!first)
    return done(bad("from", "from" + date_message));
  auto last = parse_date(range.to);
  if (!last)
    return done(bad("to", "to" + date_message));
  if (auto f = check_range(*first, *last))
    return done(*f);
  if (running_->fetch_add(1) >= max_running_) {
    running_->fetch_sub(1);
    return done(failure{errc::overloaded,
                        "too many analytics reports are running; retry later",
                        {}});
  }
  auto out = std::make_shared<chat_analytics_report>();
  auto running = running_;
  bool queued = pool_->submit(
      [out, range](pqxx::connection_base& c) {
        *out = persistence::read_chat_analytics(c, range.from, range.to);
      },
      [out, running, done](std::optional<persistence::db_error> err) {
        running->fetch_sub(1);
        if (err && err->sqlstate == "57014") // statement_timeout
          return done(failure{errc::timeout,
                              "the report took too long; ask for fewer days",
                              {}});
        if (err)
          return done(failure_of(*err));
        done(std::move(*out));
      });
  if (!queued) {
    running_->fetch_sub(1);
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
  }
}

} // namespace karvon::actors
