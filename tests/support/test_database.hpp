// A private PostgreSQL for tests: one embedded server per test process,
// started on first use in a fresh folder under KARVON_TEST_WORK_DIR and
// stopped at exit, plus a fresh database per test so tests never see each
// other's rows.
#pragma once

#include <memory>
#include <string>

#include "persistence/embedded_postgres.hpp"

namespace karvon::testing {

/// Connection string of the `karvon` database on this process's shared test
/// server (started on the first call). Throws startup_error when the server
/// cannot start.
std::string test_server_conninfo();

/// Creates a new empty database with a unique name on the shared test
/// server and returns its connection string.
std::string fresh_database();

/// A new empty directory under KARVON_TEST_WORK_DIR, named after `tag` and
/// this process; removed with everything in it (servers stopped first) when
/// the object goes. Directories of earlier test processes that died are
/// cleaned up on first use.
class scratch_dir {
public:
  explicit scratch_dir(const std::string& tag);
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  /// Absolute path of the directory.
  const std::string& path() const { return path_; }

private:
  std::string path_;
};

/// Options for an embedded server in a test: short lock waits, so that a
/// test about a held lock fails in a fraction of a second.
persistence::embedded_options
test_server_options(persistence::ownership role
                    = persistence::ownership::owner);

/// Starts (or joins) an embedded PostgreSQL on `data_dir` with
/// test_server_options(role). Throws startup_error.
std::unique_ptr<persistence::embedded_postgres>
start_embedded(const std::string& data_dir,
               persistence::ownership role = persistence::ownership::owner);

/// The first column of the first row of `sql` on `conninfo`, as text ("" for
/// NULL). Throws what libpqxx throws.
std::string query_value(const std::string& conninfo, const std::string& sql);

/// Runs `sql` (one or more statements) on `conninfo` outside a transaction.
void execute(const std::string& conninfo, const std::string& sql);

} // namespace karvon::testing
