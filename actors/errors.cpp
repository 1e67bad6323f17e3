#include "actors/errors.hpp"

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

} // namespace karvon::actors
