// Asking an entity from outside the actor world (an HTTP handler on a Beast
// thread): a short-lived actor makes the request, so the caller never
// blocks, and the answer comes back through a callback on a CAF thread.
// Include it only where an ask is made: it pulls in CAF's headers.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>

#include "actors/errors.hpp"
#include "actors/messages.hpp"
#include "cluster/router.hpp"

namespace karvon::cluster {

/// Sends `msg` to the entity `key` and calls `done` exactly once, on a CAF
/// thread, with its reply of type R or the error (errc::not_found for a key
/// of no known kind; caf::sec::request_timeout after `timeout`). Never
/// blocks; safe from any thread.
template <class R>
void ask(const router& r, std::string key, caf::message msg,
         std::chrono::milliseconds timeout,
         std::function<void(caf::expected<R>)> done) {
  auto dest = r.route_for(key);
  if (!dest) {
    done(actors::make_error(actors::errc::not_found,
                            "no entity kind for " + key));
    return;
  }
  // The state travels as spawn arguments: CAF 0.17 dereferences a null
  // tuple when a lambda actor is spawned with none.
  r.system().spawn(
      [](caf::event_based_actor* self, caf::actor dest, std::string key,
         caf::message msg, std::chrono::milliseconds timeout,
         std::function<void(caf::expected<R>)> done) {
        self->request(dest, timeout, actors::route_atom::value, key,
                      std::move(msg))
            .then([done](R& reply) { done(std::move(reply)); },
                  [done](caf::error& err) { done(std::move(err)); });
      },
      dest, std::move(key), std::move(msg), timeout, std::move(done));
}

} // namespace karvon::cluster
