// A sink: the one actor in front of an outside service (an LLM server, a
// Telegram bot, a geocoder). Callers submit jobs; the sink runs them through
// the service at the pace the service allows and answers each caller once.
//
//   caller --(submit_atom, sink_job)--> sink --call(job, done)--> service
//          <-- result string | error --      <--done(outcome)-- any thread
//
// - An explicit bounded queue (job_queue: priority classes with aging, fair
//   turns between sub-keys). A submission is moved into it, or refused with
//   errc::overloaded, as soon as the sink reads it: callers wait in the
//   queue, never in the mailbox.
// - At most max_in_flight calls at once; an optional global token bucket;
//   an optional sliding window per sub-key (chosen per job: 1/s for a
//   private chat, 20/min for a group).
// - Retryable failures are retried with exponential backoff and full
//   jitter; a service's retry_after is obeyed for that job and also pauses
//   its sub-key (or, for a job without one, the whole sink) for that long,
//   since asking again sooner only earns more refusals.
// - Dead letters: a job whose max_attempts attempts all failed retryably is
//   written to the dead_letters table (through the db_pool; the sink never
//   blocks), and its caller then gets errc::unavailable. Permanent failures
//   are not dead-lettered: retrying them cannot help, and the caller, who
//   gets the error at once, is the one who can act on it (a blocked chat, a
//   bad request).
//
// The service call is injected (call_fn), so the sink knows no HTTP. It runs
// on the sink's thread and must not block; its completion may come from any
// thread and only sends a message back to the sink.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include "actors/backoff.hpp"
#include "actors/errors.hpp"
#include "actors/job_queue.hpp"
#include "actors/window_limiter.hpp"

namespace karvon::persistence {
class db_pool;
}

namespace karvon::metrics {
class registry;
}

namespace karvon::actors {

/// (submit_atom, sink_job) -> std::string: the service's result, or an
/// error (see spawn_sink).
using submit_atom = caf::atom_constant<caf::atom("sinksubmit")>;

/// One unit of work for the outside service. The sink reads priority,
/// sub_key and window; payload and kind are the call's business (and the
/// dead letter's).
struct sink_job {
  /// Priority class: 0 is the most urgent, below sink_config's class count.
  std::uint8_t priority = 0;
  /// Jobs with the same sub-key (a chat id) share a window and take fair
  /// turns with other sub-keys; empty: none.
  std::string sub_key;
  /// The sub-key's limit, chosen by the caller; unlimited by default.
  window_limit window;
  /// What the job is, for dead letters and their replay ("telegram.send").
  std::string kind;
  /// Opaque to the sink; stored as text in a dead letter, so UTF-8.
  std::string payload;
  /// Set by the sink before each call: 1 on the first attempt.
  std::int32_t attempts = 0;
};

/// How one call went. Build with the three factories.
struct call_outcome {
  enum class kind : std::uint8_t { success, retryable, permanent };
  kind what = kind::permanent;
  /// The result on success, else the error text.
  std::string text;
  /// Retryable: how long the service asked to wait; negative: it did not.
  std::chrono::nanoseconds retry_after{-1};
  /// Permanent: the error code the caller gets.
  errc code = errc::internal;

  static call_outcome success(std::string result);
  static call_outcome
  retryable(std::string error,
            std::optional<std::chrono::nanoseconds> retry_after = {});
  static call_outcome permanent(std::string error, errc code = errc::internal);
};

/// Called once per attempt, on the sink's thread: start the call and return
/// at once (copy from `job` what the call needs: it lives only as long as
/// this function runs); call `done` exactly once, from any thread. Calls of
/// `done` after the first, or after the sink timed the attempt out, are
/// ignored. A throw is a permanent failure of the job.
using call_fn = std::function<void(const sink_job& job,
                                   std::function<void(call_outcome)> done)>;

/// A global token bucket: `per_second` calls a second, bursts of `burst`.
struct token_rate {
  double per_second = 1;
  double burst = 1;
};

struct sink_config {
  /// The {sink} label of metrics and the `sink` of dead letters: unique
  /// among the process's sinks (a replay finds its sink by this name).
  std::string name = "sink";
  /// Jobs waiting (queued or backing off before a retry) beyond which new
  /// submissions get overloaded. Jobs already admitted are never dropped,
  /// so up to capacity + max_in_flight may wait while failed calls return.
  std::size_t capacity = 1000;
  std::size_t max_in_flight = 4;
  /// None: no global rate limit.
  std::optional<token_rate> rate;
  /// Aging offsets, one per priority class (see job_queue.hpp).
  std::vector<std::chrono::nanoseconds> class_offsets
      = linear_aging(5, std::chrono::seconds{10});
  /// Attempts per job, the first included; then the dead letter.
  int max_attempts = 5;
  backoff_options backoff;
  /// Seeds the backoff jitter (tests); none: random.
  std::optional<std::uint64_t> seed;
  /// An attempt whose `done` has not come after this long fails retryably
  /// (the service may still be working on it); zero: wait forever.
  std::chrono::nanoseconds call_timeout{0};
};

/// Spawns a sink. `pool` (may be null: dead letters are then only counted
/// and logged) and `metrics` (may be null) must outlive the actor. Replies
/// to a submission with the result, or with: errc::overloaded at once when
/// the queue is full; errc::invalid_input for a priority class that does not
/// exist; the permanent outcome's code and text; errc::unavailable after the
/// last attempt (once the dead letter is stored) or when the sink stops.
/// Throws std::invalid_argument for a config that cannot work (zero
/// capacity, max_in_flight or max_attempts; no class; bad backoff). Call at
/// start-up; stop the sink with anon_send_exit.
caf::actor spawn_sink(caf::actor_system& sys, sink_config config, call_fn call,
                      persistence::db_pool* pool, metrics::registry* metrics);

/// Announces sink_job and call_outcome to CAF (names "karvon.sink_job",
/// "karvon.call_outcome"), so that submissions cross nodes. Call on the
/// config before the actor system is made.
void add_sink_message_types(caf::actor_system_config& cfg);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, window_limit& x) {
  return f(caf::meta::type_name("window_limit"), x.calls, x.per);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sink_job& x) {
  return f(caf::meta::type_name("sink_job"), x.priority, x.sub_key, x.window,
           x.kind, x.payload, x.attempts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, call_outcome& x) {
  return f(caf::meta::type_name("call_outcome"), x.what, x.text, x.retry_after,
           x.code);
}

} // namespace karvon::actors
