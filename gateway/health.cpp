#include "gateway/health.hpp"

#include <atomic>
#include <mutex>

#include <nlohmann/json.hpp>

#include "actors/timer_service.hpp"
#include "metrics/registry.hpp"

namespace karvon::gateway {

void health_checks::add(std::string name, bool critical, health_check check) {
  entries_.push_back({std::move(name), critical, std::move(check)});
}

namespace {

// Gathers the checks' answers; answers once all are in or the deadline
// passes, whichever comes first. A check that missed the deadline counts
// as failed with "timeout".
struct check_round : std::enable_shared_from_this<check_round> {
  std::mutex mutex;
  std::vector<std::optional<check_result>> results;
  std::vector<health_checks::entry> entries;
  responder done;
  health_options options;
  std::chrono::steady_clock::time_point started
      = std::chrono::steady_clock::now();
  bool answered = false;
  std::size_t pending = 0;

  void arrive(std::size_t i, check_result r) {
    std::unique_lock lock{mutex};
    if (answered || results[i])
      return;
    results[i] = std::move(r);
    if (--pending == 0)
      answer(lock);
  }

  void deadline() {
    std::unique_lock lock{mutex};
    if (!answered)
      answer(lock);
  }

  void answer(std::unique_lock<std::mutex>& lock) {
    answered = true;
    nlohmann::json checks = nlohmann::json::object();
    bool down = false;
    bool degraded = false;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      nlohmann::json c;
      auto& r = results[i];
      bool ok = r && r->ok;
      c["status"] = ok ? "ok" : "down";
      c["critical"] = entries[i].critical;
      if (r)
        c["latency_ms"]
            = std::chrono::duration<double, std::milli>(r->latency).count();
      if (!ok)
        c["error"] = r ? r->error : std::string{"timeout"};
      checks[entries[i].name] = std::move(c);
      if (!ok)
        (entries[i].critical ? down : degraded) = true;
    }
    auto status = down ? "down" : degraded ? "degraded" : "ok";
    nlohmann::json body = {
        {"status", status},
        {"node_id", options.node_id},
        {"version", options.version},
        {"checks", std::move(checks)},
        {"took_ms", std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - started)
                        .count()},
    };
    auto r = json_response(down ? 503 : 200, body.dump());
    if (down)
      r.headers.emplace_back("Retry-After", "5");
    auto d = std::move(done);
    lock.unlock();
    d(std::move(r));
  }
};

} // namespace

void add_health_routes(router& r, const health_checks& checks,
                       metrics::registry& metrics,
                       actors::timer_service& timers, health_options options) {
  // Liveness: no key, no rate limit, no dependency. It answers as long as
  // the process serves HTTP.
  r.add({"GET", "/health", access::none(), false, false,
         [](const request&, responder done) {
           done(json_response(200, R"({"status":"ok"})"));
         }});

  r.add({"GET", "/health/detailed", access::only({actors::role::operator_}),
         false, true,
         [&checks, &timers, options](const request&, responder done) {
           auto round_ = std::make_shared<check_round>();
           round_->entries = checks.entries();
           round_->results.resize(round_->entries.size());
           round_->pending = round_->entries.size();
           round_->done = std::move(done);
           round_->options = options;
           if (round_->entries.empty()) {
             round_->deadline();
             return;
           }
           timers.after(options.check_timeout,
                        [round_] { round_->deadline(); });
           for (std::size_t i = 0; i < round_->entries.size(); ++i)
             round_->entries[i].check(
                 [round_, i](check_result res) { round_->arrive(i, res); });
         }});

  auto who = options.metrics_public ? access::none()
                                    : access::only({actors::role::operator_});
  r.add({"GET", "/metrics", who, false, !options.metrics_public,
         [&metrics](const request&, responder done) {
           response res;
           res.status = 200;
           res.content_type = "text/plain; version=0.0.4; charset=utf-8";
           res.body = metrics.render();
           done(std::move(res));
         }});
}

} // namespace karvon::gateway
