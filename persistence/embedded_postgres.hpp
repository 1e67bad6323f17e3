// The embedded PostgreSQL: Debian's PostgreSQL 15 server binaries run on a
// data folder under server.data_dir, reachable only through a Unix socket.
//
// Processes share one data folder through an flock on <data_dir>/karvon.lock:
// `karvon serve` is its owner and stops the server when it exits; `karvon
// keys` and `karvon migrate` are guests that use the owner's server through
// its socket, or start one for the length of the command when no owner runs.
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace karvon::persistence {

/// Who stops the embedded server.
enum class ownership {
  owner, //!< holds karvon.lock while alive; stops the server, even one it
         //!< adopted from a crashed owner
  guest, //!< uses a running owner's server and never stops it; with no
         //!< owner, takes the lock and stops only a server it started
};

struct embedded_options {
  ownership role = ownership::owner;
  /// How long karvon.lock may stay held by someone else: an owner then
  /// fails naming the holder; a guest waits this long for another guest.
  std::chrono::milliseconds lock_wait{5000};
  /// For pg_ctl start, and for a server that is starting to become ready.
  std::chrono::milliseconds start_timeout{60000};
};

class embedded_postgres {
public:
  /// Starts the server on `<data_dir>/postgres` (initdb on first use), or
  /// uses the one already running there. A stale postmaster.pid left by a
  /// crash is removed. Run as root, the server runs as the `postgres` system
  /// user. Throws startup_error naming the failed step and its output.
  /// Blocking: call it from main or a dedicated thread. Same as
  /// ownership::owner.
  explicit embedded_postgres(const std::string& data_dir);

  /// As above with this role and the default lock wait (5 s for an owner,
  /// 30 s for a guest, which may queue behind another short command).
  embedded_postgres(const std::string& data_dir, ownership role);

  /// As above with every option explicit (tests use short waits).
  embedded_postgres(const std::string& data_dir,
                    const embedded_options& options);

  /// Stops the server if this object owns it (see stop()).
  ~embedded_postgres();

  embedded_postgres(const embedded_postgres&) = delete;
  embedded_postgres& operator=(const embedded_postgres&) = delete;

  /// libpq connection string for the `karvon` database over the socket.
  const std::string& connection_string() const;

  /// The same for another database of this server (tests create their own).
  std::string connection_string(const std::string& dbname) const;

  /// True when this object ran `pg_ctl start` (false when it adopted a
  /// running server or connected to an owner's).
  bool started_here() const;

  /// True when stop() and the destructor will stop the server: an owner
  /// always, a guest only when it started the server.
  bool stops_server() const;

  /// The PostgreSQL data folder, `<data_dir>/postgres`, absolute.
  const std::string& data_folder() const;

  /// The directory that holds the server's socket.
  const std::string& socket_dir() const;

  /// Stops the server now (fast shutdown) if stops_server(), then releases
  /// karvon.lock. Idempotent; logs rather than throws.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::persistence
