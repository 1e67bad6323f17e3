// Process-wide logging: spdlog to stderr, as text or one JSON object a line.
#pragma once

#include "config/settings.hpp"

namespace karvon::app {

/// Sets the default logger's level and format. Call before starting threads.
void setup_logging(const config::log_settings& log);

} // namespace karvon::app
