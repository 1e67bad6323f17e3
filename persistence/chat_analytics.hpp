// Chat analytics (GET /api/v1/chat/analytics): what was asked over a range of
// UTC days, read from chat_turns (migration 0010) with SQL aggregates.
// Blocking: call on a db_pool thread. Errors are libpqxx's exceptions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace karvon::persistence {

/// A turn shows a knowledge-base gap when its confidence (how well the best
/// passage matches the question, whatever answered it) is below this. The
/// source "fallback" is not a gap by itself: it means the LLM was too slow
/// or down, and the knowledge base may well have had the answer.
constexpr double chat_low_confidence_below = 0.3;
/// The longest range, in days, one request may read: a quarter. Longer
/// ranges sort too many rows on a shared pool connection.
constexpr int chat_analytics_max_days = 92;
constexpr int chat_top_questions = 10;
constexpr int chat_top_gaps = 20;

/// The figures of a set of turns (a day, or the whole range).
struct chat_figures {
  std::int64_t asks = 0;
  /// Turns by source: always has cache, kb, llm and fallback (0 when none),
  /// plus any other value found.
  std::map<std::string, std::int64_t> by_source;
  /// Turns by language: always has uz, ru and en, plus any other found.
  std::map<std::string, std::int64_t> by_language;
  std::int64_t cache_hits = 0;
  /// Continuous percentiles of latency_ms; nullopt when there are no asks.
  std::optional<double> p50_latency_ms;
  std::optional<double> p95_latency_ms;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t low_confidence = 0; //!< below chat_low_confidence_below

  /// cache_hits / asks; nullopt when there are no asks.
  std::optional<double> cache_hit_rate() const {
    if (asks == 0)
      return std::nullopt;
    return static_cast<double>(cache_hits) / static_cast<double>(asks);
  }
};

struct chat_day_figures {
  std::string date; //!< "YYYY-MM-DD", UTC
  chat_figures figures;
};

/// Questions are grouped by their normalized text: lower-cased, runs of
/// white space made one space, trimmed.
struct chat_question_count {
  std::string question;      //!< normalized
  std::string example;       //!< the most frequent exact spelling
  std::int64_t count = 0;    //!< asks in the range
  std::string last_asked_at; //!< ISO 8601 UTC
};

struct chat_gap {
  std::string question;      //!< normalized
  std::string example;       //!< the most frequent exact spelling
  std::int64_t count = 0;    //!< low-confidence asks in the range
  std::string language;      //!< the most frequent language of those
  double avg_confidence = 0; //!< over those asks
  std::string last_asked_at; //!< ISO 8601 UTC
};

struct chat_analytics_report {
  std::string from; //!< first day, "YYYY-MM-DD"
  std::string to;   //!< last day, included
  chat_figures totals;
  std::vector<chat_day_figures> days; //!< oldest first; days without asks
                                      //!< are absent
  std::vector<chat_question_count> top_questions; //!< most asked first
  std::vector<chat_gap> gaps;                     //!< most asked first
};

/// The analytics of the turns created on UTC days `from` to `to`, both
/// included ("YYYY-MM-DD"; the caller checked from <= to and at most
/// chat_analytics_max_days days). Reads only that range, through the
/// created_at index, in one read-only snapshot; each statement is cut off
/// after 10 s (SQLSTATE 57014).
chat_analytics_report read_chat_analytics(pqxx::connection_base& c,
                                          const std::string& from,
                                          const std::string& to);

} // namespace karvon::persistence
