#include <set>

#include <gtest/gtest.h>

#include "actors/api_keys.hpp"

namespace karvon::actors {
namespace {

TEST(ApiKeys, a_generated_key_has_the_documented_format) {
  auto key = generate_api_key();
  EXPECT_EQ(key.text.size(), 3u + 12 + 1 + 43);
  EXPECT_EQ(key.text.substr(0, 3), "kv_");
  auto parts = split_api_key(key.text);
  ASSERT_TRUE(parts);
  EXPECT_EQ(parts->lookup, key.lookup);
  EXPECT_EQ(hash_secret(parts->secret), key.secret_hash);
}

TEST(ApiKeys, keys_are_unique_and_the_stored_hash_is_not_the_secret) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto key = generate_api_key();
    EXPECT_TRUE(seen.insert(key.text).second);
    EXPECT_EQ(key.secret_hash.size(), 32u);
    EXPECT_EQ(key.text.find(key.secret_hash), std::string::npos);
  }
}

TEST(ApiKeys, malformed_keys_are_refused_before_any_lookup) {
  auto good = generate_api_key().text;
  EXPECT_FALSE(split_api_key(""));
  EXPECT_FALSE(split_api_key("kv_"));
  EXPECT_FALSE(split_api_key(good.substr(1)));
  EXPECT_FALSE(split_api_key(good + "x"));
  auto wrong_prefix = good;
  wrong_prefix[0] = 'K';
  EXPECT_FALSE(split_api_key(wrong_prefix));
  auto not_hex = good;
  not_hex[3] = 'z';
  EXPECT_FALSE(split_api_key(not_hex));
  auto bad_secret = good;
  bad_secret[20] = '+';
  EXPECT_FALSE(split_api_key(bad_secret));
}

TEST(ApiKeys, roles_round_trip_through_their_names) {
  for (auto r : {role::admin, role::operator_, role::partner, role::client})
    EXPECT_EQ(parse_role(to_string(r)), r);
  EXPECT_FALSE(parse_role("root"));
  EXPECT_EQ(std::string{to_string(role::operator_)}, "operator");
}

} // namespace
} // namespace karvon::actors
