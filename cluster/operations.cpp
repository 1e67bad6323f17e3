#include "cluster/operations.hpp"

#include <map>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "cluster/router.hpp"
#include "persistence/db_pool.hpp"

namespace karvon::cluster {

namespace db = persistence;

struct operations::impl {
  db::db_pool* pool;
  const router* r;
  caf::actor local_node_router;
  std::string local_node;
  std::function<void()> local_changed;
};

operations::operations(persistence::db_pool& pool, const router& r,
                       caf::actor local_node_router, std::string local_node,
                       std::function<void()> local_changed)
    : impl_(std::make_unique<impl>()) {
  impl_->pool = &pool;
  impl_->r = &r;
  impl_->local_node_router = std::move(local_node_router);
  impl_->local_node = std::move(local_node);
  impl_->local_changed = std::move(local_changed);
}

operations::~operations() = default;

namespace {

using report_done
    = std::function<void(std::optional<cluster_report>, std::string)>;

// Asks each node's router for its active entities, then completes the
// report. State as spawn arguments: CAF 0.17 dereferences a null tuple
// when a lambda actor is spawned with none.
void count_entities(caf::actor_system& sys, std::vector<caf::actor> routers,
                    std::shared_ptr<cluster_report> report,
                    std::chrono::milliseconds timeout, report_done done) {
  struct round {
    std::shared_ptr<cluster_report> report;
    std::size_t pending = 0;
    report_done done;
  };
  auto r = std::make_shared<round>();
  r->report = std::move(report);
  r->done = std::move(done);
  for (auto& a : routers)
    r->pending += a ? 1 : 0;
  if (r->pending == 0) {
    r->done(std::move(*r->report), {});
    return;
  }
  sys.spawn(
      [](caf::event_based_actor* self, std::shared_ptr<round> r,
         std::vector<caf::actor> routers, std::chrono::milliseconds timeout) {
        auto one = [r] {
          if (--r->pending == 0)
            r->done(std::move(*r->report), {});
        };
        for (std::size_t i = 0; i < routers.size(); ++i) {
          if (!routers[i])
            continue;
          self->request(routers[i], timeout, actors::stats_atom::value)
              .then(
                  [r, i, one](std::uint64_t active) {
                    r->report->nodes[i].active = active;
                    one();
                  },
                  [one](caf::error&) { one(); });
        }
      },
      r, std::move(routers), timeout);
}

} // namespace

void operations::report(std::chrono::milliseconds timeout,
                        report_done done) const {
  struct read {
    db::cluster_view view;
    std::vector<db::lease_row> leases;
  };
  auto out = std::make_shared<read>();
  auto* i = impl_.get();
  bool queued = i->pool->submit(
      [out](pqxx::connection_base& c) {
        out->view = db::read_view(c);
        out->leases = db::lease_holders(c);
      },
      [i, out, timeout, done](std::optional<db::db_error> err) {
        if (err)
          return done(std::nullopt, err->message);
        auto report = std::make_shared<cluster_report>();
        report->epoch = out->view.epoch;
        std::map<std::pair<std::string, std::int64_t>, std::uint32_t> held;
        for (auto& l : out->leases)
          if (l.valid)
            ++held[{l.node_id, l.incarnation}];
        std::vector<caf::actor> routers;
        for (auto& n : out->view.nodes) {
          node_report nr;
          nr.node = n;
          auto h = held.find({n.node_id, n.incarnation});
          nr.shards = h == held.end() ? 0 : h->second;
          report->nodes.push_back(std::move(nr));
          caf::actor a;
          if (n.state != db::node_state::dead)
            a = n.node_id == i->local_node ? i->local_node_router
                                           : i->r->peer(n.node_id);
          routers.push_back(std::move(a));
        }
        count_entities(i->r->system(), std::move(routers), std::move(report),
                       timeout, done);
      });
  if (!queued)
    done(std::nullopt, "the database is busy");
}

void operations::drain(
    const std::string& node_id,
    std::function<void(drain_outcome, std::string)> done) const {
  auto outcome = std::make_shared<drain_outcome>(drain_outcome::failed);
  auto* i = impl_.get();
  bool queued = i->pool->submit(
      [outcome, node_id](pqxx::connection_base& c) {
        auto view = db::read_view(c);
        for (auto& n : view.nodes) {
          if (n.node_id != node_id)
            continue;
          if (n.state == db::node_state::dead) {
            *outcome = drain_outcome::dead;
            return;
          }
          *outcome = db::set_node_state(c, n.node_id, n.incarnation,
                                        db::node_state::draining)
                         ? drain_outcome::draining
                         : drain_outcome::dead; // died or restarted meanwhile
          return;
        }
        *outcome = drain_outcome::not_found;
      },
      [i, outcome, node_id, done](std::optional<db::db_error> err) {
        if (err)
          return done(drain_outcome::failed, err->message);
        if (*outcome == drain_outcome::draining && node_id == i->local_node
            && i->local_changed)
          i->local_changed();
        switch (*outcome) {
        case drain_outcome::draining:
          return done(*outcome, "node " + node_id + " is draining");
        case drain_outcome::dead:
          return done(*outcome, "node " + node_id + " is dead");
        case drain_outcome::not_found:
          return done(*outcome, "no node " + node_id);
        case drain_outcome::failed:
          return done(*outcome, "draining " + node_id + " failed");
        }
      });
  if (!queued)
    done(drain_outcome::failed, "the database is busy");
}

} // namespace karvon::cluster
