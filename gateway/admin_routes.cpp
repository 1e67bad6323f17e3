// GET /admin/dead-letters and POST /admin/dead-letters/{id}/replay.
#include "gateway/admin_routes.hpp"

#include <cctype>
#include <charconv>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/dead_letters.hpp"
#include "actors/probe.hpp"
#include "cluster/ask.hpp"
#include "cluster/operations.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/status.hpp"

namespace karvon::gateway {

namespace {

using nlohmann::json;

json to_json(const actors::dead_letter& d) {
  json j = {{"id", d.id},
            {"kind", d.kind},
            {"sink", d.sink},
            {"payload", d.payload},
            {"last_error", d.last_error},
            {"attempts", d.attempts},
            {"created_at", d.created_at},
            {"failed_at", d.failed_at},
            {"replay_count", d.replay_count}};
  j["replayed_at"]
      = d.replayed_at.empty() ? json(nullptr) : json(d.replayed_at);
  return j;
}

bool valid_probe_id(const std::string& id) {
  if (id.empty() || id.size() > 64)
    return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
      return false;
  return true;
}

json to_json(const actors::probe_state& p) {
  return {{"id", p.id}, {"value", p.value}, {"node_id", p.node_id}};
}

void ask_probe(cluster::router& entities, const std::string& id,
               caf::message msg, responder done) {
  if (!valid_probe_id(id))
    return done(
        invalid_field("id", "a probe id is 1 to 64 of A-Z a-z 0-9 _ -"));
  cluster::ask<actors::probe_state>(
      entities, "probe/" + id, std::move(msg), std::chrono::seconds{10},
      [done](caf::expected<actors::probe_state> res) {
        if (!res)
          return done(failure_response(actors::to_failure(res.error())));
        done(json_response(200, to_json(*res).dump()));
      });
}

json to_json(const cluster::cluster_report& c) {
  json nodes = json::array();
  for (auto& n : c.nodes)
    nodes.push_back(
        {{"id", n.node.node_id},
         {"incarnation", n.node.incarnation},
         {"http_address", n.node.http_address},
         {"cluster_address", n.node.cluster_address},
         {"state", persistence::to_string(n.node.state)},
         {"started_at", n.node.started_at},
         {"heartbeat_at", n.node.heartbeat_at},
         {"heartbeat_age_ms", n.node.heartbeat_age_ms},
         {"shards", n.shards},
         {"active_entities", n.active ? json(*n.active) : json(nullptr)}});
  return {{"epoch", c.epoch}, {"nodes", std::move(nodes)}};
}

void add_cluster_routes(router& r, cluster::operations& ops,
                        const std::string& local_node) {
  r.add({"GET", "/admin/cluster", access::only({actors::role::operator_}),
         false, true, [&ops, local_node](const request&, responder done) {
           ops.report(
               std::chrono::seconds{1},
               [done, local_node](std::optional<cluster::cluster_report> report,
                                  std::string error) {
                 if (!report)
                   return done(
                       failure_response({actors::errc::unavailable,
                                         "cannot read the cluster: " + error,
                                         {}}));
                 auto j = to_json(*report);
                 j["node_id"] = local_node;
                 done(json_response(200, j.dump()));
               });
         }});
  r.add({"POST", "/admin/cluster/nodes/{node_id}/drain", access::only({}),
         false, true, [&ops](const request& req, responder done) {
           auto id = req.param("node_id");
           ops.drain(id, [done, id](cluster::drain_outcome o,
                                    std::string message) {
             switch (o) {
             case cluster::drain_outcome::draining:
               return done(json_response(
                   202, json{{"node_id", id}, {"state", "draining"}}.dump()));
             case cluster::drain_outcome::not_found:
               return done(error_response(404, "not_found", message));
             case cluster::drain_outcome::dead:
               return done(error_response(409, "conflict", message));
             case cluster::drain_outcome::failed:
               return done(failure_response(
                   {actors::errc::unavailable, std::move(message), {}}));
             }
           });
         }});
}

} // namespace

void add_admin_routes(router& r, admin_dependencies deps) {
  if (deps.cluster)
    add_cluster_routes(r, *deps.cluster, deps.local_node);
  if (auto* entities = deps.router) {
    r.add({"GET", "/admin/probe/{id}", access::only({}), false, true,
           [entities](const request& req, responder done) {
             ask_probe(*entities, req.param("id"),
                       caf::make_message(caf::get_atom::value),
                       std::move(done));
           }});
    r.add({"POST", "/admin/probe/{id}", access::only({}), true, true,
           [entities](const request& req, responder done) {
             auto add = req.json->find("add");
             if (add == req.json->end() || !add->is_number_integer())
               return done(invalid_field("add", "add must be an integer"));
             ask_probe(*entities, req.param("id"),
                       caf::make_message(caf::add_atom::value,
                                         add->get<std::int64_t>()),
                       std::move(done));
           }});
  }
  if (auto* letters = deps.dead_letters) {
    r.add(
        {"GET", "/admin/dead-letters", access::only({}), false, true,
         [letters](const request& req, responder done) {
           actors::dead_letter_query q;
           std::optional<std::int64_t> before, limit;
           if (!positive_param(req, "before", before))
             return done(
                 invalid_field("before", "before must be a positive id"));
           if (!positive_param(req, "limit", limit) || (limit && *limit > 1000))
             return done(invalid_field(
                 "limit", "limit must be an integer from 1 to 1000"));
           q.before = before;
           q.limit = static_cast<int>(limit.value_or(50));
           q.kind = req.query("kind").value_or("");
           letters->list(
               q, [done, want = q.limit](
                      actors::result<std::vector<actors::dead_letter>> res) {
                 if (auto f = std::get_if<actors::failure>(&res))
                   return done(failure_response(*f));
                 auto& rows = std::get<std::vector<actors::dead_letter>>(res);
                 json items = json::array();
                 for (auto& d : rows)
                   items.push_back(to_json(d));
                 // A full page may have more behind it: the next page starts
                 // below its last id.
                 json next = static_cast<int>(rows.size()) == want
                                 ? json(rows.back().id)
                                 : json(nullptr);
                 done(json_response(200,
                                    json{{"dead_letters", std::move(items)},
                                         {"next_before", std::move(next)}}
                                        .dump(-1, ' ', false,
                                              json::error_handler_t::replace)));
               });
         }});
    r.add(
        {"POST", "/admin/dead-letters/{id}/replay", access::only({}), false,
         true, [letters](const request& req, responder done) {
           std::int64_t id = 0;
           auto text = req.param("id");
           auto [end, ec]
               = std::from_chars(text.data(), text.data() + text.size(), id);
           if (ec != std::errc{} || end != text.data() + text.size() || id < 1)
             return done(
                 error_response(404, "not_found", "no such dead letter"));
           letters->replay(id, [done](actors::result<actors::dead_letter> res) {
             if (auto f = std::get_if<actors::failure>(&res))
               return done(failure_response(*f));
             done(
                 json_response(202, to_json(std::get<actors::dead_letter>(res))
                                        .dump(-1, ' ', false,
                                              json::error_handler_t::replace)));
           });
         }});
  }
}

} // namespace karvon::gateway
