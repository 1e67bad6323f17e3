#include <regex>
#include <string>

#include <gtest/gtest.h>
#include <pqxx/connection>
#include <pqxx/except>

#include "persistence/api_key_store.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

class ApiKeyStore : public ::testing::Test {
protected:
  void SetUp() override {
    auto db = testing::fresh_database();
    migrate(db);
    // Partner keys name a partner that exists, once partners have a table.
    testing::execute(db, "DO $$ BEGIN IF to_regclass('partners') IS NOT NULL "
                         "THEN INSERT INTO partners (id, name) VALUES ('acme', "
                         "'Acme'); END IF; END $$");
    conn_ = std::make_unique<pqxx::connection>(db);
  }

  static api_key_row key(std::string role, std::string lookup,
                         std::string partner = {}) {
    api_key_row k;
    k.name = role + " key";
    k.role = std::move(role);
    k.partner_id = std::move(partner);
    k.lookup = std::move(lookup);
    // Any bytes: NUL and high bytes must survive bytea.
    k.secret_hash = std::string("\x00\xff\x10hash", 7);
    return k;
  }

  /// The db_error that `f` throws, through the same mapping the pool uses.
  template <class F>
  static db_error error_of(F&& f) {
    try {
      f();
    } catch (...) {
      return current_db_error();
    }
    return db_error{db_error::kind::failed, "", "(nothing thrown)"};
  }

  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(ApiKeyStore, creates_lists_and_revokes_keys) {
  auto& c = *conn_;
  EXPECT_FALSE(has_active_admin_key(c));
  auto admin = insert_api_key(c, key("admin", "kv_admin"));
  auto partner = insert_api_key(c, key("partner", "kv_partner", "acme"));
  EXPECT_LT(admin, partner);
  EXPECT_TRUE(has_active_admin_key(c));

  auto keys = list_api_keys(c);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].id, admin);
  EXPECT_EQ(keys[0].role, "admin");
  EXPECT_EQ(keys[0].name, "admin key");
  EXPECT_EQ(keys[0].partner_id, "");
  EXPECT_EQ(keys[0].lookup, "kv_admin");
  EXPECT_EQ(keys[0].secret_hash, std::string("\x00\xff\x10hash", 7));
  EXPECT_TRUE(std::regex_match(
      keys[0].created_at, std::regex{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"}))
      << keys[0].created_at;
  EXPECT_EQ(keys[0].last_used_at, "");
  EXPECT_FALSE(keys[0].revoked);
  EXPECT_EQ(keys[1].partner_id, "acme");

  EXPECT_TRUE(revoke_api_key(c, admin));
  EXPECT_FALSE(revoke_api_key(c, admin)) << "already revoked";
  EXPECT_FALSE(revoke_api_key(c, partner + 100)) << "no such key";
  EXPECT_FALSE(has_active_admin_key(c));
  keys = list_api_keys(c);
  EXPECT_TRUE(keys[0].revoked);
  EXPECT_FALSE(keys[1].revoked);
}

TEST_F(ApiKeyStore, version_moves_on_create_and_revoke_but_not_on_use) {
  auto& c = *conn_;
  auto v0 = api_keys_version(c);
  auto id = insert_api_key(c, key("client", "kv_client"));
  auto v1 = api_keys_version(c);
  EXPECT_GT(v1, v0);

  touch_api_keys(c, {id});
  touch_api_keys(c, {});
  EXPECT_EQ(api_keys_version(c), v1);
  auto keys = list_api_keys(c);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_NE(keys[0].last_used_at, "");

  EXPECT_TRUE(revoke_api_key(c, id));
  EXPECT_GT(api_keys_version(c), v1);
}

TEST_F(ApiKeyStore, touches_many_keys_in_one_call) {
  auto& c = *conn_;
  auto a = insert_api_key(c, key("client", "kv_a"));
  auto b = insert_api_key(c, key("client", "kv_b"));
  insert_api_key(c, key("client", "kv_c"));
  touch_api_keys(c, {a, b});
  auto keys = list_api_keys(c);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_NE(keys[0].last_used_at, "");
  EXPECT_NE(keys[1].last_used_at, "");
  EXPECT_EQ(keys[2].last_used_at, "");
}

TEST_F(ApiKeyStore, refuses_a_duplicate_lookup) {
  auto& c = *conn_;
  insert_api_key(c, key("client", "kv_same"));
  auto e = error_of([&] { insert_api_key(c, key("operator", "kv_same")); });
  EXPECT_EQ(e.what, db_error::kind::conflict) << e.message;
  EXPECT_EQ(e.sqlstate, "23505");
  EXPECT_EQ(list_api_keys(c).size(), 1u);
}

TEST_F(ApiKeyStore, ties_partner_ids_to_the_partner_role) {
  auto& c = *conn_;
  auto no_partner
      = error_of([&] { insert_api_key(c, key("partner", "kv_1")); });
  EXPECT_EQ(no_partner.what, db_error::kind::invalid) << no_partner.message;
  EXPECT_EQ(no_partner.sqlstate, "23514");
  auto stray = error_of([&] { insert_api_key(c, key("client", "kv_2", "p")); });
  EXPECT_EQ(stray.sqlstate, "23514") << stray.message;
  auto role = error_of([&] { insert_api_key(c, key("root", "kv_3")); });
  EXPECT_EQ(role.sqlstate, "23514") << role.message;
  EXPECT_TRUE(list_api_keys(c).empty());
}

} // namespace
} // namespace karvon::persistence
