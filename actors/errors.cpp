#include "actors/errors.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

#include "persistence/errors.hpp"

namespace karvon::actors {

const char* to_string(errc e) {
  switch (e) {
  case errc::overloaded:
    return "overloaded";
  case errc::not_found:
    return "not_found";
  case errc::invalid_input:
    return "invalid_input";
  case errc::conflict:
    return "conflict";
  case errc::unavailable:
    return "unavailable";
  case errc::timeout:
    return "timeout";
  case errc::internal:
    return "internal";
  }
  return "internal";
}

namespace {
constexpr auto category = caf::atom("karvon");
} // namespace

caf::error make_error(errc e) {
  return {static_cast<std::uint8_t>(e), category};
}

caf::error make_error(errc e, std::string message) {
  return {static_cast<std::uint8_t>(e), category,
          caf::make_message(std::move(message))};
}

errc errc_of(const caf::error& e) {
  if (e.category() != category)
    return errc{};
  return static_cast<errc>(e.code());
}

std::string message_of(const caf::error& e) {
  auto& ctx = e.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return {};
}

failure to_failure(const caf::error& e) {
  if (e.category() == category)
    return {static_cast<errc>(e.code()), message_of(e), {}};
  if (e == caf::sec::request_timeout)
    return {errc::timeout, "the request timed out", {}};
  // A dead or unreachable actor: the entity comes back on the next message.
  return {errc::unavailable, "temporarily unavailable", {}};
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(category, [](std::uint8_t code, caf::atom_value,
                                      const caf::message& ctx) {
    std::string out = "karvon.";
    out += to_string(static_cast<errc>(code));
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      out += ": " + ctx.get_as<std::string>(0);
    return out;
  });
}

failure failure_of(const persistence::db_error& e) {
  using kind = persistence::db_error::kind;
  if (e.what == kind::overloaded)
    return {errc::overloaded, "the database is busy; retry later", {}};
  if (e.what == kind::unavailable || e.what == kind::in_doubt)
    return {errc::unavailable, "the database is unavailable", {}};
  return {errc::internal, "database error", {}};
}

} // namespace karvon::actors
