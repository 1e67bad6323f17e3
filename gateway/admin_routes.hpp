// The /admin routes: dead letters, the probe, the cluster.
#pragma once

#include <string>

#include "gateway/router.hpp"

namespace karvon::actors {
class dead_letter_service;
}
namespace karvon::cluster {
class router;
class operations;
} // namespace karvon::cluster

namespace karvon::gateway {

struct admin_dependencies {
  actors::dead_letter_service* dead_letters = nullptr;
  cluster::router* router = nullptr; //!< for the probe entities
  cluster::operations* cluster = nullptr;
  std::string local_node; //!< named in GET /admin/cluster
};

/// Adds every /admin route whose dependency is set. The dependencies must
/// outlive the router.
void add_admin_routes(router& r, admin_dependencies deps);

} // namespace karvon::gateway
