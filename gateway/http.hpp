// What a route handler sees of HTTP: plain request and response values, no
// Beast types, so that handlers compile fast and can be tested without a
// socket.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "actors/api_keys.hpp"

namespace karvon::gateway {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct request {
  std::string method;       //!< "GET", "POST", ...
  std::string target;       //!< as sent: path and query
  std::string path;         //!< without the query
  std::string query_string; //!< after '?', not decoded
  header_list headers;      //!< names lower-cased
  std::string body;
  std::string client_ip;
  std::string route;  //!< the matched template, "/api/v1/kb/documents/{id}"
  header_list params; //!< values of the template's {names}, decoded
  std::optional<actors::principal> caller; //!< set when a key was checked
  /// The parsed body of a json_body route: always a JSON object there.
  std::shared_ptr<const nlohmann::json> json;
  /// Set only by the WebSocket for an ask: a handler whose answer streams
  /// (the chat assistant's LLM tokens) may call it with each piece before
  /// the responder, from any thread; it never blocks. Empty for HTTP.
  std::function<void(std::string_view)> stream;

  /// The first header of this (lower-case) name, or nullptr.
  const std::string* header(std::string_view name) const;
  /// The path parameter, empty when absent.
  std::string param(std::string_view name) const;
  /// The decoded query parameter, nullopt when absent.
  std::optional<std::string> query(std::string_view name) const;
};

struct response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  header_list headers; //!< extra headers, e.g. Retry-After, Allow
};

/// Completes a request. Call it exactly once, from any thread; later calls
/// are ignored. It never blocks: the response is posted to the connection.
using responder = std::function<void(response)>;

/// Runs on a Beast I/O thread (or, for a request with an Idempotency-Key, a
/// database thread) and must not block: hand slow work to an actor or the
/// database pool and call the responder from there.
using handler = std::function<void(const request&, responder)>;

/// Who may call a route.
struct access {
  bool anonymous = false;          //!< no key needed (and none checked)
  std::vector<actors::role> roles; //!< admin is always allowed
  /// For routes with this path parameter, a partner key passes only when
  /// the parameter is its own partner id.
  std::string partner_param;

  static access none() { return {true, {}, {}}; }
  static access only(std::vector<actors::role> r) {
    return {false, std::move(r), {}};
  }
};

struct route {
  std::string method; //!< "GET", "POST", "DELETE", ...
  std::string path;   //!< template: "/api/v1/partners/{id}/tasks"
  access who;
  bool json_body = false; //!< the body must be application/json
  bool rate_limited = true;
  handler run;
  /// Creates things: honours Idempotency-Key (a repeat gets the first
  /// response; the same key with another request, 409).
  bool idempotent = false;
};

/// `{"error":{"code":..,"message":..,"details":..}}` with that status.
/// `details_json` is a JSON object's text, or empty.
response error_response(int status, std::string_view code,
                        std::string_view message,
                        std::string_view details_json = {});

/// 400 with details naming the field: `{"field": "<field>"}`.
response invalid_field(std::string_view field, std::string_view message);

/// A JSON body with that status.
response json_response(int status, std::string body);

/// Percent-decodes a path segment or query component ('+' is a space only
/// in queries); nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view in, bool query);

} // namespace karvon::gateway
