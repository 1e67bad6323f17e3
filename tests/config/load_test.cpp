#include <algorithm>
#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>
#include <unistd.h>

#include "config/load.hpp"

namespace karvon::config {
namespace {

// A TOML file in the temp folder, removed when the test ends.
class temp_file {
public:
  explicit temp_file(const std::string& text) {
    char name[] = "/tmp/karvon-config-XXXXXX.toml";
    int fd = mkstemps(name, 5);
    path_ = name;
    ::close(fd);
    std::ofstream{path_} << text;
  }
  ~temp_file() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

load_result load_text(const std::string& toml, std::vector<name_value> env = {},
                      std::vector<name_value> overrides = {}) {
  temp_file f{toml};
  return load({f.path(), std::move(env), std::move(overrides)});
}

TEST(ConfigLoad, defaults_are_the_documented_ones) {
  auto r = load({});
  ASSERT_FALSE(r.error) << r.error->describe();
  auto& s = r.value;
  EXPECT_EQ(s.server.listen, "127.0.0.1:8080");
  EXPECT_EQ(s.server.data_dir, "./var");
  EXPECT_EQ(s.server.threads, 0);
  EXPECT_EQ(s.database.url, "");
  EXPECT_EQ(s.database.pool_size, 8);
  EXPECT_EQ(s.database.batch_max_rows, 1000);
  EXPECT_EQ(s.database.batch_max_delay_ms, 5);
  EXPECT_EQ(s.http.max_body_bytes, 1048576);
  EXPECT_EQ(s.http.anon_rate_per_min, 20);
  EXPECT_EQ(s.http.key_rate_per_min, 100);
  EXPECT_EQ(s.http.burst_per_s, 10);
  EXPECT_EQ(s.http.client_key_rate_per_s, 1000);
  EXPECT_FALSE(s.chat.allow_anonymous);
  EXPECT_EQ(s.chat.languages, (std::vector<std::string>{"uz", "ru", "en"}));
  EXPECT_EQ(s.llm.provider, "ollama");
  EXPECT_EQ(s.llm.model, "qwen2.5:7b-instruct");
  EXPECT_EQ(s.llm.max_concurrency, 4);
  EXPECT_EQ(s.llm.max_queue, 10000);
  EXPECT_EQ(s.llm.timeout_ms, 60000);
  EXPECT_EQ(s.llm.cache_ttl_s, 86400);
  EXPECT_DOUBLE_EQ(s.geocoder.rate_per_s, 1.0);
  EXPECT_EQ(s.geocoder.user_agent, "karvon");
  EXPECT_TRUE(s.bots.empty());
  EXPECT_EQ(s.cluster.shards, 1024);
  EXPECT_EQ(s.cluster.heartbeat_ms, 1000);
  EXPECT_EQ(s.cluster.failure_timeout_ms, 10000);
}

TEST(ConfigLoad, an_empty_file_is_valid) {
  auto r = load_text("");
  EXPECT_FALSE(r.error);
}

TEST(ConfigLoad, every_key_of_the_documented_file_is_accepted) {
  // The configuration file of API.md, verbatim in its keys.
  auto r = load_text(R"(
[server]
listen = "127.0.0.1:8080"
data_dir = "./var"
node_id = ""
threads = 0

[database]
url = ""
pool_size = 8
batch_max_rows = 1000
batch_max_delay_ms = 5

[http]
max_body_bytes = 1048576
anon_rate_per_min = 20
key_rate_per_min = 100
burst_per_s = 10
client_key_rate_per_s = 1000

[chat]
allow_anonymous = false
languages = ["uz", "ru", "en"]

[llm]
provider = "ollama"
url = ""
api_key = ""
model = "qwen2.5:7b-instruct"
cheap_model = ""
max_concurrency = 4
max_queue = 10000
timeout_ms = 60000
cache_ttl_s = 86400

[geocoder]
url = ""
rate_per_s = 1.0
user_agent = "karvon"

[[bots]]
name = "shopbot"
token = ""
api_base = "https://api.telegram.org"
mode = "polling"
secret_token = ""
global_per_s = 30
group_per_min = 20

[cluster]
shards = 1024
seeds = []
heartbeat_ms = 1000
failure_timeout_ms = 10000
)");
  ASSERT_FALSE(r.error) << r.error->describe();
  ASSERT_EQ(r.value.bots.size(), 1u);
  EXPECT_EQ(r.value.bots[0].name, "shopbot");
}

TEST(ConfigLoad, the_file_then_the_environment_then_flags_win_in_order) {
  auto r = load_text("[http]\nburst_per_s = 11\nkey_rate_per_min = 50\n"
                     "anon_rate_per_min = 7\n",
                     {{"KARVON_HTTP_BURST_PER_S", "12"},
                      {"KARVON_HTTP_KEY_RATE_PER_MIN", "60"}},
                     {{"http.burst_per_s", "13"}});
  ASSERT_FALSE(r.error) << r.error->describe();
  EXPECT_EQ(r.value.http.anon_rate_per_min, 7); // file
  EXPECT_EQ(r.value.http.key_rate_per_min, 60); // environment over file
  EXPECT_EQ(r.value.http.burst_per_s, 13);      // flag over both
}

TEST(ConfigLoad, an_unknown_key_in_the_file_is_named) {
  auto r = load_text("[http]\nmax_body_byte = 10\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "http.max_body_byte");
  EXPECT_NE(r.error->describe().find("unknown key"), std::string::npos);
  EXPECT_NE(r.error->source.find(":2"), std::string::npos);
}

TEST(ConfigLoad, an_unknown_section_is_named) {
  auto r = load_text("[htttp]\nport = 1\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "htttp");
}

TEST(ConfigLoad, a_value_of_the_wrong_type_names_the_key) {
  auto r = load_text("[database]\npool_size = \"eight\"\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "database.pool_size");
  EXPECT_NE(r.error->message.find("integer"), std::string::npos);
}

TEST(ConfigLoad, a_value_out_of_range_names_the_key_and_the_range) {
  auto r = load_text("[database]\npool_size = 0\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "database.pool_size");
  EXPECT_NE(r.error->message.find("from 1"), std::string::npos);
}

TEST(ConfigLoad, malformed_toml_names_the_line) {
  auto r = load_text("[server]\nlisten = \n");
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->source.find(":2"), std::string::npos)
      << r.error->describe();
}

TEST(ConfigLoad, a_missing_file_is_an_error) {
  auto r = load({"/nonexistent/karvon.toml", {}, {}});
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->describe().find("/nonexistent/karvon.toml"),
            std::string::npos);
}

TEST(ConfigLoad, an_invalid_environment_value_names_the_variable) {
  auto r = load({"", {{"KARVON_HTTP_MAX_BODY_BYTES", "lots"}}, {}});
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "http.max_body_bytes");
  EXPECT_EQ(r.error->source, "KARVON_HTTP_MAX_BODY_BYTES");
}

TEST(ConfigLoad, an_unknown_karvon_environment_variable_is_an_error) {
  auto r = load({"", {{"KARVON_DATABSE_URL", "postgresql://x/y"}}, {}});
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "KARVON_DATABSE_URL");
}

TEST(ConfigLoad, secrets_come_from_the_environment) {
  auto r = load({"",
                 {{"KARVON_DATABASE_URL", "postgresql://db.example/karvon"},
                  {"KARVON_LLM_API_KEY", "sk-test"}},
                 {}});
  ASSERT_FALSE(r.error) << r.error->describe();
  EXPECT_EQ(r.value.database.url, "postgresql://db.example/karvon");
  EXPECT_EQ(r.value.llm.api_key, "sk-test");
}

TEST(ConfigLoad,
     a_bot_takes_its_token_from_the_environment_if_the_file_has_none) {
  auto r = load_text("[[bots]]\nname = \"shop_bot\"\n[[bots]]\nname = "
                     "\"other\"\ntoken = \"from-file\"\n",
                     {{"KARVON_BOT_SHOP_BOT_TOKEN", "123:abc"},
                      {"KARVON_BOT_OTHER_TOKEN", "ignored"}});
  ASSERT_FALSE(r.error) << r.error->describe();
  EXPECT_EQ(r.value.bots[0].token, "123:abc");
  EXPECT_EQ(r.value.bots[1].token, "from-file");
}

TEST(ConfigLoad, a_bot_variable_for_no_configured_bot_is_an_error) {
  auto r = load({"", {{"KARVON_BOT_GHOST_TOKEN", "1:x"}}, {}});
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "KARVON_BOT_GHOST_TOKEN");
}

TEST(ConfigLoad, bots_need_unique_valid_names_and_known_modes) {
  EXPECT_TRUE(
      load_text("[[bots]]\nname = \"a\"\n[[bots]]\nname = \"a\"\n").error);
  EXPECT_TRUE(load_text("[[bots]]\nname = \"Shop Bot\"\n").error);
  EXPECT_TRUE(load_text("[[bots]]\ntoken = \"x\"\n").error);
  auto r = load_text("[[bots]]\nname = \"a\"\nmode = \"push\"\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "bots[0].mode");
}

TEST(ConfigLoad, listen_must_be_host_and_port) {
  for (auto bad : {"8080", "localhost", "127.0.0.1:99999", ":80", "h:p"}) {
    auto r = load({"", {}, {{"server.listen", bad}}});
    ASSERT_TRUE(r.error) << bad;
    EXPECT_EQ(r.error->key, "server.listen");
  }
  auto ok = load({"", {}, {{"server.listen", "[::1]:0"}}});
  EXPECT_FALSE(ok.error);
}

TEST(ConfigLoad, list_values_from_the_environment_are_comma_separated) {
  auto r = load({"",
                 {{"KARVON_CLUSTER_SEEDS", "10.0.0.1:9080, 10.0.0.2:9080"},
                  {"KARVON_CHAT_LANGUAGES", "ru,en"}},
                 {}});
  ASSERT_FALSE(r.error) << r.error->describe();
  EXPECT_EQ(r.value.cluster.seeds,
            (std::vector<std::string>{"10.0.0.1:9080", "10.0.0.2:9080"}));
  EXPECT_EQ(r.value.chat.languages, (std::vector<std::string>{"ru", "en"}));
}

TEST(ConfigLoad, only_the_three_languages_are_known) {
  auto r = load_text("[chat]\nlanguages = [\"uz\", \"de\"]\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "chat.languages");
}

TEST(ConfigLoad, booleans_accept_the_usual_spellings_from_text) {
  auto r = load({"", {{"KARVON_CHAT_ALLOW_ANONYMOUS", "yes"}}, {}});
  ASSERT_FALSE(r.error);
  EXPECT_TRUE(r.value.chat.allow_anonymous);
  EXPECT_TRUE(load({"", {{"KARVON_CHAT_ALLOW_ANONYMOUS", "maybe"}}, {}}).error);
}

TEST(ConfigLoad, the_failure_timeout_must_exceed_the_heartbeat) {
  auto r = load_text("[cluster]\nheartbeat_ms = 5000\nfailure_timeout_ms = "
                     "5000\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "cluster.failure_timeout_ms");
}

TEST(ConfigLoad, a_lease_must_outlast_a_heartbeat_and_its_safety_margin) {
  auto r = load_text("[cluster]\nheartbeat_ms = 1000\nlease_ms = 1200\n");
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "cluster.lease_ms");
  r = load_text("[cluster]\nheartbeat_ms = 200\nlease_ms = 2000\n");
  ASSERT_FALSE(r.error) << r.error->message;
  EXPECT_EQ(r.value.cluster.lease_ms, 2000);
}

TEST(ConfigLoad, an_override_of_an_unknown_key_is_an_error) {
  auto r = load({"", {}, {{"server.port", "80"}}});
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->key, "server.port");
}

TEST(ConfigLoad, a_database_url_must_look_like_one) {
  EXPECT_FALSE(
      load({"", {{"KARVON_DATABASE_URL", "host=/tmp dbname=k"}}, {}}).error);
  EXPECT_TRUE(load({"", {{"KARVON_DATABASE_URL", "mysql://x"}}, {}}).error);
}

TEST(ConfigLoad, the_node_id_defaults_to_host_and_port) {
  settings s;
  EXPECT_EQ(effective_node_id(s), "127.0.0.1-8080");
  s.server.node_id = "edge-1";
  EXPECT_EQ(effective_node_id(s), "edge-1");
}

TEST(ConfigLoad, the_cluster_listens_a_thousand_ports_above_http_by_default) {
  settings s;
  auto hp = cluster_listen(s);
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 9080);
  s.server.listen = "0.0.0.0:0";
  EXPECT_EQ(cluster_listen(s).port, 0); // any free port, as HTTP
  s.cluster.listen = "10.0.0.5:7000";
  EXPECT_EQ(cluster_listen(s).host, "10.0.0.5");
  EXPECT_EQ(cluster_listen(s).port, 7000);
  EXPECT_TRUE(load({"", {{"KARVON_CLUSTER_LISTEN", "nope"}}, {}}).error);
}

TEST(ConfigLoad, known_keys_cover_every_section) {
  auto keys = known_keys();
  for (auto k :
       {"server.listen", "database.url", "http.max_body_bytes",
        "chat.languages", "llm.cheap_model", "geocoder.user_agent",
        "bots.secret_token", "cluster.seeds", "metrics.public", "log.format"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
}

} // namespace
} // namespace karvon::config
