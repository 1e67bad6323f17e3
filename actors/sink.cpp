#include "actors/sink.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/token_bucket.hpp"
#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/dead_letter_store.hpp"

namespace karvon::actors {

call_outcome call_outcome::success(std::string result) {
  call_outcome o;
  o.what = kind::success;
  o.text = std::move(result);
  return o;
}

call_outcome
call_outcome::retryable(std::string error,
                        std::optional<std::chrono::nanoseconds> retry_after) {
  call_outcome o;
  o.what = kind::retryable;
  o.text = std::move(error);
  if (retry_after)
    o.retry_after = std::max(*retry_after, std::chrono::nanoseconds{0});
  return o;
}

call_outcome call_outcome::permanent(std::string error, errc code) {
  call_outcome o;
  o.what = kind::permanent;
  o.text = std::move(error);
  o.code = code;
  return o;
}

void add_sink_message_types(caf::actor_system_config& cfg) {
  // These names go over the wire between nodes: never rename them.
  cfg.add_message_type<sink_job>("karvon.sink_job");
  cfg.add_message_type<call_outcome>("karvon.call_outcome");
}

namespace {

// The sink's messages to itself; only submit_atom is public.
using done_atom = caf::atom_constant<caf::atom("sinkdone")>;
using retry_atom = caf::atom_constant<caf::atom("sinkretry")>;
using wake_atom = caf::atom_constant<caf::atom("sinkwake")>;
using expire_atom = caf::atom_constant<caf::atom("sinkexpire")>;
using stored_atom = caf::atom_constant<caf::atom("sinkstored")>;

using time_point = clock::time_point;
using std::chrono::nanoseconds;

/// "2024-05-01T10:00:00.123456Z": what the dead_letters row takes.
std::string iso_utc(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                t.time_since_epoch())
                .count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ",
                static_cast<long long>(us % 1000000));
  return buf;
}

std::string millis(nanoseconds d) {
  return std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(d).count())
         + " ms";
}

// Labels of karvon_sink_calls_total{outcome}.
enum outcome_label {
  ok_label,
  retryable_label,
  permanent_label,
  timeout_label
};

class sink_actor : public caf::event_based_actor {
public:
  sink_actor(caf::actor_config& cfg, sink_config config, call_fn call,
             persistence::db_pool* pool, metrics::registry* metrics)
      : caf::event_based_actor(cfg), config_(std::move(config)),
        call_(std::move(call)), pool_(pool), clock_(&system_clock()),
        // Retries come back to the queue without a new admission, so it has
        // room for every job that can be out when the waiting ones are at
        // capacity: see sink_config::capacity.
        queue_(queue_options{config_.capacity + config_.max_in_flight,
                             config_.class_offsets},
               *clock_),
        windows_(*clock_),
        backoff_(config_.seed ? backoff(config_.backoff, *config_.seed)
                              : backoff(config_.backoff)) {
    if (config_.rate)
      bucket_.emplace(config_.rate->burst, config_.rate->per_second, *clock_);
    if (metrics)
      bind_metrics(*metrics);
  }

  const char* name() const override { return "karvon.sink"; }

  caf::behavior make_behavior() override {
    return {
        [this](submit_atom, sink_job& job) -> caf::result<std::string> {
          return submit(std::move(job));
        },
        [this](done_atom, std::uint64_t call, call_outcome& o) {
          auto label = o.what == call_outcome::kind::success ? ok_label
                       : o.what == call_outcome::kind::retryable
                           ? retryable_label
                           : permanent_label;
          finish(call, std::move(o), label);
          pump();
        },
        [this](expire_atom, std::uint64_t call) {
          finish(call,
                 call_outcome::retryable("no answer within "
                                         + millis(config_.call_timeout)),
                 timeout_label);
          pump();
        },
        [this](retry_atom, std::uint64_t id) {
          requeue(id);
          pump();
        },
        [this](wake_atom) {
          if (wake_ && *wake_ <= clock_->now())
            wake_.reset();
          pump();
        },
        [this](stored_atom, std::uint64_t id, std::int64_t row,
               const std::string& db_error) { stored(id, row, db_error); },
    };
  }

  // Every caller still waiting gets an answer, whatever stops the sink.
  void on_exit() override {
    for (auto& [id, p] : jobs_)
      if (p.promise.pending())
        p.promise.deliver(
            make_error(errc::unavailable, "sink " + config_.name + " stopped"));
    jobs_.clear();
    calls_.clear();
    waiting_ = 0;
    in_flight_ = 0;
    update_gauges();
  }

private:
  enum class stage { queued, in_flight, backing_off, storing };

  struct pending {
    sink_job job;
    caf::response_promise promise;
    time_point since; // arrival, for aging; a retry keeps it
    std::chrono::system_clock::time_point created; // for the dead letter
    std::string last_error;
    stage at = stage::queued;
  };

  struct metric_refs {
    metrics::gauge* depth = nullptr;
    metrics::gauge* in_flight = nullptr;
    metrics::counter* rejected = nullptr;
    metrics::counter* retries = nullptr;
    metrics::counter* calls[4] = {};
    metrics::counter* dead_letter_errors = nullptr;
    metrics::family<metrics::counter>* dead_letters = nullptr;
  };

  void bind_metrics(metrics::registry& r) {
    const std::vector<std::string> sink{config_.name};
    m_.depth
        = &r.gauges("karvon_sink_queue_depth",
                    "Jobs waiting in a sink: queued or backing off.", {"sink"})
               .with(sink);
    m_.in_flight = &r.gauges("karvon_sink_in_flight",
                             "Calls a sink has in flight.", {"sink"})
                        .with(sink);
    m_.rejected
        = &r.counters("karvon_sink_rejected_total",
                      "Submissions a full sink refused (overloaded).", {"sink"})
               .with(sink);
    m_.retries
        = &r.counters("karvon_sink_retries_total",
                      "Retries a sink scheduled after failed calls.", {"sink"})
               .with(sink);
    auto& calls = r.counters("karvon_sink_calls_total",
                             "Calls a sink made, by how they ended.",
                             {"sink", "outcome"});
    const char* labels[] = {"success", "retryable", "permanent", "timeout"};
    for (int i = 0; i < 4; ++i)
      m_.calls[i] = &calls.with({config_.name, labels[i]});
    m_.dead_letters
        = &r.counters("karvon_dead_letters_total",
                      "Jobs given up after their last attempt.", {"kind"});
    m_.dead_letter_errors
        = &r.counters("karvon_sink_dead_letter_errors_total",
                      "Dead letters a sink could not store.", {"sink"})
               .with(sink);
  }

  void update_gauges() {
    if (m_.depth)
      m_.depth->set(static_cast<double>(waiting_));
    if (m_.in_flight)
      m_.in_flight->set(static_cast<double>(in_flight_));
  }

  static void inc(metrics::counter* c) {
    if (c)
      c->inc();
  }

  caf::actor handle() { return caf::actor_cast<caf::actor>(this); }

  caf::result<std::string> submit(sink_job job) {
    if (job.priority >= queue_.classes())
      return make_error(errc::invalid_input,
                        "sink " + config_.name + ": no priority class "
                            + std::to_string(job.priority));
    if (waiting_ >= config_.capacity) {
      inc(m_.rejected);
      return make_error(errc::overloaded,
                        "sink " + config_.name + ": queue full");
    }
    auto id = next_job_++;
    auto& p = jobs_[id];
    p.job = std::move(job);
    p.job.attempts = 0;
    p.since = clock_->now();
    p.created = std::chrono::system_clock::now();
    p.promise = make_response_promise();
    auto promise = p.promise;
    // Cannot fail: the queue has room for capacity + max_in_flight.
    queue_.push(id, p.job.priority, p.job.sub_key, p.since);
    ++waiting_;
    pump();
    return promise;
  }

  // Starts calls while a slot, the rates and the windows allow; otherwise
  // sleeps until the first moment one of them may change its mind.
  void pump() {
    auto now = clock_->now();
    while (in_flight_ < config_.max_in_flight && !queue_.empty()) {
      if (now < paused_until_) {
        wake_at(paused_until_);
        break;
      }
      if (bucket_) {
        auto wait = bucket_->time_until(1);
        if (wait.count() > 0) {
          wake_at(now + wait);
          break;
        }
      }
      auto id = queue_.pop([this](std::uint64_t id, const std::string& key) {
        if (key.empty())
          return time_point::min();
        return windows_.next_allowed(key, jobs_.at(id).job.window);
      });
      if (!id) {
        if (auto t = queue_.next_ready())
          wake_at(*t);
        break;
      }
      if (bucket_)
        bucket_->try_take(1);
      auto& p = jobs_.at(*id);
      if (!p.job.sub_key.empty())
        windows_.try_acquire(p.job.sub_key, p.job.window);
      start(*id, p);
      now = clock_->now();
    }
    update_gauges();
  }

  // One wake-up message at a time, for the earliest moment needed; a later
  // one that was superseded arrives anyway and finds nothing to do.
  void wake_at(time_point t) {
    if (wake_ && *wake_ <= t)
      return;
    wake_ = t;
    scheduled_send(handle(), t, wake_atom::value);
  }

  void start(std::uint64_t id, pending& p) {
    p.at = stage::in_flight;
    --waiting_;
    ++in_flight_;
    ++p.job.attempts;
    auto call = next_call_++;
    calls_.emplace(call, id);
    if (config_.call_timeout.count() > 0)
      delayed_send(handle(), config_.call_timeout, expire_atom::value, call);
    // The completion may run on any thread: it only sends a message. A weak
    // handle, so a call that outlives the sink keeps nothing alive.
    auto done = [weak = caf::weak_actor_ptr{ctrl()}, call](call_outcome o) {
      if (auto strong = weak.lock())
        caf::anon_send(caf::actor_cast<caf::actor>(std::move(strong)),
                       done_atom::value, call, std::move(o));
    };
    try {
      call_(p.job, std::move(done));
    } catch (const std::exception& e) {
      // A bug in the call, not the service: retrying would repeat it.
      send(handle(), done_atom::value, call,
           call_outcome::permanent(std::string("the call threw: ") + e.what()));
    } catch (...) {
      send(handle(), done_atom::value, call,
           call_outcome::permanent("the call threw"));
    }
  }

  void finish(std::uint64_t call, call_outcome o, outcome_label label) {
    auto it = calls_.find(call);
    if (it == calls_.end())
      return; // a second `done`, or one after the attempt timed out
    auto id = it->second;
    calls_.erase(it);
    --in_flight_;
    inc(m_.calls[label]);
    auto& p = jobs_.at(id);
    switch (o.what) {
    case call_outcome::kind::success:
      p.promise.deliver(std::move(o.text));
      jobs_.erase(id);
      return;
    case call_outcome::kind::permanent:
      p.promise.deliver(make_error(o.code, std::move(o.text)));
      jobs_.erase(id);
      return;
    case call_outcome::kind::retryable:
      break;
    }
    p.last_error = std::move(o.text);
    std::optional<nanoseconds> asked;
    if (o.retry_after.count() >= 0)
      asked = o.retry_after;
    if (asked) {
      // The service refuses everyone of this sub-key (or everyone) for a
      // while: calling sooner only earns more refusals.
      auto until
          = clock_->now() + std::min(*asked, config_.backoff.max_retry_after);
      if (!p.job.sub_key.empty())
        windows_.block(p.job.sub_key, until);
      else
        paused_until_ = std::max(paused_until_, until);
    }
    if (p.job.attempts >= config_.max_attempts) {
      give_up(id, p);
      return;
    }
    auto delay = backoff_.delay(p.job.attempts - 1, asked);
    p.at = stage::backing_off;
    ++waiting_;
    inc(m_.retries);
    delayed_send(handle(), delay, retry_atom::value, id);
  }

  void requeue(std::uint64_t id) {
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.at != stage::backing_off)
      return;
    auto& p = it->second;
    p.at = stage::queued;
    if (!queue_.push(id, p.job.priority, p.job.sub_key, p.since)) {
      // Cannot happen (see the queue's capacity); never lose the caller.
      --waiting_;
      p.promise.deliver(make_error(errc::internal, "sink " + config_.name
                                                       + ": no room to retry"));
      jobs_.erase(it);
    }
  }

  void give_up(std::uint64_t id, pending& p) {
    if (m_.dead_letters)
      m_.dead_letters->with({p.job.kind}).inc();
    if (!pool_) {
      spdlog::warn("sink {}: gave up on a {} job after {} attempts: {} (no "
                   "database: dead letter not stored)",
                   config_.name, p.job.kind, p.job.attempts, p.last_error);
      answer_given_up(p, "not stored: no database");
      jobs_.erase(id);
      return;
    }
    persistence::dead_letter_row row;
    row.kind = p.job.kind;
    row.sink = config_.name;
    row.payload = p.job.payload;
    row.last_error = p.last_error;
    row.attempts = p.job.attempts;
    row.priority = p.job.priority;
    row.sub_key = p.job.sub_key;
    row.window_calls = static_cast<int>(p.job.window.calls);
    row.window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        p.job.window.per)
                        .count();
    row.created_at = iso_utc(p.created);
    row.failed_at = iso_utc(std::chrono::system_clock::now());
    auto row_id = std::make_shared<std::int64_t>(0);
    p.at = stage::storing;
    // Both callbacks run on a pool thread: the work writes, `done` only
    // sends the outcome back here.
    bool queued = pool_->submit(
        [row = std::move(row), row_id](pqxx::connection_base& c) {
          *row_id = persistence::insert_dead_letter(c, row);
        },
        [weak = caf::weak_actor_ptr{ctrl()}, id,
         row_id](std::optional<persistence::db_error> e) {
          if (auto strong = weak.lock())
            caf::anon_send(caf::actor_cast<caf::actor>(std::move(strong)),
                           stored_atom::value, id, e ? 0 : *row_id,
                           e ? e->message : std::string{});
        });
    if (!queued)
      stored(id, 0, "the database queue is full");
  }

  void stored(std::uint64_t id, std::int64_t row, const std::string& db_error) {
    auto it = jobs_.find(id);
    if (it == jobs_.end())
      return;
    auto& p = it->second;
    if (db_error.empty()) {
      answer_given_up(p, "dead letter " + std::to_string(row));
    } else {
      inc(m_.dead_letter_errors);
      spdlog::error("sink {}: could not store the dead letter of a {} job "
                    "(payload {} bytes, last error: {}): {}",
                    config_.name, p.job.kind, p.job.payload.size(),
                    p.last_error, db_error);
      answer_given_up(p, "dead letter not stored: " + db_error);
    }
    jobs_.erase(it);
  }

  void answer_given_up(pending& p, const std::string& note) {
    p.promise.deliver(make_error(
        errc::unavailable, "sink " + config_.name + ": gave up after "
                               + std::to_string(p.job.attempts) + " attempts: "
                               + p.last_error + " (" + note + ")"));
  }

  sink_config config_;
  call_fn call_;
  persistence::db_pool* pool_;
  const actors::clock* clock_;
  job_queue queue_;
  window_limiter windows_;
  std::optional<token_bucket> bucket_;
  backoff backoff_;
  metric_refs m_;

  std::unordered_map<std::uint64_t, pending> jobs_; // admitted, unanswered
  std::unordered_map<std::uint64_t, std::uint64_t> calls_; // call -> job
  std::uint64_t next_job_ = 1;
  std::uint64_t next_call_ = 1;
  std::size_t waiting_ = 0; // queued or backing off
  std::size_t in_flight_ = 0;
  time_point paused_until_{};      // a service's retry_after for everyone
  std::optional<time_point> wake_; // the wake-up message on its way
};

} // namespace

caf::actor spawn_sink(caf::actor_system& sys, sink_config config, call_fn call,
                      persistence::db_pool* pool, metrics::registry* metrics) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("sink " + config.name + ": " + what);
  };
  if (config.capacity == 0)
    fail("capacity must be at least 1");
  if (config.max_in_flight == 0)
    fail("max_in_flight must be at least 1");
  if (config.max_attempts < 1)
    fail("max_attempts must be at least 1");
  if (config.class_offsets.empty() || config.class_offsets.size() > 256)
    fail("there must be 1 to 256 priority classes");
  if (config.rate && !(config.rate->per_second > 0 && config.rate->burst >= 1))
    fail("rate needs per_second > 0 and burst >= 1");
  if (config.call_timeout.count() < 0)
    fail("call_timeout must not be negative");
  if (!call)
    fail("no call function");
  // The queue and the backoff check the rest, here rather than inside the
  // actor's constructor, where a throw would be CAF's to handle.
  job_queue{queue_options{config.capacity, config.class_offsets},
            system_clock()};
  backoff{config.backoff, 0};
  return sys.spawn<sink_actor>(std::move(config), std::move(call), pool,
                               metrics);
}

} // namespace karvon::actors
