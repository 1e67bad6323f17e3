#include "gateway/http.hpp"

#include <nlohmann/json.hpp>

namespace karvon::gateway {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace

const std::string* request::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k == name)
      return &v;
  return nullptr;
}

std::string request::param(std::string_view name) const {
  for (auto& [k, v] : params)
    if (k == name)
      return v;
  return {};
}

std::optional<std::string> request::query(std::string_view name) const {
  std::string_view rest = query_string;
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{}
                                         : rest.substr(amp + 1);
    auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    if (!key || *key != name)
      continue;
    if (eq == std::string_view::npos)
      return std::string{};
    return percent_decode(pair.substr(eq + 1), true);
  }
  return std::nullopt;
}

std::optional<std::string> percent_decode(std::string_view in, bool query) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size())
        return std::nullopt;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0)
        return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && query) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

response error_response(int status, std::string_view code,
                        std::string_view message,
                        std::string_view details_json) {
  nlohmann::json error = {{"code", code}, {"message", message}};
  if (!details_json.empty()) {
    auto details = nlohmann::json::parse(details_json, nullptr, false);
    if (!details.is_discarded())
      error["details"] = std::move(details);
  }
  nlohmann::json body = {{"error", std::move(error)}};
  response r;
  r.status = status;
  // Replace, never throw, on invalid UTF-8 that a message may echo back.
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

response invalid_field(std::string_view field, std::string_view message) {
  nlohmann::json details = {{"field", field}};
  return error_response(400, "invalid_field", message, details.dump());
}

response json_response(int status, std::string body) {
  response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

} // namespace karvon::gateway
