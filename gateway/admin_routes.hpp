// The /admin routes: dead letters, the probe; the cluster with issue 5.
#pragma once

#include "gateway/router.hpp"

namespace karvon::actors {
class dead_letter_service;
}
namespace karvon::cluster {
class router;
}

namespace karvon::gateway {

struct admin_dependencies {
  actors::dead_letter_service* dead_letters = nullptr;
  cluster::router* router = nullptr; //!< for the probe entities
};

/// Adds every /admin route whose dependency is set. The dependencies must
/// outlive the router.
void add_admin_routes(router& r, admin_dependencies deps);

} // namespace karvon::gateway
