// GET /api/v1/chat/analytics?from=&to= (operator): the report of
// actors::chat_analytics as JSON. Dates are UTC days, both included.
#include "gateway/chat_analytics_routes.hpp"

#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "actors/chat_analytics.hpp"
#include "gateway/status.hpp"

namespace karvon::gateway {

namespace {

using nlohmann::json;

// Latencies to a tenth of a millisecond (latency_ms is a float4, so more
// digits would be noise); rates and confidences to three places.
double round_to(double x, double scale) {
  return std::round(x * scale) / scale;
}

json optional_number(const std::optional<double>& x, double scale) {
  return x ? json(round_to(*x, scale)) : json(nullptr);
}

json to_json(const persistence::chat_figures& f) {
  return {{"asks", f.asks},
          {"by_source", f.by_source},
          {"by_language", f.by_language},
          {"cache_hit_rate", optional_number(f.cache_hit_rate(), 1000)},
          {"latency_ms",
           {{"p50", optional_number(f.p50_latency_ms, 10)},
            {"p95", optional_number(f.p95_latency_ms, 10)}}},
          {"tokens",
           {{"prompt", f.prompt_tokens}, {"completion", f.completion_tokens}}},
          {"low_confidence", f.low_confidence}};
}

json to_json(const actors::chat_analytics_report& r) {
  json days = json::array();
  for (auto& d : r.days) {
    auto j = to_json(d.figures);
    j["date"] = d.date;
    days.push_back(std::move(j));
  }
  json top = json::array();
  for (auto& q : r.top_questions)
    top.push_back({{"question", q.question},
                   {"example", q.example},
                   {"count", q.count},
                   {"last_asked_at", q.last_asked_at}});
  json gaps = json::array();
  for (auto& g : r.gaps)
    gaps.push_back({{"question", g.question},
                    {"example", g.example},
                    {"count", g.count},
                    {"language", g.language},
                    {"avg_confidence", round_to(g.avg_confidence, 1000)},
                    {"last_asked_at", g.last_asked_at}});
  return {{"from", r.from},
          {"to", r.to},
          {"totals", to_json(r.totals)},
          {"days", std::move(days)},
          {"top_questions", std::move(top)},
          {"gaps", std::move(gaps)}};
}

} // namespace

void add_chat_analytics_routes(router& r, actors::chat_analytics& analytics) {
  auto* a = &analytics;
  r.add(
      {"GET", "/api/v1/chat/analytics", access::only({actors::role::operator_}),
       false, true, [a](const request& req, responder done) {
         auto range
             = actors::analytics_range_of(req.query("from"), req.query("to"),
                                          std::chrono::system_clock::now());
         if (auto f = std::get_if<actors::failure>(&range))
           return done(failure_response(*f));
         a->report(
             std::get<actors::analytics_range>(std::move(range)),
             [done](actors::result<actors::chat_analytics_report> res) {
               if (auto f = std::get_if<actors::failure>(&res))
                 return done(failure_response(*f));
               done(json_response(
                   200,
                   to_json(std::get<actors::chat_analytics_report>(res))
                       .dump(-1, ' ', false, json::error_handler_t::replace)));
             });
       }});
}

} // namespace karvon::gateway
