// A real node in-process: its own fresh database on the test PostgreSQL, the
// real gateway on a free port, and helpers to make keys of every role.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "actors/api_keys.hpp"
#include "actors/demo_kb.hpp"
#include "app/node.hpp"
#include "config/settings.hpp"
#include "persistence/api_key_store.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::testing {

class NodeTest : public ::testing::Test {
protected:
  void SetUp() override { start_node(); }
  void TearDown() override {
    if (node_)
      node_->stop();
  }

  /// Starts the node; `tweak` adjusts the settings first.
  void start_node(std::function<void(config::settings&)> tweak = {}) {
    settings_ = config::settings{};
    settings_.database.url = fresh_database();
    settings_.server.listen = "127.0.0.1:0";
    settings_.server.threads = 2;
    settings_.database.pool_size = 4;
    settings_.http.read_timeout_ms = 2000;
    settings_.http.shutdown_grace_ms = 2000;
    // Tests poll and retry; rate limits get tests of their own.
    settings_.http.anon_rate_per_min = 100000;
    settings_.http.key_rate_per_min = 100000;
    settings_.http.burst_per_s = 100000;
    if (tweak)
      tweak(settings_);
    node_ = std::make_unique<app::node>(settings_,
                                        app::node_options{false, false});
    node_->start();
    admin_key_ = node_->first_admin_key();
    ASSERT_FALSE(admin_key_.empty());
  }

  std::uint16_t port() const { return node_->http_port(); }

  /// A new key of this role, straight into the database.
  std::string create_key(actors::role r, const std::string& partner = {}) {
    auto key = actors::generate_api_key();
    persistence::api_key_row row;
    row.name = "test";
    row.role = actors::to_string(r);
    row.partner_id = partner;
    row.lookup = key.lookup;
    row.secret_hash = key.secret_hash;
    pqxx::connection c{node_->conninfo()};
    last_key_id_ = persistence::insert_api_key(c, row);
    return key.text;
  }

  /// Waits until the running node has picked up keys created meanwhile.
  void wait_for_key(const std::string& key) {
    for (int i = 0; i < 100; ++i) {
      auto r = http_request(port(), "GET", "/health/detailed", {}, bearer(key));
      if (r.status != 401)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    FAIL() << "the node never accepted the new key";
  }

  /// Posts the demo knowledge base through the API; its document ids by
  /// "topic/language" ("payment/ru").
  std::map<std::string, std::int64_t> post_demo_knowledge_base() {
    std::map<std::string, std::int64_t> ids;
    for (auto& d : actors::demo_documents()) {
      auto r = http_request(port(), "POST", "/api/v1/kb/documents",
                            nlohmann::json{{"title", d.title},
                                           {"content", d.content},
                                           {"language", d.language},
                                           {"category", d.topic}}
                                .dump(),
                            bearer(admin_key_, true));
      EXPECT_EQ(r.status, 201) << r.body;
      ids[d.topic + "/" + d.language]
          = nlohmann::json::parse(r.body, nullptr, false)
                .value("id", std::int64_t{0});
    }
    return ids;
  }

  long count_rows(const std::string& table) {
    pqxx::connection c{node_->conninfo()};
    pqxx::nontransaction tx{c};
    return tx.exec("SELECT count(*) FROM " + c.quote_name(table))[0][0]
        .as<long>();
  }

  config::settings settings_;
  std::unique_ptr<app::node> node_;
  std::string admin_key_;
  std::int64_t last_key_id_ = 0;
};

} // namespace karvon::testing
