#include "actors/partners.hpp"

#include <memory>

#include <caf/all.hpp>
#include <pqxx/pqxx>
#include <sodium.h>

#include "persistence/db_pool.hpp"
#include "persistence/partner_store.hpp"

namespace karvon::actors {

namespace {

failure from_db(const persistence::db_error& e, const char* what) {
  using kind = persistence::db_error::kind;
  switch (e.what) {
  case kind::conflict:
    return {errc::conflict, std::string{what} + " exists already", "id"};
  case kind::overloaded:
    return {errc::overloaded, "the database is busy; retry later", {}};
  case kind::unavailable:
  case kind::in_doubt:
    return {errc::unavailable, "the database is unavailable", {}};
  case kind::invalid:
    return {errc::invalid_input, e.message, {}};
  case kind::failed:
    break;
  }
  return {errc::internal, "database error", {}};
}

std::string generated_id() {
  unsigned char bytes[6];
  randombytes_buf(bytes, sizeof bytes);
  char hex[sizeof bytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return std::string{"p_"} + hex;
}

persistence::partner_row to_row(const partner& p) {
  return {p.id, p.name, p.monthly_budget_usd, p.max_concurrency, p.created_at};
}

partner from_row(const persistence::partner_row& r) {
  return {r.id, r.name, r.monthly_budget_usd, r.max_concurrency, r.created_at};
}

// The partner entity: the committed row, read at activation. Creating and
// changing partners goes through the registry's SQL for now; the entity
// learns of changes at its next activation.
class partner_logic final : public entity_logic {
public:
  void load(pqxx::connection_base& c, const std::string& key) override {
    id_ = key.substr(key.find('/') + 1);
    if (auto row = persistence::find_partner(c, id_))
      state_ = from_row(*row);
  }

  caf::message_handler handlers(caf::event_based_actor* self) override {
    return {
        [this, self](caf::get_atom) -> caf::result<partner> {
          if (state_)
            return *state_;
          // Not there at activation; it may have been created since.
          auto rp = self->make_response_promise<partner>();
          auto row
              = std::make_shared<std::optional<persistence::partner_row>>();
          in_database(
              [row, id = id_](pqxx::connection_base& c) {
                *row = persistence::find_partner(c, id);
              },
              [this, rp,
               row](std::optional<persistence::db_error> err) mutable {
                if (err) {
                  rp.deliver(make_error(errc::unavailable, err->message));
                } else if (!*row) {
                  rp.deliver(make_error(errc::not_found, "no such partner"));
                } else {
                  state_ = from_row(**row);
                  rp.deliver(*state_);
                }
              });
          return rp;
        },
    };
  }

private:
  std::string id_;
  std::optional<partner> state_;
};

} // namespace

entity_kind partner_kind() {
  return {"partner",
          [](const std::string&) { return std::make_unique<partner_logic>(); }};
}

void add_partner_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<partner>("karvon.partner");
}

bool valid_partner_id(const std::string& id) {
  if (id.empty() || id.size() > 64)
    return false;
  auto alnum
      = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(id[0]))
    return false;
  for (char c : id)
    if (!alnum(c) && c != '_' && c != '-')
      return false;
  return true;
}

partner_registry::partner_registry(persistence::db_pool& pool) : pool_(&pool) {}

void partner_registry::create(partner p,
                              std::function<void(result<partner>)> done) {
  if (p.id.empty()) {
    if (sodium_init() < 0)
      return done(failure{errc::internal, "no random source", {}});
    p.id = generated_id();
  }
  auto stored = std::make_shared<persistence::partner_row>();
  auto row = to_row(p);
  bool queued = pool_->submit(
      [stored, row](pqxx::connection_base& c) {
        *stored = persistence::insert_partner(c, row);
      },
      [stored, done](std::optional<persistence::db_error> err) {
        if (err)
          return done(from_db(*err, "a partner with this id"));
        done(from_row(*stored));
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

void partner_registry::find(std::string id,
                            std::function<void(result<partner>)> done) {
  auto found = std::make_shared<std::optional<persistence::partner_row>>();
  bool queued = pool_->submit(
      [found, id](pqxx::connection_base& c) {
        *found = persistence::find_partner(c, id);
      },
      [found, done](std::optional<persistence::db_error> err) {
        if (err)
          return done(from_db(*err, "partner"));
        if (!*found)
          return done(failure{errc::not_found, "no such partner", {}});
        done(from_row(**found));
      });
  if (!queued)
    done(failure{errc::overloaded, "the database is busy; retry later", {}});
}

} // namespace karvon::actors
