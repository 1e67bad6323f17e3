// Expected failures of domain operations, as values. The gateway turns them
// into HTTP statuses in one place (gateway/status.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include <caf/error.hpp>
#include <caf/fwd.hpp>

namespace karvon::persistence {
struct db_error;
}

namespace karvon::actors {

enum class errc : std::uint8_t {
  overloaded = 1, //!< a queue is full; retry later
  not_found,
  invalid_input, //!< `field` names the offending input
  conflict,      //!< exists already, or changed concurrently
  unavailable,   //!< a dependency (the database) is down
  timeout,
  internal,
};

struct failure {
  errc code = errc::internal;
  std::string message;
  std::string field; //!< for invalid_input
};

/// "overloaded", "not_found", ...
const char* to_string(errc e);

/// The CAF error for `e`, in karvon's category (atom "karvon"), so that actor
/// replies carry it and it crosses nodes as it is.
caf::error make_error(errc e);

/// The same with a message for logs and callers.
caf::error make_error(errc e, std::string message);

/// The errc of a karvon error; nullopt-like errc{} (0) for other categories.
errc errc_of(const caf::error& e);

/// The message a karvon error carries, empty if none.
std::string message_of(const caf::error& e);

/// A failure value for a CAF error: karvon's keep their code and message,
/// others (timeouts, dead actors) become unavailable or timeout.
failure to_failure(const caf::error& e);

/// The failure a caller sees for a database error: overloaded (busy, retry
/// later), unavailable (down or in doubt), or internal (anything else).
failure failure_of(const persistence::db_error& e);

/// Renders karvon's errors in logs (`system.render(err)`).
void add_error_category(caf::actor_system_config& cfg);

/// A value or the reason there is none (for code outside actors).
template <class T>
using result = std::variant<T, failure>;

} // namespace karvon::actors
