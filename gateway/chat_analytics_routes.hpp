// GET /api/v1/chat/analytics (operator): what users asked over a range of
// UTC days, and what the knowledge base answered badly.
#pragma once

#include "gateway/router.hpp"

namespace karvon::actors {
class chat_analytics;
}

namespace karvon::gateway {

/// Adds GET /api/v1/chat/analytics?from=&to= (role operator; admin always).
/// `analytics` must outlive the router.
void add_chat_analytics_routes(router& r, actors::chat_analytics& analytics);

} // namespace karvon::gateway
