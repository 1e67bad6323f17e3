// POST /api/v1/partners and GET /api/v1/partners/{id}.
#include <cmath>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/partners.hpp"
#include "cluster/ask.hpp"
#include "gateway/api_routes.hpp"
#include "gateway/status.hpp"

namespace karvon::gateway {

namespace {

using nlohmann::json;

// How long an HTTP request waits for an entity before it answers 503.
constexpr std::chrono::seconds entity_timeout{10};

json to_json(const actors::partner& p) {
  json j = {{"id", p.id},
            {"name", p.name},
            {"max_concurrency", p.max_concurrency},
            {"created_at", p.created_at}};
  j["monthly_budget_usd"]
      = p.monthly_budget_usd ? json(*p.monthly_budget_usd) : json(nullptr);
  return j;
}

// Fills `out` from the body, or returns the 400 naming the first bad field.
std::optional<response> parse_partner(const json& body, actors::partner& out) {
  auto name = body.find("name");
  if (name == body.end() || !name->is_string())
    return invalid_field("name", "name is required and must be a string");
  out.name = name->get<std::string>();
  if (out.name.empty() || out.name.size() > 200)
    return invalid_field("name", "name must be 1 to 200 bytes");

  if (auto id = body.find("id"); id != body.end() && !id->is_null()) {
    if (!id->is_string() || !actors::valid_partner_id(id->get<std::string>()))
      return invalid_field("id", "id must match [a-z0-9][a-z0-9_-]{0,63}");
    out.id = id->get<std::string>();
  }
  if (auto b = body.find("monthly_budget_usd");
      b != body.end() && !b->is_null()) {
    if (!b->is_number() || !std::isfinite(b->get<double>())
        || b->get<double>() < 0 || b->get<double>() > 1e12)
      return invalid_field("monthly_budget_usd",
                           "monthly_budget_usd must be a number from 0");
    out.monthly_budget_usd = b->get<double>();
  }
  if (auto c = body.find("max_concurrency"); c != body.end() && !c->is_null()) {
    if (!c->is_number_integer() || c->get<std::int64_t>() < 1
        || c->get<std::int64_t>() > 1000)
      return invalid_field("max_concurrency",
                           "max_concurrency must be an integer from 1 to 1000");
    out.max_concurrency = static_cast<int>(c->get<std::int64_t>());
  }
  return std::nullopt;
}

} // namespace

void add_api_routes(router& r, api_dependencies deps) {
  if (deps.kb)
    add_kb_routes(r, *deps.kb);
  if (deps.chat && deps.router)
    add_chat_routes(r, *deps.router, *deps.chat, deps.chat_anonymous,
                    deps.chat_deadline);
  if (auto* partners = deps.partners) {
    r.add({"POST", "/api/v1/partners", access::only({}), true, true,
           [partners](const request& req, responder done) {
             actors::partner p;
             if (auto bad = parse_partner(*req.json, p))
               return done(std::move(*bad));
             partners->create(
                 std::move(p), [done](actors::result<actors::partner> res) {
                   if (auto f = std::get_if<actors::failure>(&res))
                     return done(failure_response(*f));
                   done(json_response(
                       201, to_json(std::get<actors::partner>(res)).dump()));
                 });
           },
           /*idempotent=*/true});
  }
  if (deps.router) {
    access own_partner = access::only({actors::role::partner});
    own_partner.partner_param = "id";
    auto* entities = deps.router;
    r.add({"GET", "/api/v1/partners/{id}", own_partner, false, true,
           [entities](const request& req, responder done) {
             auto id = req.param("id");
             // A malformed id names no partner: no entity is woken for it.
             if (!actors::valid_partner_id(id))
               return done(error_response(404, "not_found", "no such partner"));
             cluster::ask<actors::partner>(
                 *entities, "partner/" + id,
                 caf::make_message(caf::get_atom::value), entity_timeout,
                 [done](caf::expected<actors::partner> res) {
                   if (!res)
                     return done(
                         failure_response(actors::to_failure(res.error())));
                   done(json_response(200, to_json(*res).dump()));
                 });
           }});
  }
}

} // namespace karvon::gateway
