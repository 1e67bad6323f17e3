// Expected failures of domain operations, as values. The gateway turns them
// into HTTP statuses in one place (gateway/status.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <variant>

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

/// "overloaded", "not_found", ...
const char* to_string(errc e);

struct failure {
  errc code = errc::internal;
  std::string message;
  std::string field; //!< for invalid_input
};

/// A value or the reason there is none.
template <class T>
using result = std::variant<T, failure>;

} // namespace karvon::actors
