#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "persistence/errors.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

using testing::fresh_database;
using testing::query_value;

TEST(Migrations, builtin_ones_are_named_by_their_version_in_order) {
  const auto& all = builtin_migrations();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().name, "0001_init.sql");
  for (std::size_t i = 0; i < all.size(); ++i) {
    char prefix[8];
    std::snprintf(prefix, sizeof prefix, "%04d_", all[i].version);
    EXPECT_EQ(all[i].name.rfind(prefix, 0), 0u) << all[i].name;
    EXPECT_NE(all[i].sql.find_first_not_of(" \n"), std::string::npos);
    if (i > 0) {
      EXPECT_LT(all[i - 1].version, all[i].version);
    }
  }
  EXPECT_NE(all.front().sql.find("CREATE TABLE api_keys"), std::string::npos);
}

TEST(Migrations, applies_each_builtin_migration_once) {
  auto db = fresh_database();
  const int n = static_cast<int>(builtin_migrations().size());
  EXPECT_EQ(migrate(db), n);
  EXPECT_EQ(migrate(db), 0);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM schema_migrations"),
            std::to_string(n));
  EXPECT_EQ(query_value(db, "SELECT name FROM schema_migrations "
                            "WHERE version = 1"),
            "0001_init.sql");
  EXPECT_EQ(query_value(db, "SELECT to_regclass('api_keys') IS NOT NULL"), "t");
}

TEST(Migrations, two_nodes_migrating_at_once_apply_each_migration_once) {
  auto db = fresh_database();
  // The first is slow, so both threads are inside migrate() together;
  // without the lock the second would fail on "relation a already exists".
  std::vector<migration> ms{
      {1, "0001_a.sql", "CREATE TABLE a (x int); SELECT pg_sleep(0.3);"},
      {2, "0002_b.sql", "CREATE TABLE b (x int);"},
  };
  std::atomic<int> applied{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> nodes;
  for (int i = 0; i < 2; ++i)
    nodes.emplace_back([&] {
      try {
        applied += migrate(db, ms);
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        ++failures;
      }
    });
  for (auto& t : nodes)
    t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(applied, 2);
  EXPECT_EQ(query_value(db, "SELECT count(*) FROM schema_migrations"), "2");
}

TEST(Migrations, a_failing_one_names_its_file_and_leaves_nothing_behind) {
  auto db = fresh_database();
  std::vector<migration> ms{
      {1, "0001_a.sql", "CREATE TABLE a (x int);"},
      {2, "0002_x.sql",
       "CREATE TABLE b (x int); INSERT INTO missing VALUES (1);"},
      {3, "0003_c.sql", "CREATE TABLE c (x int);"},
  };
  std::string message;
  try {
    migrate(db, ms);
  } catch (const startup_error& e) {
    message = e.what();
  }
  EXPECT_EQ(message.rfind("migration 0002_x.sql failed: ", 0), 0u) << message;
  EXPECT_NE(message.find("\"missing\" does not exist"), std::string::npos)
      << message;
  EXPECT_EQ(query_value(db, "SELECT to_regclass('a') IS NOT NULL"), "t");
  EXPECT_EQ(query_value(db, "SELECT to_regclass('b') IS NULL"), "t");
  EXPECT_EQ(query_value(db, "SELECT to_regclass('c') IS NULL"), "t");
  EXPECT_EQ(query_value(db, "SELECT string_agg(version::text, ',') "
                            "FROM schema_migrations"),
            "1");
}

TEST(Migrations, refuses_a_schema_newer_than_the_binary) {
  auto db = fresh_database();
  migrate(db);
  testing::execute(db, "INSERT INTO schema_migrations (version, name) "
                       "VALUES (9999, '9999_future.sql')");
  std::string message;
  try {
    migrate(db);
  } catch (const startup_error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("older than the schema"), std::string::npos)
      << message;
  EXPECT_NE(message.find("9999"), std::string::npos) << message;
}

} // namespace
} // namespace karvon::persistence
