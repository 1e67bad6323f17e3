#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/settings.hpp"
#include "persistence/database.hpp"
#include "persistence/embedded_postgres.hpp"
#include "persistence/errors.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::persistence {
namespace {

namespace fs = std::filesystem;
using testing::query_value;
using testing::scratch_dir;
using testing::start_embedded;

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

bool alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

pid_t postmaster_pid(const std::string& pgdata) {
  std::ifstream in{fs::path(pgdata) / "postmaster.pid"};
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

/// A pid that no process has: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0)
    ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

/// A live process that is not PostgreSQL, as a reused pid would be. It
/// runs as the server's user: PostgreSQL itself takes a pid it may not
/// signal for stale, so only a same-user process tests our check.
pid_t start_sleep() {
  struct passwd* pw = ::geteuid() == 0 ? ::getpwnam("postgres") : nullptr;
  uid_t uid = pw ? pw->pw_uid : ::geteuid();
  gid_t gid = pw ? pw->pw_gid : ::getegid();
  pid_t pid = ::fork();
  if (pid == 0) {
    if (pw && (::setgid(gid) != 0 || ::setuid(uid) != 0))
      ::_exit(126);
    ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out{p, std::ios::trunc};
  out << text;
}

/// A lock file in PostgreSQL's layout naming `pid`, as a crash leaves it.
std::string lock_file_text(pid_t pid, const std::string& pgdata,
                           const std::string& socket_dir) {
  return std::to_string(pid) + "\n" + pgdata + "\n1700000000\n5432\n"
         + socket_dir + "\n\n  5432001     65538\nready   \n";
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const startup_error& e) {
    return e.what();
  }
  return "(no startup_error)";
}

TEST(EmbeddedPostgres, initialises_a_folder_once_and_keeps_its_data) {
  scratch_dir dir{"first-start"};
  std::string pgdata;
  {
    auto pg = start_embedded(dir.path());
    pgdata = pg->data_folder();
    EXPECT_TRUE(pg->started_here());
    EXPECT_EQ(pgdata, (fs::canonical(dir.path()) / "postgres").string());
    EXPECT_TRUE(path_exists(fs::path(pgdata) / "PG_VERSION"));
    EXPECT_EQ(pg->socket_dir(), pgdata);
    testing::execute(pg->connection_string(),
                     "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");
  }
  EXPECT_FALSE(path_exists(fs::path(pgdata) / "postmaster.pid"));
  auto version_file_time = fs::last_write_time(fs::path(pgdata) / "PG_VERSION");

  auto pg = start_embedded(dir.path());
  EXPECT_TRUE(pg->started_here());
  EXPECT_EQ(fs::last_write_time(fs::path(pgdata) / "PG_VERSION"),
            version_file_time);
  EXPECT_EQ(query_value(pg->connection_string(), "SELECT x FROM kept"), "42");
  EXPECT_EQ(query_value(pg->connection_string(), "SELECT current_database()"),
            "karvon");
}

TEST(EmbeddedPostgres, listens_on_no_tcp_port_and_keeps_durability_on) {
  auto conninfo = testing::test_server_conninfo();
  EXPECT_EQ(query_value(conninfo, "SHOW listen_addresses"), "");
  EXPECT_EQ(query_value(conninfo, "SHOW fsync"), "on");
  EXPECT_EQ(query_value(conninfo, "SHOW synchronous_commit"), "on");
  EXPECT_EQ(query_value(conninfo, "SHOW unix_socket_permissions"), "0700");
}

TEST(EmbeddedPostgres, starts_over_a_stale_postmaster_pid) {
  scratch_dir dir{"stale"};
  std::string pgdata, socket_dir;
  {
    auto pg = start_embedded(dir.path());
    pgdata = pg->data_folder();
    socket_dir = pg->socket_dir();
  }
  auto pid_file = fs::path(pgdata) / "postmaster.pid";
  auto socket_lock = fs::path(socket_dir) / ".s.PGSQL.5432.lock";

  // The pid of a process that is gone, in both lock files.
  pid_t gone = dead_pid();
  write_file(pid_file, lock_file_text(gone, pgdata, socket_dir));
  write_file(socket_lock, lock_file_text(gone, pgdata, socket_dir));
  {
    auto pg = start_embedded(dir.path());
    EXPECT_TRUE(pg->started_here());
    EXPECT_NE(postmaster_pid(pgdata), gone);
    EXPECT_EQ(query_value(pg->connection_string(), "SELECT 1"), "1");
  }

  // The pid reused by a live process that is not PostgreSQL.
  pid_t other = start_sleep();
  write_file(pid_file, lock_file_text(other, pgdata, socket_dir));
  write_file(socket_lock, lock_file_text(other, pgdata, socket_dir));
  {
    auto pg = start_embedded(dir.path());
    EXPECT_TRUE(pg->started_here());
    EXPECT_EQ(query_value(pg->connection_string(), "SELECT 1"), "1");
  }
  EXPECT_TRUE(alive(other)) << "the unrelated process must be left alone";
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
}

TEST(EmbeddedPostgres, restarts_after_the_server_was_killed) {
  scratch_dir dir{"killed"};
  auto pg = start_embedded(dir.path());
  std::string pgdata = pg->data_folder();
  pid_t pid = postmaster_pid(pgdata);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  pg.reset(); // its pg_ctl stop finds no server
  ASSERT_TRUE(path_exists(fs::path(pgdata) / "postmaster.pid"));

  auto t0 = std::chrono::steady_clock::now();
  pg = start_embedded(dir.path());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds{20});
  EXPECT_TRUE(pg->started_here());
  EXPECT_NE(postmaster_pid(pgdata), pid);
  EXPECT_EQ(query_value(pg->connection_string(), "SELECT 1"), "1");
}

TEST(EmbeddedPostgres, guests_stop_only_a_server_they_started) {
  scratch_dir dir{"guests"};
  config::settings s;
  s.server.data_dir = dir.path();
  std::string pgdata;
  {
    // No owner: the guest starts the server and stops it when done.
    database db{s, ownership::guest};
    EXPECT_TRUE(db.embedded());
    EXPECT_EQ(query_value(db.conninfo(), "SELECT current_database()"),
              "karvon");
    pgdata = (fs::canonical(dir.path()) / "postgres").string();
    EXPECT_TRUE(path_exists(fs::path(pgdata) / "postmaster.pid"));
  }
  EXPECT_FALSE(path_exists(fs::path(pgdata) / "postmaster.pid"));

  auto owner = start_embedded(dir.path());
  {
    auto guest = start_embedded(dir.path(), ownership::guest);
    EXPECT_FALSE(guest->started_here());
    EXPECT_FALSE(guest->stops_server());
    EXPECT_EQ(guest->connection_string(), owner->connection_string());
    EXPECT_EQ(query_value(guest->connection_string(), "SELECT 1"), "1");
    guest->stop();
  }
  EXPECT_EQ(query_value(owner->connection_string(), "SELECT 1"), "1");

  // A second owner is refused, naming the process that holds the lock.
  auto t0 = std::chrono::steady_clock::now();
  auto message = error_of([&] { start_embedded(dir.path()); });
  EXPECT_NE(message.find("pid " + std::to_string(::getpid())),
            std::string::npos)
      << message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds{3});
  EXPECT_EQ(query_value(owner->connection_string(), "SELECT 1"), "1");
}

TEST(EmbeddedPostgres, adopts_a_server_left_running_by_a_crashed_owner) {
  scratch_dir dir{"adopt"};
  // The owner runs in a child that dies without cleaning up, as `karvon
  // serve` killed with SIGKILL would: its server keeps running.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      auto pg = start_embedded(dir.path());
      ::_exit(pg->started_here() ? 0 : 2);
    } catch (...) {
      ::_exit(3);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::string pgdata = (fs::canonical(dir.path()) / "postgres").string();
  pid_t server = postmaster_pid(pgdata);
  ASSERT_TRUE(alive(server));

  {
    // A guest uses it and, not having started it, leaves it running.
    auto guest = start_embedded(dir.path(), ownership::guest);
    EXPECT_FALSE(guest->started_here());
    EXPECT_FALSE(guest->stops_server());
    EXPECT_EQ(query_value(guest->connection_string(), "SELECT 1"), "1");
  }
  EXPECT_TRUE(alive(server));

  // The next owner adopts it rather than starting a second, and stops it.
  auto owner = start_embedded(dir.path());
  EXPECT_FALSE(owner->started_here());
  EXPECT_TRUE(owner->stops_server());
  EXPECT_EQ(postmaster_pid(pgdata), server);
  EXPECT_EQ(query_value(owner->connection_string(), "SELECT 1"), "1");
  owner->stop();
  EXPECT_FALSE(path_exists(fs::path(pgdata) / "postmaster.pid"));
}

TEST(EmbeddedPostgres, refuses_a_folder_that_is_not_a_data_folder) {
  scratch_dir dir{"not-pg"};
  auto pgdata = fs::canonical(dir.path()) / "postgres";
  fs::create_directories(pgdata);
  write_file(pgdata / "notes.txt", "mine");
  auto message = error_of([&] { start_embedded(dir.path()); });
  EXPECT_NE(message.find(pgdata.string()), std::string::npos) << message;
  EXPECT_NE(message.find("not a PostgreSQL data folder"), std::string::npos)
      << message;
  EXPECT_TRUE(path_exists(pgdata / "notes.txt"));

  fs::remove(pgdata / "notes.txt");
  write_file(pgdata / "PG_VERSION", "14\n");
  message = error_of([&] { start_embedded(dir.path()); });
  EXPECT_NE(message.find("PostgreSQL 14"), std::string::npos) << message;
}

TEST(EmbeddedPostgres, reaches_a_folder_under_a_parent_only_root_may_enter) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "only root runs the server as the postgres user";
  scratch_dir dir{"root-only"};
  fs::path parent = fs::path(dir.path()) / "private";
  fs::create_directories(parent);
  ASSERT_EQ(::chmod(parent.c_str(), 0700), 0);

  {
    auto pg = start_embedded((parent / "var").string());
    EXPECT_EQ(query_value(pg->connection_string(), "SELECT 1"), "1");
  }
  auto acl = [](const fs::path& p) {
    std::string out;
    FILE* f = ::popen(("getfacl -p '" + p.string() + "' 2>&1").c_str(), "r");
    char buf[512];
    while (f && std::fgets(buf, sizeof buf, f))
      out += buf;
    if (f)
      ::pclose(f);
    return out;
  };
  EXPECT_NE(acl(parent).find("user:postgres:--x"), std::string::npos)
      << acl(parent);
  EXPECT_EQ(acl(dir.path()).find("user:postgres"), std::string::npos)
      << "only the blocked directory gets an entry";
  struct stat st;
  ASSERT_EQ(::stat(parent.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0007, 0u) << "others still may not enter";

  // Second start: nothing more to grant, and it still works.
  auto pg = start_embedded((parent / "var").string());
  EXPECT_EQ(query_value(pg->connection_string(), "SELECT 1"), "1");
}

TEST(EmbeddedPostgres, moves_the_socket_to_tmp_when_its_path_is_too_long) {
  scratch_dir dir{"long"};
  fs::path data_dir = fs::path(dir.path()) / std::string(110, 'd');
  auto pg = start_embedded(data_dir.string());
  const std::string sock = pg->socket_dir();
  EXPECT_EQ(sock.rfind("/tmp/karvon-pg-", 0), 0u) << sock;
  EXPECT_LE(sock.size() + sizeof "/.s.PGSQL.5432" - 1, 107u);
  EXPECT_EQ(
      query_value(pg->connection_string(), "SHOW unix_socket_directories"),
      sock);
  struct stat st;
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  {
    // A guest finds the same place.
    auto guest = start_embedded(data_dir.string(), ownership::guest);
    EXPECT_EQ(guest->socket_dir(), sock);
  }
  pg.reset();
  std::error_code ec;
  fs::remove_all(sock, ec);
}

TEST(Database, uses_the_configured_url_and_starts_nothing) {
  scratch_dir dir{"url"};
  config::settings s;
  s.server.data_dir = (fs::path(dir.path()) / "var").string();
  s.database.url = "postgresql://someone@db.example:5432/karvon";
  database db{s, ownership::owner};
  EXPECT_FALSE(db.embedded());
  EXPECT_EQ(db.conninfo(), s.database.url);
  EXPECT_FALSE(path_exists(s.server.data_dir));
}

} // namespace
} // namespace karvon::persistence
