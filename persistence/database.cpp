#include "persistence/database.hpp"

namespace karvon::persistence {

database::database(const config::settings& s, ownership o) {
  if (!s.database.url.empty()) {
    conninfo_ = s.database.url;
    return;
  }
  embedded_ = std::make_unique<embedded_postgres>(s.server.data_dir, o);
  conninfo_ = embedded_->connection_string();
}

database::~database() = default;

void database::stop() {
  if (embedded_)
    embedded_->stop();
}

} // namespace karvon::persistence
