// The knowledge base: POST, GET and DELETE /api/v1/kb/documents[/{id}]
// (admin).
#include <nlohmann/json.hpp>

#include "actors/knowledge_base.hpp"
#include "gateway/api_routes.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/status.hpp"

namespace karvon::gateway {

namespace {

using nlohmann::json;

constexpr std::size_t max_title_bytes = 300;
constexpr std::size_t max_category_bytes = 64;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json to_json(const actors::kb_document& d, bool with_content) {
  json j = {{"id", d.id},
            {"title", d.title},
            {"language", d.language},
            {"category", d.category},
            {"passages", d.passages},
            {"created_at", d.created_at}};
  if (with_content)
    j["content"] = d.content;
  return j;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

// Fills `out` from the body, or returns the 400 naming the first bad field.
std::optional<response> parse_document(const json& body,
                                       actors::kb_document& out) {
  auto text = [&](const char* name) -> std::optional<std::string> {
    auto it = body.find(name);
    if (it == body.end() || !it->is_string())
      return std::nullopt;
    return it->get<std::string>();
  };
  auto title = text("title");
  if (!title || blank(*title) || title->size() > max_title_bytes)
    return invalid_field("title", "title is required: 1 to 300 bytes of text");
  auto content = text("content");
  if (!content || blank(*content))
    return invalid_field("content", "content is required and must not be "
                                    "empty");
  auto language = text("language");
  if (!language || !actors::is_kb_language(*language))
    return invalid_field("language", "language must be one of uz, ru, en");
  std::string category = "general";
  if (auto c = body.find("category"); c != body.end() && !c->is_null()) {
    if (!c->is_string() || blank(c->get<std::string>())
        || c->get<std::string>().size() > max_category_bytes)
      return invalid_field("category",
                           "category must be 1 to 64 bytes of text");
    category = c->get<std::string>();
  }
  out.title = std::move(*title);
  out.content = std::move(*content);
  out.language = std::move(*language);
  out.category = std::move(category);
  return std::nullopt;
}

response not_found() {
  return error_response(404, "not_found", "no such document");
}

} // namespace

void add_kb_routes(router& r, actors::knowledge_base& kb) {
  auto* base = &kb;
  r.add({"POST", "/api/v1/kb/documents", access::only({}), true, true,
         [base](const request& req, responder done) {
           actors::kb_document doc;
           if (auto bad = parse_document(*req.json, doc))
             return done(std::move(*bad));
           base->create(
               std::move(doc), [done](actors::result<actors::kb_document> res) {
                 if (auto f = std::get_if<actors::failure>(&res))
                   return done(failure_response(*f));
                 done(json_response(
                     201,
                     dump(to_json(std::get<actors::kb_document>(res), true))));
               });
         },
         /*idempotent=*/true});
  r.add(
      {"GET", "/api/v1/kb/documents", access::only({}), false, true,
       [base](const request& req, responder done) {
         actors::kb_document_query q;
         std::optional<std::int64_t> before, limit;
         if (!positive_param(req, "before", before))
           return done(invalid_field("before", "before must be a positive id"));
         if (!positive_param(req, "limit", limit) || (limit && *limit > 1000))
           return done(invalid_field(
               "limit", "limit must be an integer from 1 to 1000"));
         q.before = before;
         q.limit = static_cast<int>(limit.value_or(50));
         q.language = req.query("language").value_or("");
         if (!q.language.empty() && !actors::is_kb_language(q.language))
           return done(
               invalid_field("language", "language must be one of uz, ru, en"));
         q.category = req.query("category").value_or("");
         base->list(
             q, [done, want = q.limit](
                    actors::result<std::vector<actors::kb_document>> res) {
               if (auto f = std::get_if<actors::failure>(&res))
                 return done(failure_response(*f));
               auto& rows = std::get<std::vector<actors::kb_document>>(res);
               json items = json::array();
               for (auto& d : rows)
                 items.push_back(to_json(d, false));
               // A full page may have more behind it: the next page starts
               // below its last id.
               json next = static_cast<int>(rows.size()) == want
                               ? json(rows.back().id)
                               : json(nullptr);
               done(
                   json_response(200, dump(json{{"documents", std::move(items)},
                                                {"next_before", next}})));
             });
       }});
  r.add({"GET", "/api/v1/kb/documents/{id}", access::only({}), false, true,
         [base](const request& req, responder done) {
           auto id = positive_integer(req.param("id"));
           if (!id)
             return done(not_found());
           base->get(*id, [done](actors::result<actors::kb_document> res) {
             if (auto f = std::get_if<actors::failure>(&res))
               return done(failure_response(*f));
             done(json_response(
                 200, dump(to_json(std::get<actors::kb_document>(res), true))));
           });
         }});
  r.add({"DELETE", "/api/v1/kb/documents/{id}", access::only({}), false, true,
         [base](const request& req, responder done) {
           auto id = positive_integer(req.param("id"));
           if (!id)
             return done(not_found());
           base->remove(*id, [done](actors::result<bool> res) {
             if (auto f = std::get_if<actors::failure>(&res))
               return done(failure_response(*f));
             response out;
             out.status = 204;
             done(std::move(out));
           });
         }});
}

} // namespace karvon::gateway
