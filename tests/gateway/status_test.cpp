#include "gateway/status.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace karvon::gateway {
namespace {

std::string header(const response& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name)
      return v;
  return {};
}

TEST(FailureResponse, overloaded_is_503_with_retry_after) {
  auto r = failure_response({actors::errc::overloaded, "queue full", {}});
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(header(r, "Retry-After"), "1");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["error"]["code"], "overloaded");
  EXPECT_EQ(j["error"]["message"], "queue full");
}

TEST(FailureResponse, each_domain_failure_has_its_status) {
  using actors::errc;
  EXPECT_EQ(failure_response({errc::unavailable, "", {}}).status, 503);
  EXPECT_EQ(failure_response({errc::timeout, "", {}}).status, 503);
  EXPECT_EQ(failure_response({errc::not_found, "", {}}).status, 404);
  EXPECT_EQ(failure_response({errc::conflict, "", {}}).status, 409);
  EXPECT_EQ(failure_response({errc::internal, "secret", {}}).status, 500);
  auto invalid = failure_response({errc::invalid_input, "bad", "name"});
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(nlohmann::json::parse(invalid.body)["error"]["details"]["field"],
            "name");
  // Internal details stay in the logs.
  EXPECT_EQ(failure_response({errc::internal, "secret", {}}).body.find("secret"),
            std::string::npos);
}

TEST(FailureResponse, a_caf_error_maps_through_its_karvon_code) {
  auto f = actors::to_failure(actors::make_error(actors::errc::overloaded, "x"));
  EXPECT_EQ(failure_response(f).status, 503);
}

} // namespace
} // namespace karvon::gateway
