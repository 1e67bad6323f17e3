// Checks on a request that Beast 1.74 does not make itself, and on the
// parameters routes share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/http.hpp"

namespace karvon::gateway {

/// Refuses ambiguous message framing (RFC 9112 §6.3), the root of request
/// smuggling: a Transfer-Encoding other than exactly "chunked", both
/// Transfer-Encoding and Content-Length, or Content-Lengths that differ or
/// are not plain digits. Returns the reason, empty when the framing is safe.
/// `headers` as received, any case.
std::string framing_problem(const header_list& headers);

/// True when `content_type` is application/json, with optional parameters
/// (charset must be utf-8 when given).
bool is_json_content_type(std::string_view content_type);

/// The positive integer `text` is (decimal digits only), nullopt otherwise.
std::optional<std::int64_t> positive_integer(std::string_view text);

/// Query parameter `name` as a positive integer into `out`; false when it
/// is present and not one (absent: true, `out` untouched).
bool positive_param(const request& req, const char* name,
                    std::optional<std::int64_t>& out);

} // namespace karvon::gateway
