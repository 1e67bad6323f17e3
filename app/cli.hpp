// The karvon command line.
#pragma once

namespace karvon::app {

/// Parses the command line and runs the subcommand; returns the process's
/// exit code (0 ok, 1 failure, 2 invalid setting or usage).
int run_cli(int argc, char** argv);

} // namespace karvon::app
