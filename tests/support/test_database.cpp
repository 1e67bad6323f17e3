#include "tests/support/test_database.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <signal.h>
#include <unistd.h>

namespace karvon::testing {

namespace {

namespace fs = std::filesystem;

fs::path work_dir() {
  return fs::path(KARVON_TEST_WORK_DIR);
}

bool process_alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
}

/// Stops, with an immediate shutdown, every PostgreSQL server whose data
/// folder lies under `root`: a test that failed half-way, or a test process
/// that died, must not leave servers running.
void stop_servers_under(const fs::path& root) {
  std::error_code ec;
  std::vector<pid_t> stopping;
  for (fs::recursive_directory_iterator
           it(root, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (it.depth() > 4) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->path().filename() != "postmaster.pid")
      continue;
    std::ifstream in{it->path()};
    long pid = 0;
    in >> pid;
    char cwd[4096];
    auto n = ::readlink(("/proc/" + std::to_string(pid) + "/cwd").c_str(), cwd,
                        sizeof cwd - 1);
    if (pid <= 0 || n <= 0)
      continue;
    std::error_code ec2;
    if (fs::equivalent(fs::path(std::string(cwd, n)), it->path().parent_path(),
                       ec2)
        && ::kill(static_cast<pid_t>(pid), SIGQUIT) == 0)
      stopping.push_back(static_cast<pid_t>(pid));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  for (pid_t pid : stopping)
    while (process_alive(pid) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
}

void remove_tree(const fs::path& p) {
  stop_servers_under(p);
  std::error_code ec;
  fs::remove_all(p, ec);
}

/// Removes the scratch directories of test processes that are gone.
void reap_dead_processes_dirs() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(work_dir(), ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() < 2 || name[0] != 'p')
      continue;
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + 1));
    if (pid > 0 && pid != ::getpid() && !process_alive(pid))
      remove_tree(entry.path());
  }
}

std::string make_scratch_path(const std::string& tag) {
  static std::once_flag reaped;
  static std::atomic<int> counter{0};
  std::call_once(reaped, [] {
    std::error_code ec;
    fs::create_directories(work_dir(), ec);
    reap_dead_processes_dirs();
  });
  fs::path p = work_dir()
               / ("p" + std::to_string(::getpid()) + "-"
                  + std::to_string(++counter) + "-" + tag);
  std::error_code ec;
  fs::remove_all(p, ec);
  fs::create_directories(p);
  return p.string();
}

struct shared_server {
  scratch_dir dir{"server"};
  persistence::embedded_postgres pg{dir.path(), test_server_options()};
};

shared_server& server() {
  // Destroyed at exit, in reverse order of construction: the server stops,
  // then its folder goes.
  static shared_server s;
  return s;
}

} // namespace

scratch_dir::scratch_dir(const std::string& tag)
    : path_(make_scratch_path(tag)) {}

scratch_dir::~scratch_dir() {
  remove_tree(path_);
}

persistence::embedded_options test_server_options(persistence::ownership role) {
  persistence::embedded_options o;
  o.role = role;
  o.lock_wait = std::chrono::milliseconds{300};
  o.start_timeout = std::chrono::seconds{30};
  return o;
}

std::unique_ptr<persistence::embedded_postgres>
start_embedded(const std::string& data_dir, persistence::ownership role) {
  return std::make_unique<persistence::embedded_postgres>(
      data_dir, test_server_options(role));
}

std::string test_server_conninfo() {
  return server().pg.connection_string();
}

std::string fresh_database() {
  static std::atomic<int> counter{0};
  auto& pg = server().pg;
  std::string name
      = "test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  execute(pg.connection_string("postgres"), "CREATE DATABASE " + name);
  return pg.connection_string(name);
}

std::string query_value(const std::string& conninfo, const std::string& sql) {
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  auto r = tx.exec(sql);
  if (r.empty() || r[0][0].is_null())
    return {};
  return r[0][0].as<std::string>();
}

void execute(const std::string& conninfo, const std::string& sql) {
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

} // namespace karvon::testing
