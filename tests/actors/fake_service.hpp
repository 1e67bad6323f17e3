// An in-process stand-in for a rate-limited outside service, for sink
// tests. It behaves like the real ones: it answers after a latency from its
// own thread (never the caller's), enforces its own concurrency, rate and
// per-key window limits by refusing with a retryable 503/429 and a
// retry_after, and can be scripted to fail, hang, answer twice or hold its
// answers until released. It records every call with its time, and the
// highest concurrency it saw.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/sink.hpp"
#include "actors/timer_service.hpp"

namespace karvon::testing {

using steady_time = std::chrono::steady_clock::time_point;

/// Empty when at most burst + per_second * (t_j - t_i + slack) calls fall
/// in every interval [t_i, t_j] of `times` (sorted); else the first
/// offending interval.
inline std::string rate_violation(const std::vector<steady_time>& times,
                                  actors::token_rate rate,
                                  std::chrono::nanoseconds slack) {
  for (std::size_t i = 0; i < times.size(); ++i)
    for (std::size_t j = i; j < times.size(); ++j) {
      std::chrono::duration<double> span = times[j] - times[i] + slack;
      auto allowed = rate.burst + rate.per_second * span.count();
      if (static_cast<double>(j - i + 1) > allowed + 1e-9)
        return std::to_string(j - i + 1) + " calls within "
               + std::to_string(span.count() * 1000) + " ms (calls "
               + std::to_string(i) + ".." + std::to_string(j) + ")";
    }
  return {};
}

/// Empty when no `limit.per` - slack interval of `times` (sorted) holds more
/// than `limit.calls` calls; else the first offence.
inline std::string window_violation(const std::vector<steady_time>& times,
                                    actors::window_limit limit,
                                    std::chrono::nanoseconds slack) {
  for (std::size_t i = 0; i + limit.calls < times.size(); ++i)
    if (times[i + limit.calls] - times[i] < limit.per - slack)
      return std::to_string(limit.calls + 1) + " calls within "
             + std::to_string(
                 std::chrono::duration_cast<std::chrono::microseconds>(
                     times[i + limit.calls] - times[i])
                     .count())
             + " us (calls " + std::to_string(i) + "..)";
  return {};
}

struct fake_service_options {
  /// From the call to its answer, on the fake's own thread.
  std::chrono::nanoseconds latency{std::chrono::milliseconds{1}};
  /// Calls at once beyond which it answers 503; 0: no limit.
  std::size_t max_concurrency = 0;
  /// Its own global rate; beyond it answers 429.
  std::optional<actors::token_rate> rate;
  /// Enforce each job's sub-key window (the job's own window); beyond it
  /// answers 429.
  bool enforce_windows = false;
  /// The retry_after of its 429s and 503s.
  std::chrono::nanoseconds retry_after{std::chrono::milliseconds{50}};
  /// Tolerance for the gap between the sink's clock read and the fake's
  /// (both steady_clock, a few microseconds apart on the sink's thread).
  std::chrono::nanoseconds slack{std::chrono::milliseconds{2}};
};

/// What a script makes the fake answer to one call.
struct fake_answer {
  enum class delivery { once, twice, never };
  actors::call_outcome outcome;
  delivery how = delivery::once;
};

struct fake_call {
  std::string payload;
  std::string sub_key;
  int priority = 0;
  int attempt = 0;
  steady_time at;          //!< when the call came in
  steady_time answered_at; //!< when the answer left (if it did)
  bool refused = false;    //!< by the fake's own limits
  actors::call_outcome::kind outcome = actors::call_outcome::kind::success;
};

class fake_service {
public:
  /// Scripted answer for a call, or nullopt for the normal one ("ok:" +
  /// payload); `index` counts calls from 0.
  using script_fn = std::function<std::optional<fake_answer>(
      const actors::sink_job& job, std::size_t index)>;

  explicit fake_service(fake_service_options options = {})
      : options_(std::move(options)) {}

  ~fake_service() {
    // Answers still held are dropped with the fake, as a dead service's.
    std::lock_guard lock{mutex_};
    held_.clear();
  }

  /// The sink's call function. Keep the fake alive while the sink may call.
  actors::call_fn call() {
    return [this](const actors::sink_job& job,
                  std::function<void(actors::call_outcome)> done) {
      on_call(job, std::move(done));
    };
  }

  void script(script_fn f) {
    std::lock_guard lock{mutex_};
    script_ = std::move(f);
  }

  /// Keeps every answer back until release().
  void hold() {
    std::lock_guard lock{mutex_};
    holding_ = true;
  }

  /// Sends the answers held, and answers normally from now on.
  void release() {
    std::vector<std::function<void()>> held;
    {
      std::lock_guard lock{mutex_};
      holding_ = false;
      held.swap(held_);
    }
    for (auto& f : held)
      timers_.after(std::chrono::nanoseconds{0}, std::move(f));
  }

  std::vector<fake_call> calls() const {
    std::lock_guard lock{mutex_};
    return calls_;
  }

  /// Calls of the job with this payload, in order.
  std::vector<fake_call> calls_of(const std::string& payload) const {
    std::vector<fake_call> out;
    for (auto& c : calls())
      if (c.payload == payload)
        out.push_back(c);
    return out;
  }

  std::size_t max_concurrency_seen() const {
    std::lock_guard lock{mutex_};
    return max_seen_;
  }

  /// Calls refused by the fake's own limits.
  std::size_t refused() const {
    std::lock_guard lock{mutex_};
    return refused_;
  }

  /// Calls waiting for their answer now.
  std::size_t in_progress() const {
    std::lock_guard lock{mutex_};
    return current_;
  }

private:
  // Runs on the sink's thread: records, decides, and schedules the answer.
  void on_call(const actors::sink_job& job,
               std::function<void(actors::call_outcome)> done) {
    auto now = std::chrono::steady_clock::now();
    std::unique_lock lock{mutex_};
    auto index = calls_.size();
    fake_call rec;
    rec.payload = job.payload;
    rec.sub_key = job.sub_key;
    rec.priority = job.priority;
    rec.attempt = job.attempts;
    rec.at = now;
    ++current_;
    max_seen_ = std::max(max_seen_, current_);
    std::optional<fake_answer> answer;
    if (auto why = over_limits(job, now); !why.empty()) {
      rec.refused = true;
      ++refused_;
      answer = fake_answer{
          actors::call_outcome::retryable(why, options_.retry_after)};
    } else {
      accepted_.push_back(now);
      if (!job.sub_key.empty())
        accepted_by_key_[job.sub_key].push_back(now);
      if (script_)
        answer = script_(job, index);
      if (!answer)
        answer
            = fake_answer{actors::call_outcome::success("ok:" + job.payload)};
    }
    rec.outcome = answer->outcome.what;
    calls_.push_back(rec);
    if (answer->how == fake_answer::delivery::never) {
      --current_; // lost on the way back, not stuck in the service
      return;
    }
    auto complete = [this, index, answer = *answer, done = std::move(done)] {
      {
        std::lock_guard lock{mutex_};
        --current_;
        calls_[index].answered_at = std::chrono::steady_clock::now();
      }
      done(answer.outcome);
      if (answer.how == fake_answer::delivery::twice)
        done(answer.outcome);
    };
    if (holding_) {
      held_.push_back(std::move(complete));
      return;
    }
    lock.unlock();
    timers_.after(options_.latency, std::move(complete));
  }

  // Why the fake refuses this call; empty when its limits allow it. Holds
  // the lock.
  std::string over_limits(const actors::sink_job& job, steady_time now) {
    if (options_.max_concurrency > 0 && current_ > options_.max_concurrency)
      return "503: more than " + std::to_string(options_.max_concurrency)
             + " calls at once";
    if (options_.rate) {
      // With this call, at most burst + rate * span calls since any earlier
      // one. Only the recent past can offend.
      auto n = accepted_.size();
      for (std::size_t i = n > 4096 ? n - 4096 : 0; i < n; ++i) {
        std::chrono::duration<double> span
            = now - accepted_[i] + options_.slack;
        if (static_cast<double>(n - i + 1)
            > options_.rate->burst + options_.rate->per_second * span.count()
                  + 1e-9)
          return "429: over the global rate";
      }
    }
    if (options_.enforce_windows && !job.sub_key.empty()
        && job.window.limited()) {
      auto& times = accepted_by_key_[job.sub_key];
      if (times.size() >= job.window.calls
          && now - times[times.size() - job.window.calls]
                 < job.window.per - options_.slack)
        return "429: over the window of " + job.sub_key;
    }
    return {};
  }

  fake_service_options options_;
  mutable std::mutex mutex_;
  script_fn script_;
  bool holding_ = false;
  std::vector<std::function<void()>> held_;
  std::vector<fake_call> calls_;
  std::vector<steady_time> accepted_;
  std::map<std::string, std::vector<steady_time>> accepted_by_key_;
  std::size_t current_ = 0;
  std::size_t max_seen_ = 0;
  std::size_t refused_ = 0;
  // Last: its thread stops first, before the state its callbacks touch.
  actors::timer_service timers_;
};

} // namespace karvon::testing
