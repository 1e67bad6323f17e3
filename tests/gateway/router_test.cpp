#include <gtest/gtest.h>

#include "gateway/router.hpp"

namespace karvon::gateway {
namespace {

route make(std::string method, std::string path) {
  return {std::move(method),
          std::move(path),
          access::none(),
          false,
          false,
          [](const request&, responder) {}};
}

router sample() {
  router r;
  r.add(make("GET", "/health"));
  r.add(make("GET", "/api/v1/kb/documents"));
  r.add(make("POST", "/api/v1/kb/documents"));
  r.add(make("GET", "/api/v1/kb/documents/{id}"));
  r.add(make("DELETE", "/api/v1/kb/documents/{id}"));
  r.add(make("GET", "/api/v1/partners/{id}/tasks/{task_id}"));
  r.add(make("GET", "/admin/cluster"));
  r.add(make("POST", "/admin/cluster/nodes/{node_id}/drain"));
  return r;
}

TEST(Router, matches_literal_paths) {
  auto r = sample();
  auto m = r.match("GET", "/health");
  ASSERT_TRUE(m.found);
  EXPECT_EQ(m.found->path, "/health");
  EXPECT_EQ(m.route_label, "/health");
}

TEST(Router, fills_template_parameters_decoded) {
  auto r = sample();
  auto m = r.match("GET", "/api/v1/partners/acme%2Dco/tasks/42");
  ASSERT_TRUE(m.found);
  EXPECT_EQ(m.route_label, "/api/v1/partners/{id}/tasks/{task_id}");
  ASSERT_EQ(m.params.size(), 2u);
  EXPECT_EQ(m.params[0],
            (std::pair<std::string, std::string>{"id", "acme-co"}));
  EXPECT_EQ(m.params[1].second, "42");
}

TEST(Router, an_unknown_path_is_404_and_labelled_unmatched) {
  auto r = sample();
  for (auto path : {"/", "/nope", "/health/", "/api/v1/kb/documents/1/x",
                    "/api/v1/kb/documents//", ""}) {
    auto m = r.match("GET", path);
    EXPECT_FALSE(m.found) << path;
    EXPECT_EQ(m.status, 404) << path;
    EXPECT_EQ(m.route_label, "unmatched") << path;
  }
}

TEST(Router, a_known_path_with_another_method_is_405_with_allow) {
  auto r = sample();
  auto m = r.match("PUT", "/api/v1/kb/documents/7");
  EXPECT_FALSE(m.found);
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.allow, "DELETE, GET");
  EXPECT_EQ(m.route_label, "/api/v1/kb/documents/{id}");
}

TEST(Router, head_is_served_by_the_get_route) {
  auto r = sample();
  auto m = r.match("HEAD", "/health");
  ASSERT_TRUE(m.found);
  EXPECT_EQ(m.found->method, "GET");
}

TEST(Router, literal_segments_win_over_parameters) {
  router r;
  r.add(make("GET", "/admin/{what}"));
  r.add(make("GET", "/admin/cluster"));
  EXPECT_EQ(r.match("GET", "/admin/cluster").route_label, "/admin/cluster");
  EXPECT_EQ(r.match("GET", "/admin/other").route_label, "/admin/{what}");
}

TEST(Router, a_malformed_escape_in_a_parameter_does_not_match) {
  auto r = sample();
  EXPECT_EQ(r.match("GET", "/api/v1/kb/documents/%zz").status, 404);
}

} // namespace
} // namespace karvon::gateway
