// Where the database is: an external server named by database.url, or the
// embedded PostgreSQL under server.data_dir. The one place that decides.
#pragma once

#include <memory>
#include <string>

#include "config/settings.hpp"
#include "persistence/embedded_postgres.hpp"

namespace karvon::persistence {

class database {
public:
  /// With `s.database.url` set, uses that server (a postgresql:// URL or a
  /// key=value string, handed to libpq unchanged) and starts nothing; else
  /// runs the embedded PostgreSQL on `s.server.data_dir` in role `o`.
  /// Throws startup_error. Blocking: call it from main.
  database(const config::settings& s, ownership o);

  /// Stops the embedded server if it is ours to stop.
  ~database();

  database(const database&) = delete;
  database& operator=(const database&) = delete;

  /// libpq connection string of the karvon database.
  const std::string& conninfo() const { return conninfo_; }

  /// True when the embedded PostgreSQL is in use (no database.url).
  bool embedded() const { return embedded_ != nullptr; }

  /// Stops the embedded server now if it is ours to stop; idempotent.
  void stop();

private:
  std::unique_ptr<embedded_postgres> embedded_;
  std::string conninfo_;
};

} // namespace karvon::persistence
