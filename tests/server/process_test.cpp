// The `karvon` binary as an operator uses it: start, keys, signals, exit
// codes, the embedded PostgreSQL.
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>

#include "tests/support/http_client.hpp"
#include "tests/support/process.hpp"

namespace karvon::testing {
namespace {

using namespace std::chrono_literals;

const std::string binary = KARVON_BINARY;

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::uint16_t port_of(const std::string& line) {
  std::smatch m;
  std::regex re{"http://127\\.0\\.0\\.1:([0-9]+)"};
  if (!std::regex_search(line, m, re))
    return 0;
  return static_cast<std::uint16_t>(std::stoi(m[1]));
}

std::string admin_key_in(const std::string& output) {
  std::smatch m;
  std::regex re{"kv_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"};
  return std::regex_search(output, m, re) ? m[0].str() : std::string{};
}

// A `karvon serve` on its own data folder with the embedded PostgreSQL.
struct served {
  explicit served(const std::string& data_dir,
                  std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{binary,        "serve",    "--data-dir",
                                  data_dir,      "--listen", "127.0.0.1:0",
                                  "--log-level", "info"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = std::make_unique<child_process>(argv);
    auto line = process->wait_for("listening on http://", 60s);
    if (!line)
      ADD_FAILURE() << "serve did not start:\n" << process->output();
    else
      port = port_of(*line);
  }
  std::unique_ptr<child_process> process;
  std::uint16_t port = 0;
};

std::pair<int, std::string> karvon(std::vector<std::string> args) {
  args.insert(args.begin(), binary);
  return run_command(args);
}

TEST(Binary, prints_its_version) {
  auto [code, out] = karvon({"--version"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("karvon 0."), std::string::npos);
}

TEST(Binary, help_covers_every_command) {
  auto [code, out] = karvon({"help"});
  EXPECT_EQ(code, 0) << out;
  for (auto cmd : {"serve", "migrate", "keys", "bench"})
    EXPECT_NE(out.find(cmd), std::string::npos) << cmd;
  for (auto args :
       std::vector<std::vector<std::string>>{{"serve", "--help"},
                                             {"migrate", "--help"},
                                             {"keys", "create", "--help"},
                                             {"keys", "list", "--help"},
                                             {"bench", "--help"},
                                             {"help", "serve"}}) {
    auto [c, o] = karvon(args);
    EXPECT_EQ(c, 0) << args[0] << "\n" << o;
    EXPECT_NE(o.find("--config"), std::string::npos) << args[0] << "\n" << o;
  }
}

TEST(Binary, an_invalid_setting_stops_start_up_with_exit_code_2) {
  auto [code, out] = run_command({binary, "serve"},
                                 {{"KARVON_HTTP_MAX_BODY_BYTES", "lots"}});
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("http.max_body_bytes"), std::string::npos) << out;

  auto dir = fresh_directory("config");
  std::ofstream{dir + "/karvon.toml"} << "[server]\nlisten = "
                                         "\"127.0.0.1:0\"\nthreds = 2\n";
  auto [code2, out2] = karvon({"serve", "--config", dir + "/karvon.toml"});
  EXPECT_EQ(code2, 2);
  EXPECT_NE(out2.find("server.threds"), std::string::npos) << out2;

  auto [code3, out3] = karvon({"serve", "--listen", "nowhere"});
  EXPECT_EQ(code3, 2);
  EXPECT_NE(out3.find("server.listen"), std::string::npos) << out3;
}

TEST(Binary, an_unknown_flag_is_a_usage_error) {
  auto [code, out] = karvon({"serve", "--no-such-flag"});
  EXPECT_EQ(code, 2) << out;
}

TEST(Binary, serve_runs_the_embedded_database_and_stops_it_on_sigterm) {
  auto dir = fresh_directory("serve");
  std::string admin;
  {
    served s{dir};
    ASSERT_NE(s.port, 0);
    admin = admin_key_in(s.process->output());
    ASSERT_FALSE(admin.empty()) << s.process->output();
    EXPECT_EQ(http_request(s.port, "GET", "/health").status, 200);
    EXPECT_EQ(http_request(s.port, "GET", "/health/detailed", {}, bearer(admin))
                  .status,
              200);
    EXPECT_TRUE(exists(dir + "/postgres/postmaster.pid"));
    s.process->signal(SIGTERM);
    auto code = s.process->wait_exit(30s);
    ASSERT_TRUE(code) << s.process->output();
    EXPECT_EQ(*code, 0) << s.process->output();
  }
  EXPECT_FALSE(exists(dir + "/postgres/postmaster.pid"));

  // A second start keeps the data: the same admin key works, and no new
  // key is printed.
  served again{dir};
  ASSERT_NE(again.port, 0);
  EXPECT_EQ(admin_key_in(again.process->output()), "");
  EXPECT_EQ(
      http_request(again.port, "GET", "/health/detailed", {}, bearer(admin))
          .status,
      200);
  again.process->signal(SIGINT);
  EXPECT_EQ(again.process->wait_exit(30s), 0);
}

TEST(Binary, keys_created_and_revoked_from_the_command_line_take_effect) {
  auto dir = fresh_directory("keys");
  served s{dir};
  ASSERT_NE(s.port, 0);
  auto data = "server.data_dir=" + dir;

  auto [code, out] = karvon({"keys", "create", "--role", "operator", "--name",
                             "ops laptop", "--set", data});
  ASSERT_EQ(code, 0) << out;
  auto key = admin_key_in(out);
  ASSERT_FALSE(key.empty()) << out;

  http_reply r;
  for (int i = 0; i < 100; ++i) {
    r = http_request(s.port, "GET", "/health/detailed", {}, bearer(key));
    if (r.status == 200)
      break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(r.status, 200);

  auto [lcode, listed] = karvon({"keys", "list", "--set", data});
  EXPECT_EQ(lcode, 0) << listed;
  EXPECT_NE(listed.find("ops laptop"), std::string::npos) << listed;
  EXPECT_NE(listed.find("operator"), std::string::npos);
  EXPECT_EQ(listed.find(key), std::string::npos); // never the key itself
  EXPECT_EQ(listed.find(key.substr(16)), std::string::npos);

  // The operator key is the second one (the first admin key is id 1).
  std::smatch m;
  std::regex row{"\\n([0-9]+) +operator"};
  ASSERT_TRUE(std::regex_search(listed, m, row)) << listed;
  auto [rcode, rout] = karvon({"keys", "revoke", m[1].str(), "--set", data});
  EXPECT_EQ(rcode, 0) << rout;
  auto revoked = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    r = http_request(s.port, "GET", "/health/detailed", {}, bearer(key));
    if (r.status == 401)
      break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(r.status, 401);
  EXPECT_LT(std::chrono::steady_clock::now() - revoked, 1s);

  auto [bad, bad_out]
      = karvon({"keys", "create", "--role", "root", "--set", data});
  EXPECT_EQ(bad, 2) << bad_out;
  auto [nop, nop_out] = karvon({"keys", "create", "--role", "partner",
                                "--partner", "ghost", "--set", data});
  EXPECT_EQ(nop, 1) << nop_out;
  EXPECT_NE(nop_out.find("ghost"), std::string::npos);

  s.process->signal(SIGTERM);
  EXPECT_EQ(s.process->wait_exit(30s), 0);
}

TEST(Binary, keys_work_without_a_running_server_and_leave_none_behind) {
  auto dir = fresh_directory("keys-offline");
  auto data = "server.data_dir=" + dir;
  auto [code, out]
      = karvon({"keys", "create", "--role", "client", "--set", data});
  ASSERT_EQ(code, 0) << out;
  EXPECT_FALSE(exists(dir + "/postgres/postmaster.pid"));
  auto [lcode, listed] = karvon({"keys", "list", "--set", data});
  EXPECT_EQ(lcode, 0);
  EXPECT_NE(listed.find("client"), std::string::npos) << listed;
  auto [mcode, mout] = karvon({"migrate", "--set", data});
  EXPECT_EQ(mcode, 0) << mout;
  EXPECT_FALSE(exists(dir + "/postgres/postmaster.pid"));
}

TEST(Binary, a_server_killed_hard_comes_back_on_the_same_data) {
  auto dir = fresh_directory("crash");
  std::string admin;
  {
    served s{dir};
    ASSERT_NE(s.port, 0);
    admin = admin_key_in(s.process->output());
    s.process->signal(SIGKILL);
    s.process->wait_exit(10s);
  }
  // The embedded PostgreSQL outlived its parent, or left a stale pid file;
  // either way the next start must serve.
  served again{dir};
  ASSERT_NE(again.port, 0) << again.process->output();
  EXPECT_EQ(
      http_request(again.port, "GET", "/health/detailed", {}, bearer(admin))
          .status,
      200);
  again.process->signal(SIGTERM);
  EXPECT_EQ(again.process->wait_exit(30s), 0);
  EXPECT_FALSE(exists(dir + "/postgres/postmaster.pid"));
}

TEST(Binary, a_second_serve_on_the_same_data_folder_is_refused_clearly) {
  auto dir = fresh_directory("twice");
  served first{dir};
  ASSERT_NE(first.port, 0);
  auto [code, out]
      = karvon({"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find(dir), std::string::npos) << out;
  EXPECT_EQ(http_request(first.port, "GET", "/health").status, 200);
  first.process->signal(SIGTERM);
  EXPECT_EQ(first.process->wait_exit(30s), 0);
}

TEST(Binary, demo_seeds_a_partner_and_keys_for_it) {
  auto dir = fresh_directory("demo");
  served s{dir, {"--demo"}};
  ASSERT_NE(s.port, 0);
  auto out = s.process->output();
  std::smatch m;
  std::regex partner_key{"partner: (kv_[0-9a-f]{12}_[A-Za-z0-9_-]{43})"};
  ASSERT_TRUE(std::regex_search(out, m, partner_key)) << out;
  auto r = http_request(s.port, "GET", "/api/v1/partners/demo", {},
                        bearer(m[1].str()));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("Demo Shop"), std::string::npos);
  // And a knowledge base in three languages, readable with the admin key.
  std::regex admin_key{"(kv_[0-9a-f]{12}_[A-Za-z0-9_-]{43})"};
  ASSERT_TRUE(std::regex_search(out, m, admin_key)) << out;
  auto kb = nlohmann::json::parse(http_request(s.port, "GET",
                                               "/api/v1/kb/documents?limit=100",
                                               {}, bearer(m[1].str()))
                                      .body,
                                  nullptr, false);
  ASSERT_TRUE(kb.is_object());
  EXPECT_EQ(kb["documents"].size(), 18u);
  s.process->signal(SIGTERM);
  EXPECT_EQ(s.process->wait_exit(30s), 0);
}

TEST(Binary, json_logs_are_one_object_a_line_with_a_line_per_request) {
  auto dir = fresh_directory("jsonlog");
  served s{dir, {"--log-format", "json", "--log-level", "debug"}};
  ASSERT_NE(s.port, 0);
  ASSERT_EQ(http_request(s.port, "GET", "/health?probe=1").status, 200);
  auto line = s.process->wait_for("route=/health status=200", 5s);
  ASSERT_TRUE(line) << s.process->output();
  s.process->signal(SIGTERM);
  EXPECT_EQ(s.process->wait_exit(30s), 0);
  std::istringstream lines{s.process->output()};
  std::string l;
  int objects = 0;
  while (std::getline(lines, l)) {
    if (l.empty() || l[0] != '{')
      continue; // stdout's own lines: where it listens, the first key
    auto j = nlohmann::json::parse(l, nullptr, false);
    ASSERT_TRUE(j.is_object()) << l;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg"))
        << l;
    ++objects;
  }
  EXPECT_GT(objects, 3);
}

TEST(Binary, a_port_in_use_is_a_clear_error) {
  auto dir = fresh_directory("port");
  served first{dir};
  ASSERT_NE(first.port, 0);
  auto other = fresh_directory("port2");
  auto [code, out] = karvon({"serve", "--data-dir", other, "--listen",
                             "127.0.0.1:" + std::to_string(first.port)});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot listen"), std::string::npos) << out;
  EXPECT_FALSE(exists(other + "/postgres/postmaster.pid"));
  first.process->signal(SIGTERM);
  first.process->wait_exit(30s);
}

} // namespace
} // namespace karvon::testing
