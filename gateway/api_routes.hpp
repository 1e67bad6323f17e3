// The /api/v1 routes. Handlers validate input here and hand the work to the
// domain layer (actors/); they never block.
#pragma once

#include <chrono>

#include "gateway/router.hpp"

namespace karvon::actors {
class partner_registry;
class knowledge_base;
class chat_history;
} // namespace karvon::actors
namespace karvon::cluster {
class router;
}

namespace karvon::gateway {

struct api_dependencies {
  actors::partner_registry* partners = nullptr;
  cluster::router* router = nullptr; //!< reaches entities by key
  actors::knowledge_base* kb = nullptr;
  /// POST /api/v1/chat/ask, through `router` to the user entities, and
  /// GET /api/v1/chat/sessions/{session_id}/turns.
  actors::chat_history* chat = nullptr;
  bool chat_anonymous = false;                    //!< chat.allow_anonymous
  std::chrono::milliseconds chat_deadline{20000}; //!< chat.deadline_ms
};

/// Adds every /api/v1 route whose dependency is set. The dependencies must
/// outlive the router.
void add_api_routes(router& r, api_dependencies deps);

/// POST, GET and DELETE /api/v1/kb/documents[/{id}] (gateway/kb_routes.cpp).
void add_kb_routes(router& r, actors::knowledge_base& kb);

/// The chat routes (gateway/chat_routes.cpp).
void add_chat_routes(router& r, cluster::router& entities,
                     actors::chat_history& history, bool allow_anonymous,
                     std::chrono::milliseconds deadline);

} // namespace karvon::gateway
