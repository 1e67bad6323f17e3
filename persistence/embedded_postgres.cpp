#include "persistence/embedded_postgres.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <locale.h>
#include <poll.h>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "persistence/errors.hpp"

namespace karvon::persistence {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// sockaddr_un::sun_path is 108 bytes on Linux, one of them the final NUL.
constexpr std::size_t max_socket_path = 107;
constexpr const char* socket_name = ".s.PGSQL.5432";
constexpr const char* socket_lock_name = ".s.PGSQL.5432.lock";
constexpr const char* server_user_name = "postgres";
// The cluster's superuser and our database; both are created by us.
constexpr const char* db_user = "karvon";
constexpr const char* db_name = "karvon";
constexpr milliseconds initdb_timeout{120000};
constexpr milliseconds stop_timeout{60000};
constexpr milliseconds poll_interval{50};

std::string errno_text(int e) {
  return std::strerror(e);
}

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

std::string read_text(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The last `lines` lines of a file, for error messages about the server.
std::string tail_of(const fs::path& p, std::size_t lines) {
  std::string text = read_text(p);
  std::size_t pos = text.size();
  while (lines > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
    --lines;
  }
  return trim(text.substr(pos));
}

// FNV-1a: stable across builds and machines, unlike std::hash, so the
// fallback socket directory of a data folder never changes.
std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// A value for a libpq key=value connection string.
std::string conninfo_value(const std::string& v) {
  if (!v.empty() && v.find_first_of(" \t\n'\\") == std::string::npos)
    return v;
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "'";
}

std::string make_conninfo(const std::string& socket_dir, int port,
                          const std::string& dbname) {
  return "host=" + conninfo_value(socket_dir) + " port=" + std::to_string(port)
         + " dbname=" + conninfo_value(dbname) + " user=" + db_user;
}

// ---------------------------------------------------------------------------
// Running the PostgreSQL tools.

/// The system user the server runs as when karvon runs as root.
struct run_as {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

/// nullopt when not root: the tools then run as the current user.
std::optional<run_as> server_user() {
  if (geteuid() != 0)
    return std::nullopt;
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc = getpwnam_r(server_user_name, &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr)
    throw startup_error(
        "karvon runs as root, and PostgreSQL refuses to: the embedded server "
        "runs as the `postgres` system user, which does not exist here. Run "
        "scripts/install-deps.sh (the postgresql-15 package creates the "
        "user), or run karvon as an ordinary user, or set database.url");
  run_as u;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  // Resolved here, not in the child: initgroups reads /etc/group through
  // NSS, which is not async-signal-safe between fork and exec.
  int n = 32;
  u.groups.resize(n);
  while (getgrouplist(server_user_name, pw.pw_gid, u.groups.data(), &n) < 0) {
    if (n <= static_cast<int>(u.groups.size()))
      n = static_cast<int>(u.groups.size()) * 2;
    u.groups.resize(n);
  }
  u.groups.resize(n);
  return u;
}

void write_fd(int fd, const char* s) {
  ssize_t ignored = ::write(fd, s, std::strlen(s));
  (void)ignored;
}

/// In a forked child: drop to `user`. Async-signal-safe calls only.
bool switch_user_in_child(const run_as& user) {
  return setgroups(user.groups.size(), user.groups.data()) == 0
         && setgid(user.gid) == 0 && setuid(user.uid) == 0;
}

/// In a forked child: close every descriptor above stderr so that the
/// server, which outlives us, inherits none of ours (karvon.lock above all:
/// a postmaster holding it would keep the lock after karvon exits).
void close_fds_in_child(int max_fd) {
  if (::close_range(3, ~0U, 0) == 0)
    return;
  for (int fd = 3; fd < max_fd; ++fd)
    ::close(fd);
}

void reset_signals_in_child(const sigset_t& empty) {
  // A blocked or ignored signal survives exec; the server must see them.
  for (int sig :
       {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2})
    ::signal(sig, SIG_DFL);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
}

int max_fd_to_close() {
  long n = ::sysconf(_SC_OPEN_MAX);
  return n <= 0 || n > 65536 ? 65536 : static_cast<int>(n);
}

struct run_result {
  int status = 0; //!< as from waitpid
  bool timed_out = false;
  std::string output; //!< stdout and stderr together, possibly cut
};

/// "exited with status 1", "killed by signal 9", "timed out after 60 s".
std::string describe(const run_result& r, milliseconds timeout) {
  if (r.timed_out)
    return "timed out after " + std::to_string(timeout.count() / 1000) + " s";
  if (WIFEXITED(r.status))
    return "exited with status " + std::to_string(WEXITSTATUS(r.status));
  if (WIFSIGNALED(r.status))
    return "killed by signal " + std::to_string(WTERMSIG(r.status));
  return "ended abnormally";
}

bool succeeded(const run_result& r) {
  return !r.timed_out && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
}

/// Runs a program with stdin from /dev/null and output captured, as `user`
/// when given, and kills it at `timeout`. Throws startup_error only when it
/// cannot be started at all.
run_result run_program(const std::vector<std::string>& args,
                       const std::optional<run_as>& user,
                       milliseconds timeout) {
  // A memfd rather than a pipe: nothing to drain while we wait, and nothing
  // to block on if a grandchild kept the descriptor.
  int out = ::memfd_create("karvon-tool-output", MFD_CLOEXEC);
  if (out < 0)
    throw startup_error("memfd_create: " + errno_text(errno));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    int e = errno;
    ::close(out);
    throw startup_error("open /dev/null: " + errno_text(e));
  }
  std::vector<char*> argv;
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const int max_fd = max_fd_to_close();
  sigset_t empty;
  sigemptyset(&empty);

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(out);
    ::close(null_fd);
    throw startup_error("fork: " + errno_text(e));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here to execv.
    ::dup2(null_fd, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    if (user && !switch_user_in_child(*user)) {
      write_fd(2, "karvon: cannot switch to the postgres user\n");
      ::_exit(126);
    }
    // The tools resolve their own path against the working directory, which
    // the postgres user may not be allowed to read (/root).
    if (::chdir("/") != 0)
      ::_exit(126);
    reset_signals_in_child(empty);
    close_fds_in_child(max_fd);
    ::execv(argv[0], argv.data());
    write_fd(2, "karvon: cannot execute ");
    write_fd(2, argv[0]);
    write_fd(2, "\n");
    ::_exit(127);
  }
  ::close(null_fd);

  run_result r;
  auto deadline = steady::now() + timeout;
  auto nap = milliseconds{1};
  for (;;) {
    pid_t w = ::waitpid(pid, &r.status, WNOHANG);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR) {
      // Someone else reaped it (a SIGCHLD handler elsewhere): the exit
      // status is lost; judge by the output.
      r.status = 0;
      break;
    }
    if (steady::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &r.status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, milliseconds{20});
  }

  constexpr std::size_t keep = 16384;
  off_t size = ::lseek(out, 0, SEEK_END);
  off_t from = size > static_cast<off_t>(keep) ? size - keep : 0;
  r.output.resize(static_cast<std::size_t>(size - from));
  ssize_t got = ::pread(out, r.output.data(), r.output.size(), from);
  r.output.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  ::close(out);
  r.output = trim(r.output);
  return r;
}

// ---------------------------------------------------------------------------
// Letting the postgres user reach the data folder.

/// For each directory, whether `user` may search it (access(X_OK) run as
/// that user, so ACLs and group membership count exactly as for the server).
std::vector<bool> searchable_by(const run_as& user,
                                const std::vector<std::string>& dirs) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw startup_error("pipe: " + errno_text(errno));
  std::vector<const char*> paths;
  for (const auto& d : dirs)
    paths.push_back(d.c_str());
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw startup_error("fork: " + errno_text(e));
  }
  if (pid == 0) {
    if (!switch_user_in_child(user))
      ::_exit(126);
    for (const char* p : paths) {
      char c = ::access(p, X_OK) == 0 ? '1' : '0';
      if (::write(fds[1], &c, 1) != 1)
        ::_exit(126);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string answers;
  auto deadline = steady::now() + milliseconds{10000};
  while (answers.size() < dirs.size() && steady::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0)
      continue;
    char buf[256];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0)
      break;
    answers.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  ::kill(pid, SIGKILL); // a no-op when it has finished, as it should have
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (answers.size() != dirs.size())
    throw startup_error(
        "could not check which directories the postgres user may enter");
  std::vector<bool> out;
  for (char c : answers)
    out.push_back(c == '1');
  return out;
}

std::string find_setfacl() {
  for (const char* p : {"/usr/bin/setfacl", "/bin/setfacl"})
    if (::access(p, X_OK) == 0)
      return p;
  return {};
}

/// When the data folder sits under a directory the postgres user cannot
/// enter (a clone under /root, mode 0700), grants it search access, and
/// only that, on exactly those directories.
void ensure_reachable(const run_as& user, const fs::path& data_dir,
                      const fs::path& pgdata) {
  std::vector<std::string> dirs;
  for (fs::path p = data_dir;; p = p.parent_path()) {
    dirs.insert(dirs.begin(), p.string());
    if (p == p.root_path() || p.parent_path() == p)
      break;
  }
  // Path resolution fails at the first blocked ancestor, so every
  // directory below it looks blocked too: grant top-down and re-check.
  std::size_t from = 0;
  while (from < dirs.size()) {
    std::vector<std::string> rest(dirs.begin() + from, dirs.end());
    auto ok = searchable_by(user, rest);
    auto first_blocked = std::find(ok.begin(), ok.end(), false);
    if (first_blocked == ok.end())
      return;
    const std::string& dir = rest[first_blocked - ok.begin()];
    std::string setfacl = find_setfacl();
    run_result r;
    if (!setfacl.empty())
      r = run_program({setfacl, "-m", "u:postgres:x", dir}, std::nullopt,
                      milliseconds{10000});
    if (setfacl.empty() || !succeeded(r)) {
      std::string why
          = setfacl.empty()
                ? "setfacl is not installed (package acl)"
                : "`setfacl -m u:postgres:x " + dir + "` failed: " + r.output;
      throw startup_error(
          "karvon runs as root, so the embedded PostgreSQL runs as the "
          "postgres system user, which cannot enter "
          + dir + " on the way to " + pgdata.string() + "; " + why
          + ". Fix one of: run `setfacl -m u:postgres:x " + dir
          + "` or `chmod o+x " + dir
          + "`; or set server.data_dir (--data-dir) to a folder the postgres "
            "user can reach, e.g. /var/lib/karvon; or set database.url to "
            "an external PostgreSQL");
    }
    spdlog::warn("granted the postgres user search access (x) to {} so that "
                 "the embedded PostgreSQL can reach {}",
                 dir, pgdata.string());
    from += static_cast<std::size_t>(first_blocked - ok.begin());
  }
}

// ---------------------------------------------------------------------------
// postmaster.pid and the processes it names.

/// postmaster.pid, and the socket's lock file, which has the same layout:
/// pid, data folder, start time, port, socket directory, listen address,
/// shared memory key, status.
struct pid_file {
  pid_t pid = 0;
  std::string data_dir;
  int port = 5432;
  std::string socket_dir;
  std::string status; //!< starting, ready, standby, stopping
};

std::optional<pid_file> read_pid_file(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec))
    return std::nullopt;
  std::istringstream in{read_text(p)};
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(trim(line));
  pid_file f;
  if (!lines.empty()) {
    long pid = std::strtol(lines[0].c_str(), nullptr, 10);
    f.pid = static_cast<pid_t>(pid < 0 ? -pid : pid); // single-user: -pid
  }
  if (lines.size() > 1)
    f.data_dir = lines[1];
  if (lines.size() > 3)
    f.port = std::atoi(lines[3].c_str());
  if (f.port <= 0)
    f.port = 5432;
  if (lines.size() > 4) {
    f.socket_dir = lines[4];
    auto comma = f.socket_dir.find(',');
    if (comma != std::string::npos)
      f.socket_dir = trim(f.socket_dir.substr(0, comma));
  }
  if (lines.size() > 7)
    f.status = lines[7];
  return f;
}

std::optional<std::string> read_link(const std::string& p) {
  std::vector<char> buf(4096);
  ssize_t n = ::readlink(p.c_str(), buf.data(), buf.size());
  if (n < 0 || static_cast<std::size_t>(n) >= buf.size())
    return std::nullopt;
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

bool is_postgres_program(std::string path) {
  const std::string deleted = " (deleted)"; // the binary was upgraded
  if (path.size() > deleted.size()
      && path.compare(path.size() - deleted.size(), deleted.size(), deleted)
             == 0)
    path.resize(path.size() - deleted.size());
  auto name = fs::path(path).filename().string();
  return name == "postgres" || name == "postmaster";
}

enum class process_kind {
  gone,          //!< no such process
  not_postgres,  //!< alive, another program (the pid was reused)
  other_cluster, //!< a PostgreSQL server, for another data folder
  this_cluster,  //!< a PostgreSQL server on this data folder
};

const char* to_text(process_kind k) {
  switch (k) {
  case process_kind::gone:
    return "no such process";
  case process_kind::not_postgres:
    return "another program has that pid now";
  case process_kind::other_cluster:
    return "a PostgreSQL server of another data folder has that pid now";
  case process_kind::this_cluster:
    return "a PostgreSQL server on this data folder";
  }
  return "";
}

/// What `pid` is now. In containers pids restart at 1 and get reused, so a
/// live pid proves nothing: the process must be a postgres whose working
/// directory (the postmaster chdirs into its data folder) is `pgdata`.
process_kind classify(pid_t pid, const std::string& pgdata) {
  if (pid <= 0)
    return process_kind::gone;
  if (::kill(pid, 0) != 0 && errno == ESRCH)
    return process_kind::gone;
  std::string proc = "/proc/" + std::to_string(pid);
  // A killed server whose parent (often pid 1 in a container) has not
  // reaped it yet still answers kill(pid, 0): a zombie is gone all the same.
  std::string stat = read_text(proc + "/stat");
  auto paren = stat.rfind(')');
  if (paren != std::string::npos && paren + 2 < stat.size()
      && (stat[paren + 2] == 'Z' || stat[paren + 2] == 'X'))
    return process_kind::gone;
  auto exe = read_link(proc + "/exe");
  if (exe && !is_postgres_program(*exe))
    return process_kind::not_postgres;
  if (auto cwd = read_link(proc + "/cwd"))
    return *cwd == pgdata ? process_kind::this_cluster
                          : (exe ? process_kind::other_cluster
                                 : process_kind::not_postgres);
  // Another user's process, unreadable: the command line is readable by
  // all. pg_ctl starts the server as `postgres -D <folder> ...`.
  std::string cmdline = read_text(proc + "/cmdline");
  std::vector<std::string> argv;
  std::size_t start = 0;
  for (std::size_t i = 0; i < cmdline.size(); ++i)
    if (cmdline[i] == '\0') {
      argv.push_back(cmdline.substr(start, i - start));
      start = i + 1;
    }
  if (argv.empty())
    return process_kind::not_postgres; // a zombie, or gone meanwhile
  if (!exe && !is_postgres_program(argv[0]))
    return process_kind::not_postgres;
  return std::find(argv.begin(), argv.end(), pgdata) != argv.end()
             ? process_kind::this_cluster
             : process_kind::other_cluster;
}

/// One connection attempt; the error message or empty on success.
std::string try_connect(const std::string& conninfo) {
  try {
    pqxx::connection c{conninfo + " connect_timeout=5"};
    return {};
  } catch (const std::exception& e) {
    return trim(e.what());
  }
}

bool locale_exists(const char* name) {
  locale_t l = ::newlocale(LC_ALL_MASK, name, nullptr);
  if (l == nullptr)
    return false;
  ::freelocale(l);
  return true;
}

/// The server binaries: Debian's PostgreSQL 15, else the newest installed.
std::pair<std::string, int> find_binaries() {
  const fs::path root = "/usr/lib/postgresql";
  int best = 0;
  std::error_code ec;
  if (fs::exists(root / "15/bin/pg_ctl", ec))
    best = 15;
  else
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      int major = std::atoi(entry.path().filename().c_str());
      if (major > best && fs::exists(entry.path() / "bin/pg_ctl", ec))
        best = major;
    }
  if (best == 0)
    throw startup_error(
        "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: run "
        "scripts/install-deps.sh (package postgresql-15), or set "
        "database.url to an external PostgreSQL");
  return {(root / std::to_string(best) / "bin").string(), best};
}

} // namespace

// ---------------------------------------------------------------------------

struct embedded_postgres::impl {
  embedded_options options;
  fs::path data_dir;
  fs::path lock_path;
  fs::path log_path;
  std::string pgdata;
  std::string socket_dir;
  int port = 5432;
  std::string conninfo;
  std::string bin_dir;
  int major = 0;
  std::optional<run_as> user;
  int lock_fd = -1;
  bool holds_lock = false;
  bool started_here = false;
  bool stops_server = false;
  bool stopped = false;

  void init(const std::string& dir);
  void take_owner_lock();
  bool take_guest_lock_or_find_owner();
  void write_holder(const char* role);
  std::string holder_text();
  void release_lock();
  void start_or_adopt();
  void prepare_data_folder();
  bool adopt_running_server();
  void prepare_socket_dir();
  void remove_stale_socket_lock();
  void start_server();
  void ensure_database();
  bool server_ready_now();
  void stop_server();
};

void embedded_postgres::impl::init(const std::string& dir) {
  std::error_code ec;
  data_dir = fs::absolute(dir, ec);
  if (ec)
    throw startup_error("server.data_dir " + dir + ": " + ec.message());
  fs::create_directories(data_dir, ec);
  if (ec)
    throw startup_error("cannot create server.data_dir " + data_dir.string()
                        + ": " + ec.message());
  data_dir = fs::canonical(data_dir, ec);
  if (ec)
    throw startup_error("server.data_dir " + dir + ": " + ec.message());
  // pg_ctl hands the folder to a shell in double quotes.
  if (data_dir.string().find_first_of("\"`$\\\n") != std::string::npos)
    throw startup_error("server.data_dir " + data_dir.string()
                        + " may not contain \", `, $, \\ or a newline");
  pgdata = (data_dir / "postgres").string();
  lock_path = data_dir / "karvon.lock";
  log_path = data_dir / "postgres.log";
  std::tie(bin_dir, major) = find_binaries();

  // The socket lives in the data folder unless its path would not fit in
  // sun_path, or holds characters that unix_socket_directories (a comma
  // separated list) or pg_ctl's shell would mangle. The fallback is named by
  // a hash of the folder so that guests find it again.
  std::string sock = pgdata + "/" + socket_name;
  if (sock.size() <= max_socket_path
      && pgdata.find_first_of("', \t") == std::string::npos) {
    socket_dir = pgdata;
  } else {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(fnv1a64(pgdata)));
    socket_dir = std::string("/tmp/karvon-pg-") + hex;
    spdlog::info("the socket path {} would exceed the {}-byte limit of Unix "
                 "socket paths (or needs quoting), so the embedded "
                 "PostgreSQL listens in {}",
                 sock, max_socket_path, socket_dir);
  }
  conninfo = make_conninfo(socket_dir, port, db_name);

  lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0)
    lock_fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (lock_fd < 0)
    throw startup_error("cannot open " + lock_path.string() + ": "
                        + errno_text(errno));
  try {
    if (options.role == ownership::owner) {
      take_owner_lock();
      stops_server = true;
      start_or_adopt();
    } else if (take_guest_lock_or_find_owner()) {
      start_or_adopt();
      stops_server = started_here;
    }
  } catch (...) {
    if (started_here)
      stop_server();
    release_lock();
    throw;
  }
}

void embedded_postgres::impl::write_holder(const char* role) {
  holds_lock = true;
  std::string text = std::to_string(::getpid()) + " " + role + "\n";
  if (::ftruncate(lock_fd, 0) == 0) {
    ssize_t ignored = ::pwrite(lock_fd, text.data(), text.size(), 0);
    (void)ignored;
  }
}

std::string embedded_postgres::impl::holder_text() {
  char buf[128];
  ssize_t n = ::pread(lock_fd, buf, sizeof buf - 1, 0);
  return n > 0 ? trim(std::string(buf, static_cast<std::size_t>(n)))
               : std::string{};
}

void embedded_postgres::impl::take_owner_lock() {
  auto deadline = steady::now() + options.lock_wait;
  while (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR)
      throw startup_error("flock " + lock_path.string() + ": "
                          + errno_text(errno));
    if (steady::now() >= deadline) {
      std::string holder = holder_text();
      std::string pid = holder.substr(0, holder.find(' '));
      throw startup_error(
          "another karvon"
          + (pid.empty() ? std::string{} : " (pid " + pid + ")")
          + " is using the embedded PostgreSQL in " + data_dir.string()
          + ": it holds " + lock_path.string()
          + ". Stop it first, or give this one another --data-dir");
    }
    std::this_thread::sleep_for(poll_interval);
  }
  write_holder("owner");
}

bool embedded_postgres::impl::take_guest_lock_or_find_owner() {
  auto start = steady::now();
  for (;;) {
    if (::flock(lock_fd, LOCK_EX | LOCK_NB) == 0) {
      write_holder("guest");
      return true;
    }
    if (errno != EWOULDBLOCK && errno != EINTR)
      throw startup_error("flock " + lock_path.string() + ": "
                          + errno_text(errno));
    std::string holder = holder_text();
    std::string pid = holder.substr(0, holder.find(' '));
    bool owner = holder.size() > pid.size()
                 && holder.substr(pid.size() + 1) == "owner";
    auto waited = steady::now() - start;
    if (owner) {
      // `karvon serve` runs: use its server, which may still be starting.
      if (server_ready_now())
        return false;
      if (waited > options.start_timeout)
        throw startup_error("karvon serve (pid " + pid + ") holds "
                            + lock_path.string() + " but its PostgreSQL in "
                            + pgdata + " is not ready; see "
                            + log_path.string());
    } else if (waited > options.lock_wait) {
      throw startup_error("another karvon command"
                          + (pid.empty() ? std::string{} : " (pid " + pid + ")")
                          + " is using the embedded PostgreSQL in "
                          + data_dir.string() + " (it holds "
                          + lock_path.string()
                          + "); try again when it has finished");
    }
    std::this_thread::sleep_for(poll_interval);
  }
}

void embedded_postgres::impl::release_lock() {
  if (lock_fd < 0)
    return;
  // Cleared before unlocking, so that nobody reads a departed holder's
  // role and takes it for the next one's.
  if (holds_lock) {
    int ignored = ::ftruncate(lock_fd, 0);
    (void)ignored;
  }
  ::close(lock_fd); // releases the flock
  holds_lock = false;
  lock_fd = -1;
}

/// Probes the server named by postmaster.pid without waiting; on success
/// points conninfo at it.
bool embedded_postgres::impl::server_ready_now() {
  auto pf = read_pid_file(fs::path(pgdata) / "postmaster.pid");
  if (!pf || classify(pf->pid, pgdata) != process_kind::this_cluster)
    return false;
  if (pf->status != "ready" && pf->status != "standby")
    return false;
  std::string sock = pf->socket_dir.empty() ? socket_dir : pf->socket_dir;
  // Our database, not `postgres`: the owner creates it after the server is
  // up, and the guest must not race ahead of that.
  if (!try_connect(make_conninfo(sock, pf->port, db_name)).empty())
    return false;
  socket_dir = sock;
  port = pf->port;
  conninfo = make_conninfo(socket_dir, port, db_name);
  return true;
}

void embedded_postgres::impl::start_or_adopt() {
  user = server_user();
  if (user)
    ensure_reachable(*user, data_dir, pgdata);
  prepare_data_folder();
  if (!adopt_running_server())
    start_server();
  ensure_database();
}

void embedded_postgres::impl::prepare_data_folder() {
  std::error_code ec;
  fs::path dir = pgdata;
  auto st = fs::symlink_status(dir, ec);
  bool fresh = false;
  if (!fs::exists(st)) {
    // Created here rather than by initdb: as root, initdb runs as postgres
    // and may not write into data_dir.
    if (::mkdir(pgdata.c_str(), 0700) != 0)
      throw startup_error("cannot create " + pgdata + ": " + errno_text(errno));
    fresh = true;
  } else if (!fs::is_directory(fs::status(dir, ec))) {
    throw startup_error(pgdata + " exists and is not a directory");
  } else if (fs::exists(dir / "PG_VERSION", ec)) {
    int found = std::atoi(trim(read_text(dir / "PG_VERSION")).c_str());
    if (found != major)
      throw startup_error(
          pgdata + " holds a PostgreSQL " + std::to_string(found)
          + " cluster, but karvon runs PostgreSQL " + std::to_string(major)
          + " (" + bin_dir + "). Upgrade it with pg_upgrade, or move it "
          + "away to start afresh");
  } else if (fs::is_empty(dir, ec)) {
    fresh = true;
  } else {
    throw startup_error(pgdata
                        + " is not empty and is not a PostgreSQL data folder "
                          "(it has no PG_VERSION). Move it away, or set "
                          "server.data_dir to another folder");
  }
  if (!fresh)
    return;

  if (user && ::chown(pgdata.c_str(), user->uid, user->gid) != 0)
    throw startup_error("cannot chown " + pgdata
                        + " to postgres: " + errno_text(errno));
  std::string locale = locale_exists("C.UTF-8") ? "C.UTF-8" : "C";
  auto t0 = steady::now();
  auto r = run_program({bin_dir + "/initdb", "-D", pgdata, "-U", db_user, "-A",
                        "trust", "-E", "UTF8", "--locale=" + locale,
                        "--no-instructions"},
                       user, initdb_timeout);
  if (!succeeded(r)) {
    // initdb empties the folder on failure; leave it empty, not half made,
    // so that the next start tries again.
    throw startup_error("initdb " + pgdata + " " + describe(r, initdb_timeout)
                        + ": " + r.output);
  }
  spdlog::info(
      "created a PostgreSQL data folder in {} ({} ms)", pgdata,
      std::chrono::duration_cast<milliseconds>(steady::now() - t0).count());
}

/// Uses a server already running on the folder; removes the postmaster.pid
/// of a dead one. False when none runs.
bool embedded_postgres::impl::adopt_running_server() {
  auto pid_path = fs::path(pgdata) / "postmaster.pid";
  auto deadline = steady::now() + options.start_timeout;
  std::string last_error;
  for (;;) {
    auto pf = read_pid_file(pid_path);
    if (!pf)
      return false;
    auto kind = classify(pf->pid, pgdata);
    if (kind != process_kind::this_cluster) {
      // PostgreSQL itself refuses to start while the pid in this file is
      // alive, whatever it is now. Its shared memory check still guards
      // against a server we cannot see (another pid namespace).
      std::error_code ec;
      fs::remove(pid_path, ec);
      if (ec)
        throw startup_error("cannot remove stale " + pid_path.string() + ": "
                            + ec.message());
      spdlog::warn("removed the stale {} of a server that is no longer "
                   "running (pid {}: {})",
                   pid_path.string(), pf->pid, to_text(kind));
      return false;
    }
    if (pf->status == "ready" || pf->status == "standby") {
      std::string sock = pf->socket_dir.empty() ? socket_dir : pf->socket_dir;
      last_error = try_connect(make_conninfo(sock, pf->port, "postgres"));
      if (last_error.empty()) {
        socket_dir = sock;
        port = pf->port;
        conninfo = make_conninfo(socket_dir, port, db_name);
        spdlog::info("using the PostgreSQL server already running on {} "
                     "(pid {})",
                     pgdata, pf->pid);
        return true;
      }
    }
    // "starting": wait for it; "stopping": wait for it to go, then start.
    if (steady::now() >= deadline)
      throw startup_error(
          "a PostgreSQL server (pid " + std::to_string(pf->pid) + ") runs on "
          + pgdata + " but did not become usable within "
          + std::to_string(options.start_timeout.count() / 1000)
          + " s (status: " + (pf->status.empty() ? "?" : pf->status) + ")"
          + (last_error.empty() ? "" : "; last error: " + last_error) + ". See "
          + log_path.string());
    std::this_thread::sleep_for(milliseconds{100});
  }
}

void embedded_postgres::impl::prepare_socket_dir() {
  if (socket_dir == pgdata)
    return;
  uid_t want_uid = user ? user->uid : ::geteuid();
  if (::mkdir(socket_dir.c_str(), 0700) == 0 && user)
    if (::chown(socket_dir.c_str(), user->uid, user->gid) != 0)
      throw startup_error("cannot chown " + socket_dir + ": "
                          + errno_text(errno));
  struct stat st;
  if (::lstat(socket_dir.c_str(), &st) != 0)
    throw startup_error("cannot create " + socket_dir + ": "
                        + errno_text(errno));
  // In a world-writable /tmp the name could have been taken first.
  if (!S_ISDIR(st.st_mode) || st.st_uid != want_uid)
    throw startup_error(socket_dir
                        + " exists but is not a directory owned by uid "
                        + std::to_string(want_uid)
                        + "; remove it so that the embedded PostgreSQL "
                          "can put its socket there");
  if ((st.st_mode & 07777) != 0700)
    ::chmod(socket_dir.c_str(), 0700);
}

void embedded_postgres::impl::remove_stale_socket_lock() {
  auto lock = fs::path(socket_dir) / socket_lock_name;
  auto pf = read_pid_file(lock);
  if (!pf)
    return;
  auto kind = classify(pf->pid, pgdata);
  // A live server of another folder on our socket is not ours to break:
  // PostgreSQL will report the conflict.
  if (kind != process_kind::gone && kind != process_kind::not_postgres)
    return;
  std::error_code ec;
  fs::remove(lock, ec);
  spdlog::warn("removed the stale socket lock {} (pid {}: {})", lock.string(),
               pf->pid, to_text(kind));
}

void embedded_postgres::impl::start_server() {
  struct stat st;
  uid_t want_uid = user ? user->uid : ::geteuid();
  if (::stat(pgdata.c_str(), &st) == 0 && st.st_uid != want_uid)
    throw startup_error(
        pgdata + " belongs to uid " + std::to_string(st.st_uid)
        + " but the server would run as uid " + std::to_string(want_uid)
        + (user ? " (the postgres user, because karvon runs as root). Run "
                  "`chown -R postgres: "
                      + pgdata + "`"
                : ". Run karvon as the folder's owner")
        + ", or move the folder away to start afresh");
  prepare_socket_dir();
  remove_stale_socket_lock();
  // pg_ctl runs as the server user and opens the log itself.
  int log_fd = ::open(log_path.c_str(),
                      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (log_fd < 0)
    throw startup_error("cannot open " + log_path.string() + ": "
                        + errno_text(errno));
  if (user && ::fchown(log_fd, user->uid, user->gid) != 0) {
    int e = errno;
    ::close(log_fd);
    throw startup_error("cannot chown " + log_path.string() + ": "
                        + errno_text(e));
  }
  ::close(log_fd);

  // No TCP at all; port only names the socket file (set explicitly so that
  // a PGPORT in the environment cannot move it).
  std::string server_options
      = "-c listen_addresses='' -c port=" + std::to_string(port)
        + " -c unix_socket_directories='" + socket_dir
        + "' -c unix_socket_permissions=0700";
  auto wait_s = std::max<long long>(1, options.start_timeout.count() / 1000);
  auto timeout = options.start_timeout + milliseconds{15000};
  auto t0 = steady::now();
  auto r = run_program({bin_dir + "/pg_ctl", "start", "-w", "-t",
                        std::to_string(wait_s), "-D", pgdata, "-l",
                        log_path.string(), "-o", server_options},
                       user, timeout);
  if (!succeeded(r)) {
    std::string log = tail_of(log_path, 15);
    // It may be up but not ready within the wait: do not leave it behind.
    stop_server();
    throw startup_error(
        "pg_ctl start on " + pgdata + " " + describe(r, timeout) + ": "
        + r.output
        + (log.empty() ? ""
                       : "\n" + log_path.string() + " ends with:\n" + log));
  }
  started_here = true;
  spdlog::info(
      "started the embedded PostgreSQL on {} ({} ms)", pgdata,
      std::chrono::duration_cast<milliseconds>(steady::now() - t0).count());
}

void embedded_postgres::impl::ensure_database() {
  try {
    pqxx::connection c{make_conninfo(socket_dir, port, "postgres")
                       + " connect_timeout=10"};
    pqxx::nontransaction tx{c};
    auto r = tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1",
                            std::string{db_name});
    if (r.empty())
      tx.exec(std::string("CREATE DATABASE ") + db_name);
  } catch (const std::exception& e) {
    throw startup_error("cannot create the database " + std::string(db_name)
                        + " on the embedded PostgreSQL in " + pgdata + ": "
                        + trim(e.what()));
  }
}

void embedded_postgres::impl::stop_server() {
  auto pf = read_pid_file(fs::path(pgdata) / "postmaster.pid");
  if (!pf || classify(pf->pid, pgdata) != process_kind::this_cluster)
    return;
  const pid_t pid = pf->pid;
  // Signalled directly rather than through `pg_ctl stop -w`: pg_ctl waits
  // for kill(pid, 0) to fail, which a server that died as a zombie nobody
  // reaps (pid 1 in many containers) never does, so it would sit out its
  // whole timeout. classify() counts a zombie as gone.
  auto wait_gone = [&](milliseconds limit) {
    auto deadline = steady::now() + limit;
    while (classify(pid, pgdata) == process_kind::this_cluster) {
      if (steady::now() >= deadline)
        return false;
      std::this_thread::sleep_for(milliseconds{20});
    }
    return true;
  };
  // SIGINT is PostgreSQL's fast shutdown: open transactions roll back and
  // sessions end; committed work is already durable (fsync on).
  if (::kill(pid, SIGINT) != 0) {
    spdlog::error("cannot stop the embedded PostgreSQL on {} (pid {}): {}",
                  pgdata, pid, errno_text(errno));
    return;
  }
  if (wait_gone(stop_timeout)) {
    spdlog::info("stopped the embedded PostgreSQL on {}", pgdata);
    return;
  }
  // SIGQUIT: immediate shutdown; the next start runs crash recovery.
  spdlog::error("the embedded PostgreSQL on {} (pid {}) did not stop within "
                "{} s; sending an immediate shutdown",
                pgdata, pid, stop_timeout.count() / 1000);
  ::kill(pid, SIGQUIT);
  if (!wait_gone(milliseconds{10000}))
    spdlog::error("the embedded PostgreSQL on {} (pid {}) is still running",
                  pgdata, pid);
}

// ---------------------------------------------------------------------------

embedded_postgres::embedded_postgres(const std::string& data_dir)
    : embedded_postgres(data_dir, ownership::owner) {}

embedded_postgres::embedded_postgres(const std::string& data_dir,
                                     ownership role)
    : embedded_postgres(data_dir, [role] {
        embedded_options o;
        o.role = role;
        // A guest queues behind another guest's short command.
        o.lock_wait = role == ownership::owner ? milliseconds{5000}
                                               : milliseconds{30000};
        return o;
      }()) {}

embedded_postgres::embedded_postgres(const std::string& data_dir,
                                     const embedded_options& options)
    : impl_(std::make_unique<impl>()) {
  impl_->options = options;
  impl_->init(data_dir);
}

embedded_postgres::~embedded_postgres() {
  stop();
}

const std::string& embedded_postgres::connection_string() const {
  return impl_->conninfo;
}

std::string
embedded_postgres::connection_string(const std::string& dbname) const {
  return make_conninfo(impl_->socket_dir, impl_->port, dbname);
}

bool embedded_postgres::started_here() const {
  return impl_->started_here;
}

bool embedded_postgres::stops_server() const {
  return impl_->stops_server;
}

const std::string& embedded_postgres::data_folder() const {
  return impl_->pgdata;
}

const std::string& embedded_postgres::socket_dir() const {
  return impl_->socket_dir;
}

void embedded_postgres::stop() {
  if (!impl_ || impl_->stopped)
    return;
  impl_->stopped = true;
  try {
    if (impl_->stops_server)
      impl_->stop_server();
  } catch (const std::exception& e) {
    spdlog::error("stopping the embedded PostgreSQL on {}: {}", impl_->pgdata,
                  e.what());
  }
  impl_->release_lock();
}

} // namespace karvon::persistence
