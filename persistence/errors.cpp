#include "persistence/errors.hpp"

namespace karvon::persistence {

const char* to_string(db_error::kind k) {
  switch (k) {
  case db_error::kind::unavailable:
    return "unavailable";
  case db_error::kind::overloaded:
    return "overloaded";
  case db_error::kind::conflict:
    return "conflict";
  case db_error::kind::invalid:
    return "invalid";
  case db_error::kind::in_doubt:
    return "in_doubt";
  case db_error::kind::failed:
    return "failed";
  }
  return "failed";
}

} // namespace karvon::persistence
