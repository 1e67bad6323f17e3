// The one place where a domain failure becomes an HTTP status.
#pragma once

#include "actors/errors.hpp"
#include "gateway/http.hpp"

namespace karvon::gateway {

/// overloaded and unavailable: 503 with Retry-After; not_found: 404;
/// invalid_input: 400 naming the field; conflict: 409; timeout: 503;
/// internal: 500.
response failure_response(const actors::failure& f);

} // namespace karvon::gateway
