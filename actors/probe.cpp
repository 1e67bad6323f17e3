#include "actors/probe.hpp"

#include <caf/all.hpp>
#include <pqxx/pqxx>

#include "actors/errors.hpp"

namespace karvon::actors {

namespace {

class probe_logic final : public entity_logic {
public:
  explicit probe_logic(std::string node_id) : node_id_(std::move(node_id)) {}

  void load(pqxx::connection_base& c, const std::string& key) override {
    key_ = key;
    state_.id = key.substr(key.find('/') + 1);
    state_.node_id = node_id_;
    pqxx::work tx{c};
    auto r = tx.exec_params("SELECT value FROM probe_counters WHERE id = $1",
                            state_.id);
    if (!r.empty())
      state_.value = r[0][0].as<std::int64_t>();
    activation_ = tx.exec_params1("INSERT INTO probe_activations (key, "
                                  "node_id) VALUES ($1, $2) RETURNING id",
                                  key, node_id_)[0]
                      .as<std::int64_t>();
    tx.commit();
  }

  caf::message_handler handlers(caf::event_based_actor* self) override {
    return {
        [this, self](caf::add_atom,
                     std::int64_t n) -> caf::result<probe_state> {
          auto next = state_;
          next.value += n;
          auto rp = self->make_response_promise<probe_state>();
          // Acknowledged only once committed; the state moves on only then,
          // so a failed write changes nothing.
          in_database(
              [next, node = node_id_](pqxx::connection_base& c) {
                pqxx::work tx{c};
                tx.exec_params(
                    "INSERT INTO probe_counters (id, value, node_id) "
                    "VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE "
                    "SET value = $2, node_id = $3, updated_at = now()",
                    next.id, next.value, node);
                tx.commit();
              },
              [this, rp,
               next](std::optional<persistence::db_error> err) mutable {
                if (err) {
                  rp.deliver(make_error(errc::unavailable, err->message));
                } else {
                  state_ = next;
                  rp.deliver(state_);
                }
              });
          return rp;
        },
        [this](caf::get_atom) { return state_; },
    };
  }

  bool dirty() const override { return activation_ != 0; }

  // Closes the activation's log entry: the checker's end of its interval.
  void save(pqxx::connection_base& c, const std::string&) override {
    pqxx::work tx{c};
    tx.exec_params("UPDATE probe_activations SET passivated_at = "
                   "clock_timestamp() WHERE id = $1",
                   activation_);
    tx.commit();
    activation_ = 0;
  }

private:
  std::string node_id_;
  std::string key_;
  probe_state state_;
  std::int64_t activation_ = 0;
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
