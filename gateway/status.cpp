#include "gateway/status.hpp"

namespace karvon::gateway {

response failure_response(const actors::failure& f) {
  using actors::errc;
  switch (f.code) {
  case errc::overloaded:
  case errc::unavailable:
  case errc::timeout: {
    auto r = error_response(503, actors::to_string(f.code), f.message);
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  case errc::not_found:
    return error_response(404, "not_found", f.message);
  case errc::invalid_input:
    if (!f.field.empty())
      return invalid_field(f.field, f.message);
    return error_response(400, "invalid_input", f.message);
  case errc::conflict:
    return error_response(409, "conflict", f.message);
  case errc::internal:
    break;
  }
  return error_response(500, "internal_error", "internal error");
}

} // namespace karvon::gateway
