// Load from actors for the benchmarks: client actors that keep requests in
// flight to a destination the scenario chooses, counting answers.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/message.hpp>

#include "bench/scenario.hpp"

namespace karvon::cluster {
class router;
}

namespace karvon::bench {

/// The next request of a client: where to send it, and what.
using next_fn
    = std::function<std::pair<caf::actor, caf::message>(std::mt19937&)>;

/// Runs `clients` actors, each keeping `window` requests in flight (each
/// answered with an int), for `duration`; a sample of completed requests
/// per second, with the errors. Blocking.
sample run_load(caf::actor_system& sys, next_fn next, int clients, int window,
                std::chrono::milliseconds duration);

/// A plain actor answering (ping, x) with x: the raw CAF side.
caf::behavior echo(caf::event_based_actor* self);

/// "bench/<offset>" ... "bench/<offset + n - 1>".
std::vector<std::string> bench_keys(int n, int offset = 0);

/// Sends (ping, 1) once to every key through `r`, 4 x 32 in flight, and
/// returns once all are answered: the entities are active then. Blocking.
void activate_all(caf::actor_system& sys, const cluster::router& r,
                  const std::vector<std::string>& keys);

} // namespace karvon::bench
