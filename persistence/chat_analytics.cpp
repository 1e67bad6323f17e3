#include "persistence/chat_analytics.hpp"

#include <pqxx/pqxx>

namespace karvon::persistence {

namespace {

// $1 and $2 are the first and last day, both included. The bounds are
// constants for the planner, so every statement reads the range through
// chat_turns_created_idx and nothing outside it.
const std::string in_range
    = " created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'"
      " AND created_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC' ";

// $3 is chat_low_confidence_below.
const std::string is_gap = " confidence < $3 ";

const std::string normalized
    = " lower(btrim(regexp_replace(question, '\\s+', ' ', 'g'))) ";

const std::string iso_utc
    = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"; // as elsewhere in the store

// One row per day with asks, plus the whole range (grouping flag 1): the
// range's row is there even when the range is empty.
const std::string figures_sql
    = "SELECT GROUPING(day), to_char(day, 'YYYY-MM-DD'), count(*), "
      "count(*) FILTER (WHERE cache_hit), "
      "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
      "percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), "
      "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
      "count(*) FILTER (WHERE"
      + is_gap
      + ") FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, "
        "cache_hit, latency_ms, prompt_tokens, completion_tokens, "
        "confidence, source FROM chat_turns WHERE"
      + in_range
      + ") t GROUP BY GROUPING SETS ((day), ()) ORDER BY day NULLS FIRST";

// Counts by source and by language, per day and over the range, in one
// pass. GROUPING(day, source, language) tells the sets apart: 1 and 5 are
// by source (per day, range), 2 and 6 by language.
const std::string breakdown_sql
    = "SELECT GROUPING(day, source, language), to_char(day, 'YYYY-MM-DD'), "
      "coalesce(source, language), count(*) "
      "FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, source, "
      "language FROM chat_turns WHERE"
      + in_range
      + ") t GROUP BY GROUPING SETS ((day, source), (source), "
        "(day, language), (language))";

const std::string top_questions_sql
    = "SELECT q, mode() WITHIN GROUP (ORDER BY question), count(*), "
      "to_char(max(created_at) AT TIME ZONE 'UTC', "
      + iso_utc + ") FROM (SELECT" + normalized
      + "AS q, question, created_at FROM chat_turns WHERE" + in_range
      + ") t GROUP BY q ORDER BY count(*) DESC, max(created_at) DESC, q "
        "LIMIT $3";

const std::string gaps_sql
    = "SELECT q, mode() WITHIN GROUP (ORDER BY question), count(*), "
      "mode() WITHIN GROUP (ORDER BY language), avg(confidence), "
      "to_char(max(created_at) AT TIME ZONE 'UTC', "
      + iso_utc + ") FROM (SELECT" + normalized
      + "AS q, question, language, confidence, created_at FROM chat_turns "
        "WHERE"
      + in_range + "AND" + is_gap
      + ") t GROUP BY q ORDER BY count(*) DESC, max(created_at) DESC, q "
        "LIMIT $4";

chat_figures empty_figures() {
  chat_figures f;
  for (const char* s : {"cache", "kb", "llm", "fallback"})
    f.by_source[s] = 0;
  for (const char* l : {"uz", "ru", "en"})
    f.by_language[l] = 0;
  return f;
}

std::optional<double> optional_double(const pqxx::field& f) {
  if (f.is_null())
    return std::nullopt;
  return f.as<double>();
}

} // namespace

chat_analytics_report read_chat_analytics(pqxx::connection_base& c,
                                          const std::string& from,
                                          const std::string& to) {
  // One snapshot, so that the totals, the days and the lists agree.
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{c};
  // A range of heavy days sorts many rows on a connection the chat shares;
  // four statements of at most 10 s stay within the gateway's 60 s.
  tx.exec("SET LOCAL statement_timeout = 10000");

  chat_analytics_report out;
  out.from = from;
  out.to = to;
  out.totals = empty_figures();
  std::map<std::string, std::size_t> day_index;
  for (const auto& r :
       tx.exec_params(figures_sql, from, to, chat_low_confidence_below)) {
    chat_figures* f = &out.totals;
    if (r[0].as<int>() == 0) {
      day_index[r[1].as<std::string>()] = out.days.size();
      out.days.push_back({r[1].as<std::string>(), empty_figures()});
      f = &out.days.back().figures;
    }
    f->asks = r[2].as<std::int64_t>();
    f->cache_hits = r[3].as<std::int64_t>();
    f->p50_latency_ms = optional_double(r[4]);
    f->p95_latency_ms = optional_double(r[5]);
    f->prompt_tokens = r[6].as<std::int64_t>();
    f->completion_tokens = r[7].as<std::int64_t>();
    f->low_confidence = r[8].as<std::int64_t>();
  }

  for (const auto& r : tx.exec_params(breakdown_sql, from, to)) {
    auto set = r[0].as<int>();
    chat_figures* f = &out.totals;
    if ((set & 4) == 0) {
      auto it = day_index.find(r[1].as<std::string>());
      if (it == day_index.end())
        continue; // cannot happen in one snapshot; keep the days consistent
      f = &out.days[it->second].figures;
    }
    auto& counts = (set & 1) != 0 ? f->by_source : f->by_language;
    counts[r[2].as<std::string>()] = r[3].as<std::int64_t>();
  }

  for (const auto& r :
       tx.exec_params(top_questions_sql, from, to, chat_top_questions))
    out.top_questions.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                                 r[2].as<std::int64_t>(),
                                 r[3].as<std::string>()});

  for (const auto& r : tx.exec_params(gaps_sql, from, to,
                                      chat_low_confidence_below, chat_top_gaps))
    out.gaps.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                        r[2].as<std::int64_t>(), r[3].as<std::string>(),
                        r[4].as<double>(), r[5].as<std::string>()});
  tx.commit();
  return out;
}

} // namespace karvon::persistence
