// Errors of the persistence layer, as values. Start-up failures (the embedded
// server will not start, a migration fails) throw startup_error, because they
// end the process; everything after start-up reports a db_error instead.
#pragma once

#include <stdexcept>
#include <string>

namespace karvon::persistence {

/// Thrown only while starting: the message is for an operator and names what
/// failed (the file, the command, the server's own message).
class startup_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct db_error {
  enum class kind {
    unavailable, //!< no connection to the server (it is down or restarting)
    overloaded,  //!< the pool's queue is full; try again later
    conflict,    //!< a unique or exclusion constraint refused the write
    invalid,     //!< the server refused the statement (SQLSTATE class 22/23)
    in_doubt,    //!< the connection broke during COMMIT: outcome unknown
    failed,      //!< anything else
  };
  kind what = kind::failed;
  std::string sqlstate; //!< five characters when the server sent one
  std::string message;
};

/// "unavailable", "overloaded", ...: for logs and metrics labels.
const char* to_string(db_error::kind k);

} // namespace karvon::persistence
