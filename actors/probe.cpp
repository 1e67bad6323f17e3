#include "actors/probe.hpp"

#include <deque>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include "actors/errors.hpp"

namespace karvon::actors {

namespace {

class probe_logic final : public entity_logic {
public:
  explicit probe_logic(std::string node_id) : node_id_(std::move(node_id)) {}

  // Every write checks the shard's fencing token in its own transaction,
  // the activation's log entry included: an entity this node may no longer
  // serve neither starts nor writes.
  void load(pqxx::connection_base& c, const std::string& key) override {
    key_ = key;
    state_.id = key.substr(key.find('/') + 1);
    state_.node_id = node_id_;
    pqxx::work tx{c};
    auto token = checked_fence(tx);
    auto r = tx.exec_params("SELECT value FROM probe_counters WHERE id = $1",
                            state_.id);
    if (!r.empty())
      state_.value = r[0][0].as<std::int64_t>();
    activation_ = tx.exec_params1(
                        "INSERT INTO probe_activations (key, node_id, "
                        "incarnation) VALUES ($1, $2, $3) RETURNING id",
                        key, node_id_,
                        token ? std::optional<std::int64_t>{token->incarnation}
                              : std::nullopt)[0]
                      .as<std::int64_t>();
    tx.commit();
  }

  caf::message_handler handlers(caf::event_based_actor* self) override {
    return {
        [this, self](caf::add_atom,
                     std::int64_t n) -> caf::result<probe_state> {
          auto rp = self->make_response_promise<probe_state>();
          adds_.emplace_back(n, rp);
          if (!writing_)
            write_queued();
          return rp;
        },
        [this](caf::get_atom) { return state_; },
    };
  }

  bool busy() const override { return writing_ || !adds_.empty(); }

  bool dirty() const override { return activation_ != 0; }

  // Closes the activation's log entry: the checker's end of its interval.
  void save(pqxx::connection_base& c, const std::string&) override {
    pqxx::work tx{c};
    checked_fence(tx);
    tx.exec_params("UPDATE probe_activations SET passivated_at = "
                   "clock_timestamp() WHERE id = $1",
                   activation_);
    tx.commit();
    activation_ = 0;
  }

private:
  using add_promise = caf::typed_response_promise<probe_state>;

  // Writes every add queued so far in one transaction. Adds wait while one
  // is under way, so each starts from committed state and every answer
  // names a value of its own. Acknowledged only once committed; the state
  // moves on only then, so a failed write changes nothing.
  void write_queued() {
    std::vector<std::pair<probe_state, add_promise>> batch;
    auto next = state_;
    for (auto& [n, rp] : adds_) {
      next.value += n;
      batch.emplace_back(next, rp);
    }
    adds_.clear();
    writing_ = true;
    in_database(
        [this, next, activation = activation_](pqxx::connection_base& c) {
          pqxx::work tx{c};
          checked_fence(tx);
          tx.exec_params("INSERT INTO probe_counters (id, value, node_id) "
                         "VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE "
                         "SET value = $2, node_id = $3, updated_at = now()",
                         next.id, next.value, next.node_id);
          tx.exec_params("UPDATE probe_activations SET last_write_at "
                         "= clock_timestamp() WHERE id = $1",
                         activation);
          tx.commit();
        },
        [this, batch = std::move(batch),
         next](std::optional<persistence::db_error> err) mutable {
          writing_ = false;
          if (!err)
            state_ = next;
          for (auto& [value, rp] : batch)
            if (err)
              rp.deliver(make_error(errc::unavailable, err->message));
            else
              rp.deliver(value);
          if (!adds_.empty())
            write_queued();
        });
  }

  // The lease check inside `tx`; throws lease_lost when it fails.
  std::optional<persistence::fencing_token>
  checked_fence(pqxx::transaction_base& tx) const {
    auto token = fence();
    if (token && !persistence::holds_lease(tx, *token))
      throw lease_lost{"this node no longer holds the lease of " + key_};
    return token;
  }

  std::string node_id_;
  std::string key_;
  probe_state state_;
  std::int64_t activation_ = 0;
  std::deque<std::pair<std::int64_t, add_promise>> adds_;
  bool writing_ = false;
};

} // namespace

entity_kind probe_kind(std::string node_id) {
  return {"probe", [node_id](const std::string&) {
            return std::make_unique<probe_logic>(node_id);
          }};
}

void add_probe_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<probe_state>("karvon.probe_state");
}

} // namespace karvon::actors
