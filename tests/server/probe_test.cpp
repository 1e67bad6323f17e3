// The probe entity through a real node: committed adds, the owner named,
// activations logged.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/load.hpp"
#include "tests/server/node_fixture.hpp"

namespace karvon::testing {
namespace {

using nlohmann::json;
using Probe = NodeTest;

TEST_F(Probe, adds_are_committed_and_name_the_owner) {
  for (int i = 1; i <= 3; ++i) {
    auto r = http_request(port(), "POST", "/admin/probe/p1", R"({"add":2})",
                          bearer(admin_key_, true));
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = json::parse(r.body);
    EXPECT_EQ(j["value"], 2 * i);
    EXPECT_EQ(j["node_id"], config::effective_node_id(settings_));
  }
  EXPECT_EQ(query_value(node_->conninfo(),
                        "SELECT value FROM probe_counters WHERE id = 'p1'"),
            "6");
  auto read
      = http_request(port(), "GET", "/admin/probe/p1", {}, bearer(admin_key_));
  EXPECT_EQ(json::parse(read.body)["value"], 6);
}

TEST_F(Probe, activations_are_logged_and_closed_at_shutdown) {
  ASSERT_EQ(
      http_request(port(), "GET", "/admin/probe/p2", {}, bearer(admin_key_))
          .status,
      200);
  auto conninfo = node_->conninfo();
  node_->stop();
  EXPECT_EQ(query_value(conninfo, "SELECT count(*) FROM probe_activations "
                                  "WHERE key = 'probe/p2' AND passivated_at "
                                  "IS NOT NULL"),
            "1");
}

TEST_F(Probe, bad_ids_and_bodies_are_400) {
  EXPECT_EQ(
      http_request(port(), "GET", "/admin/probe/a%20b", {}, bearer(admin_key_))
          .status,
      400);
  EXPECT_EQ(http_request(port(), "POST", "/admin/probe/p3", R"({"add":"x"})",
                         bearer(admin_key_, true))
                .status,
            400);
}

} // namespace
} // namespace karvon::testing
