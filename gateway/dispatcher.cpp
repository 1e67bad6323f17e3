#include "gateway/dispatcher.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/api_keys.hpp"
#include "actors/clock.hpp"
#include "actors/idempotency.hpp"
#include "actors/rate_limiter.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/status.hpp"
#include "metrics/registry.hpp"

namespace karvon::gateway {

namespace {

constexpr std::string_view unmatched = "unmatched";

// Status codes are 100..599; one slot each keeps the hot path lock-free.
struct route_metrics {
  std::string label;
  std::array<std::atomic<metrics::counter*>, 600> by_code{};
  metrics::histogram* duration = nullptr;
};

std::string_view bearer_token(std::string_view header) {
  constexpr std::string_view scheme = "bearer";
  if (header.size() <= scheme.size())
    return {};
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i])
      return {};
  auto rest = header.substr(scheme.size());
  if (rest.front() != ' ')
    return {};
  while (!rest.empty() && rest.front() == ' ')
    rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t'))
    rest.remove_suffix(1);
  return rest;
}

response too_many(std::string_view limit, std::chrono::seconds retry_after) {
  nlohmann::json details
      = {{"limit", limit}, {"retry_after_s", retry_after.count()}};
  auto r = error_response(429, "rate_limited",
                          "too many requests; retry after the given seconds",
                          details.dump());
  r.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
  return r;
}

bool allowed(const route& r, const actors::principal& who,
             std::string_view method) {
  using actors::role;
  if (who.who == role::admin)
    return true;
  for (auto granted : r.who.roles)
    if (granted == who.who)
      return true;
  // Operators may read what only admins may change (API.md: "read-only
  // admin"): GET of a route for admins alone.
  bool admin_only
      = r.who.roles.empty()
        || std::find(r.who.roles.begin(), r.who.roles.end(), role::admin)
               != r.who.roles.end();
  return who.who == role::operator_ && (method == "GET" || method == "HEAD")
         && admin_only;
}

} // namespace

struct dispatcher::impl {
  router routes;
  config::http_settings http;
  actors::key_directory* keys;
  actors::idempotency_guard* idempotency = nullptr;
  actors::rate_limiter anon_limiter;
  actors::rate_limiter key_limiter;
  actors::rate_limiter user_limiter;
  actors::rate_limiter client_key_limiter;

  metrics::family<metrics::counter>* requests = nullptr;
  metrics::family<metrics::counter>* limited = nullptr;
  metrics::family<metrics::counter>* auth_failures = nullptr;
  std::unordered_map<std::string_view, std::unique_ptr<route_metrics>> by_route;
  route_metrics* unmatched_metrics = nullptr;

  impl(router r, const config::http_settings& h, actors::key_directory* k,
       metrics::registry& m, const actors::clock& c)
      : routes(std::move(r)), http(h), keys(k),
        anon_limiter(
            actors::per_minute_with_burst(h.anon_rate_per_min, h.burst_per_s),
            c),
        key_limiter(
            actors::per_minute_with_burst(h.key_rate_per_min, h.burst_per_s),
            c),
        user_limiter(
            actors::per_minute_with_burst(h.key_rate_per_min, h.burst_per_s),
            c),
        client_key_limiter({{static_cast<double>(h.client_key_rate_per_s),
                             static_cast<double>(h.client_key_rate_per_s)}},
                           c) {
    requests = &m.counters("karvon_http_requests_total",
                           "HTTP responses by route template and status.",
                           {"route", "code"});
    limited = &m.counters("karvon_http_rate_limited_total",
                          "Requests refused with 429, by the limit hit.",
                          {"limit"});
    auth_failures
        = &m.counters("karvon_http_auth_failures_total",
                      "Requests refused with 401, by reason.", {"reason"});
    auto& durations = m.histograms(
        "karvon_http_request_duration_seconds",
        "Time from a whole request read to its response ready, by route.",
        {"route"}, metrics::latency_buckets());
    auto add = [&](std::string_view label) {
      auto rm = std::make_unique<route_metrics>();
      rm->label = std::string{label};
      rm->duration = &durations.with({rm->label});
      auto* raw = rm.get();
      by_route[raw->label] = std::move(rm);
      return raw;
    };
    unmatched_metrics = add(unmatched);
    for (auto* r : routes.routes())
      if (!by_route.count(r->path))
        add(r->path);
  }

  route_metrics& metrics_for(std::string_view label) {
    auto it = by_route.find(label);
    return it == by_route.end() ? *unmatched_metrics : *it->second;
  }

  void record(route_metrics& rm, int status,
              std::chrono::steady_clock::duration took) {
    if (status < 100 || status > 599)
      status = 500;
    auto* c = rm.by_code[status].load(std::memory_order_acquire);
    if (!c) {
      c = &requests->with({rm.label, std::to_string(status)});
      rm.by_code[status].store(c, std::memory_order_release);
    }
    c->inc();
    rm.duration->observe(std::chrono::duration<double>(took).count());
  }

  // Refuses a failed key check with 401, or 429 once the client's IP has
  // failed too often: guessing keys costs the anonymous rate.
  response unauthorized(const request& req, std::string_view reason,
                        std::string_view message) {
    auth_failures->with({std::string{reason}}).inc();
    auto d = anon_limiter.take(req.client_ip);
    if (!d.allowed) {
      limited->with({"ip"}).inc();
      return too_many("ip", d.retry_after);
    }
    auto r = error_response(401, "unauthorized", message);
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
};

dispatcher::dispatcher(router routes, const config::http_settings& http,
                       actors::key_directory* keys, metrics::registry& metrics,
                       const actors::clock& clock)
    : impl_(std::make_unique<impl>(std::move(routes), http, keys, metrics,
                                   clock)) {}

dispatcher::~dispatcher() = default;

const router& dispatcher::routes() const {
  return impl_->routes;
}

void dispatcher::set_idempotency(actors::idempotency_guard* guard) {
  impl_->idempotency = guard;
}

void dispatcher::record_early(int status,
                              std::chrono::steady_clock::duration took) {
  impl_->record(*impl_->unmatched_metrics, status, took);
}

void dispatcher::dispatch(request req, responder done) {
  auto start = std::chrono::steady_clock::now();
  auto match = impl_->routes.match(req.method, req.path);
  auto& rm = impl_->metrics_for(match.route_label);

  // Every response leaves through here: one count, one log line. What the
  // log line needs is copied only when debug logging is on.
  struct pending {
    std::atomic<bool> answered{false};
    responder done;
    std::string method, target, ip;
  };
  auto p = std::make_shared<pending>();
  p->done = std::move(done);
  if (spdlog::should_log(spdlog::level::debug)) {
    p->method = req.method;
    p->target = req.target;
    p->ip = req.client_ip;
  }
  auto finish = [this, rm = &rm, start, p](response r) {
    if (p->answered.exchange(true))
      return;
    auto took = std::chrono::steady_clock::now() - start;
    impl_->record(*rm, r.status, took);
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("http {} {} route={} status={} ms={:.3f} ip={}", p->method,
                    p->target, rm->label, r.status,
                    std::chrono::duration<double, std::milli>(took).count(),
                    p->ip);
    auto done = std::move(p->done);
    done(std::move(r));
  };

  if (!match.found) {
    if (match.status == 405) {
      auto r = error_response(405, "method_not_allowed",
                              "this path does not take " + req.method);
      r.headers.emplace_back("Allow", match.allow);
      return finish(std::move(r));
    }
    return finish(error_response(404, "not_found", "no such path"));
  }
  const route& r = *match.found;
  req.route = std::string{match.route_label};
  req.params = std::move(match.params);

  // Authentication: a presented key is always checked, even on routes that
  // need none, so a wrong key never passes silently.
  if (auto header = req.header("authorization")) {
    auto token = bearer_token(*header);
    if (token.empty())
      return finish(impl_->unauthorized(
          req, "malformed", "Authorization must be 'Bearer <api key>'"));
    if (!impl_->keys)
      return finish(impl_->unauthorized(req, "unknown", "unknown API key"));
    auto result = impl_->keys->authenticate(token);
    if (auto failure = std::get_if<actors::auth_failure>(&result)) {
      auto reason = actors::to_string(*failure);
      auto message
          = *failure == actors::auth_failure::revoked     ? "API key revoked"
            : *failure == actors::auth_failure::malformed ? "malformed API key"
                                                          : "unknown API key";
      return finish(impl_->unauthorized(req, reason, message));
    }
    req.caller = std::get<actors::principal>(result);
  } else if (!r.who.anonymous) {
    return finish(
        impl_->unauthorized(req, "missing", "this route needs an API key"));
  }

  if (req.caller && !r.who.anonymous) {
    if (!allowed(r, *req.caller, req.method))
      return finish(error_response(403, "forbidden",
                                   std::string{"role "}
                                       + actors::to_string(req.caller->who)
                                       + " may not use this route"));
    if (!r.who.partner_param.empty() && req.caller->who == actors::role::partner
        && req.param(r.who.partner_param) != req.caller->partner_id)
      return finish(error_response(
          403, "forbidden", "a partner key may reach only its own partner"));
  }

  // Rate limits that need no body: per IP without a key, per key with one.
  bool per_user = false;
  if (r.rate_limited) {
    if (!req.caller) {
      auto d = impl_->anon_limiter.take(req.client_ip);
      if (!d.allowed) {
        impl_->limited->with({"ip"}).inc();
        return finish(too_many("ip", d.retry_after));
      }
    } else if (req.caller->who == actors::role::client) {
      // A client key speaks for many users: the key as a whole is capped,
      // and each of its users has the keyed rate (below, once the body
      // names the user).
      auto id = std::to_string(req.caller->key_id);
      auto d = impl_->client_key_limiter.take(id);
      if (!d.allowed) {
        impl_->limited->with({"client_key"}).inc();
        return finish(too_many("client_key", d.retry_after));
      }
      per_user = true;
    } else {
      auto d = impl_->key_limiter.take(std::to_string(req.caller->key_id));
      if (!d.allowed) {
        impl_->limited->with({"key"}).inc();
        return finish(too_many("key", d.retry_after));
      }
    }
  }

  if (r.json_body) {
    auto type = req.header("content-type");
    if (!type || !is_json_content_type(*type))
      return finish(error_response(415, "unsupported_media_type",
                                   "the body must be application/json"));
    // parse() checks UTF-8 too; an invalid sequence is malformed JSON.
    auto parsed = nlohmann::json::parse(req.body, nullptr, false);
    if (parsed.is_discarded())
      return finish(error_response(400, "malformed_json",
                                   "the body is not valid UTF-8 JSON"));
    if (!parsed.is_object())
      return finish(error_response(400, "invalid_body",
                                   "the body must be a JSON object"));
    req.json = std::make_shared<const nlohmann::json>(std::move(parsed));
  }

  if (per_user) {
    std::string user;
    if (req.json) {
      auto it = req.json->find("user_id");
      if (it != req.json->end() && it->is_string())
        user = it->get<std::string>();
    }
    if (user.empty())
      user = req.query("user_id").value_or("");
    auto id = std::to_string(req.caller->key_id);
    auto d = user.empty() ? impl_->key_limiter.take(id)
                          : impl_->user_limiter.take(id + "/" + user);
    if (!d.allowed) {
      auto limit = user.empty() ? "key" : "user";
      impl_->limited->with({limit}).inc();
      return finish(too_many(limit, d.retry_after));
    }
  }

  auto* key = r.idempotent && impl_->idempotency ? req.header("idempotency-key")
                                                 : nullptr;
  if (!key)
    return run_handler(r, req, std::move(finish));
  if (!actors::valid_idempotency_key(*key))
    return finish(invalid_field(
        "Idempotency-Key", "Idempotency-Key must be 1 to 255 visible ASCII "
                           "characters"));
  // Keys are per API key (or client IP) and route: two clients never share
  // one by accident.
  auto scope = (req.caller ? "key " + std::to_string(req.caller->key_id)
                           : "ip " + req.client_ip)
               + " " + req.route;
  auto shared = std::make_shared<request>(std::move(req));
  auto* guard = impl_->idempotency;
  auto idem_key = *shared->header("idempotency-key");
  guard->begin(
      scope, idem_key, shared->method, shared->path, shared->body,
      [this, route = &r, shared, guard, scope, idem_key,
       finish](actors::result<actors::idempotency_claim> res) mutable {
        if (auto f = std::get_if<actors::failure>(&res))
          return finish(failure_response(*f));
        auto& claim = std::get<actors::idempotency_claim>(res);
        using outcome = actors::idempotency_claim::outcome;
        switch (claim.what) {
        case outcome::replay: {
          auto replayed = json_response(claim.status, std::move(claim.body));
          replayed.headers.emplace_back("Idempotent-Replayed", "true");
          return finish(std::move(replayed));
        }
        case outcome::conflict:
          return finish(error_response(
              409, "idempotency_key_reused",
              "this Idempotency-Key was used for a different request"));
        case outcome::in_progress: {
          auto busy = error_response(
              409, "idempotency_key_in_progress",
              "a request with this Idempotency-Key is still running");
          busy.headers.emplace_back("Retry-After", "1");
          return finish(std::move(busy));
        }
        case outcome::proceed:
          break;
        }
        // The response is recorded before it is sent: a client that retries
        // after a lost answer gets it again instead of a second effect.
        run_handler(*route, *shared,
                    [guard, scope, idem_key, finish](response resp) mutable {
                      auto status = resp.status;
                      auto body = resp.body;
                      guard->complete(
                          scope, idem_key, status, std::move(body),
                          [finish, resp = std::move(resp)](
                              std::optional<actors::failure> f) mutable {
                            if (f)
                              spdlog::error(
                                  "could not record the response to an "
                                  "Idempotency-Key ({}); a retry may repeat it",
                                  f->message);
                            finish(std::move(resp));
                          });
                    });
      });
}

void dispatcher::run_handler(const route& r, const request& req,
                             responder finish) {
  try {
    r.run(req, finish);
  } catch (const std::exception& e) {
    spdlog::error("handler for {} {} threw: {}", req.method, req.route,
                  e.what());
    finish(error_response(500, "internal_error", "internal error"));
  }
}

} // namespace karvon::gateway
