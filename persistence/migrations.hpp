// Versioned schema migrations, compiled into the binary from
// persistence/migrations/NNNN_name.sql.
#pragma once

#include <string>
#include <vector>

namespace karvon::persistence {

struct migration {
  int version;      //!< NNNN of the file name
  std::string name; //!< the file name, "0001_init.sql"
  std::string sql;
};

/// The migrations of this build, in version order.
const std::vector<migration>& builtin_migrations();

/// Applies the migrations not yet recorded in schema_migrations, each in its
/// own transaction, under a PostgreSQL advisory lock so that nodes starting
/// together apply each once. Returns how many it applied. Throws
/// startup_error naming the file and the server's message. Blocking.
int migrate(const std::string& conninfo,
            const std::vector<migration>& migrations = builtin_migrations());

} // namespace karvon::persistence
