#include "gateway/request_checks.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace karvon::gateway {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

} // namespace

std::string framing_problem(const header_list& headers) {
  int transfer_encodings = 0;
  std::string_view transfer_encoding;
  std::vector<std::string_view> lengths;
  for (auto& [name, value] : headers) {
    if (iequals(name, "transfer-encoding")) {
      ++transfer_encodings;
      transfer_encoding = trim(value);
    } else if (iequals(name, "content-length")) {
      lengths.push_back(trim(value));
    }
  }
  if (transfer_encodings > 1)
    return "more than one Transfer-Encoding header";
  if (transfer_encodings == 1 && !iequals(transfer_encoding, "chunked"))
    return "Transfer-Encoding other than chunked";
  if (transfer_encodings == 1 && !lengths.empty())
    return "both Transfer-Encoding and Content-Length";
  for (auto length : lengths) {
    if (length.empty()
        || !std::all_of(length.begin(), length.end(),
                        [](char c) { return c >= '0' && c <= '9'; }))
      return "Content-Length is not a number";
    if (length != lengths.front())
      return "differing Content-Length headers";
  }
  return {};
}

bool is_json_content_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  auto type = trim(content_type.substr(0, semi));
  if (!iequals(type, "application/json"))
    return false;
  while (semi != std::string_view::npos) {
    auto rest = content_type.substr(semi + 1);
    semi = rest.find(';');
    auto param = trim(rest.substr(0, semi));
    auto eq = param.find('=');
    if (eq == std::string_view::npos)
      continue;
    auto name = trim(param.substr(0, eq));
    auto value = trim(param.substr(eq + 1));
    if (!value.empty() && value.front() == '"' && value.back() == '"'
        && value.size() >= 2)
      value = value.substr(1, value.size() - 2);
    if (iequals(name, "charset") && !iequals(value, "utf-8")
        && !iequals(value, "utf8"))
      return false;
  }
  return true;
}

std::optional<std::int64_t> positive_integer(std::string_view text) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()
      || v < 1)
    return std::nullopt;
  return v;
}

bool positive_param(const request& req, const char* name,
                    std::optional<std::int64_t>& out) {
  auto text = req.query(name);
  if (!text)
    return true;
  auto v = positive_integer(*text);
  if (!v)
    return false;
  out = v;
  return true;
}

} // namespace karvon::gateway
