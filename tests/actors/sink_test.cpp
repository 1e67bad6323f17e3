#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <gtest/gtest.h>

#include "actors/sink.hpp"
#include "metrics/registry.hpp"
#include "tests/actors/fake_service.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;
using testing::fake_answer;
using testing::fake_call;
using testing::fake_service;
using testing::fake_service_options;
using testing::steady_time;

// The answers to a batch of submissions, filled in by a client actor as
// they come; `duplicates` counts second answers to one submission.
struct answers {
  explicit answers(std::size_t n) : got(n), at(n) {}

  void set(std::size_t i, caf::expected<std::string> x) {
    std::lock_guard lock{mutex};
    if (got[i]) {
      ++duplicates;
      return;
    }
    got[i] = std::move(x);
    at[i] = std::chrono::steady_clock::now();
    ++count;
    cv.notify_all();
  }

  /// False when fewer than `n` answers came within `timeout`.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock{mutex};
    return cv.wait_for(lock, timeout, [&] { return count >= n; });
  }

  std::size_t answered() {
    std::lock_guard lock{mutex};
    return count;
  }

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::optional<caf::expected<std::string>>> got;
  std::vector<steady_time> at;
  std::size_t count = 0;
  std::size_t duplicates = 0;
};

sink_job job(std::string payload, std::uint8_t priority = 0,
             std::string sub_key = {}, window_limit window = {}) {
  sink_job j;
  j.payload = std::move(payload);
  j.priority = priority;
  j.sub_key = std::move(sub_key);
  j.window = window;
  j.kind = "test.job";
  return j;
}

// Polls `pred` every millisecond; false when it is still false at `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end)
      return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::vector<std::string> payloads(const std::vector<fake_call>& calls) {
  std::vector<std::string> out;
  for (auto& c : calls)
    out.push_back(c.payload);
  return out;
}

// Sends every job to the sink, in order and without waiting, and records
// the answers; stops after the last one.
caf::behavior client(caf::event_based_actor* self, caf::actor sink,
                     std::vector<sink_job> jobs, std::shared_ptr<answers> a) {
  auto left = std::make_shared<std::size_t>(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i)
    self->request(sink, 10s, submit_atom::value, jobs[i])
        .then(
            [=](std::string& r) {
              a->set(i, std::move(r));
              if (--*left == 0)
                self->quit();
            },
            [=](caf::error& e) {
              a->set(i, std::move(e));
              if (--*left == 0)
                self->quit();
            });
  if (jobs.empty())
    self->quit();
  // Stay up for the answers; the last one quits.
  return {[](caf::ok_atom) {}};
}

class Sink : public ::testing::Test {
protected:
  Sink() {
    cfg_.set("scheduler.max-threads", 2);
    add_sink_message_types(cfg_);
    add_error_category(cfg_);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
  }

  ~Sink() override {
    // ~actor_system waits for every actor: stop the sinks first.
    for (auto& s : sinks_)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    sys_.reset();
  }

  static sink_config config(std::string name) {
    sink_config c;
    c.name = std::move(name);
    c.capacity = 1000;
    c.max_in_flight = 4;
    c.class_offsets = linear_aging(5, 100ms);
    c.max_attempts = 3;
    c.backoff.base = 1ms;
    c.backoff.cap = 10ms;
    c.seed = 1;
    return c;
  }

  caf::actor spawn(sink_config c) {
    auto s = spawn_sink(*sys_, std::move(c), fake_.call(), nullptr, &metrics_);
    sinks_.push_back(s);
    return s;
  }

  // Submits every job from one client actor, in order, without waiting.
  std::shared_ptr<answers> submit(const caf::actor& sink,
                                  std::vector<sink_job> jobs) {
    auto a = std::make_shared<answers>(jobs.size());
    // The state goes in as spawn arguments: CAF 0.17.6 dereferences a null
    // argument tuple when a function actor is spawned with none (UBSan
    // stops there), so a capturing lambda with no arguments will not do.
    sys_->spawn(client, sink, std::move(jobs), a);
    return a;
  }

  // Stops a sink and waits until it has, so that nothing it holds (a call
  // function) outlives the test body.
  void stop(const caf::actor& sink) {
    caf::scoped_actor self{*sys_};
    self->send_exit(sink, caf::exit_reason::user_shutdown);
    self->wait_for(sink);
  }

  caf::expected<std::string> ask(const caf::actor& sink, sink_job j) {
    auto a = submit(sink, {std::move(j)});
    if (!a->wait_for(1))
      return caf::make_error(caf::sec::request_timeout);
    return std::move(*a->got[0]);
  }

  double gauge(const std::string& name, const std::string& sink) {
    return metrics_.gauges(name, "", {"sink"}).with({sink}).value();
  }

  std::uint64_t counter(const std::string& name,
                        std::vector<std::string> labels) {
    std::vector<std::string> names{"sink"};
    if (labels.size() == 2)
      names.push_back("outcome");
    if (name == "karvon_dead_letters_total")
      names = {"kind"};
    return metrics_.counters(name, "", names).with(labels).value();
  }

  std::string render(const caf::error& e) { return sys_->render(e); }

  fake_service_options fake_options_;
  fake_service fake_{fake_options_};
  metrics::registry metrics_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::vector<caf::actor> sinks_;
};

TEST_F(Sink, answers_a_job_with_the_service_result) {
  auto sink = spawn(config("basic"));
  auto r = ask(sink, job("hello"));
  ASSERT_TRUE(r) << render(r.error());
  EXPECT_EQ(*r, "ok:hello");
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].attempt, 1);
  EXPECT_EQ(counter("karvon_sink_calls_total", {"basic", "success"}), 1u);
}

TEST_F(Sink, refuses_a_priority_class_it_does_not_have) {
  auto sink = spawn(config("classes"));
  auto r = ask(sink, job("x", 5));
  ASSERT_FALSE(r);
  EXPECT_EQ(errc_of(r.error()), errc::invalid_input);
  EXPECT_TRUE(fake_.calls().empty());
}

TEST_F(Sink, refuses_a_config_that_cannot_work) {
  auto bad = [&](auto change) {
    auto c = config("bad");
    change(c);
    EXPECT_THROW(spawn_sink(*sys_, c, fake_.call(), nullptr, nullptr),
                 std::invalid_argument);
  };
  bad([](sink_config& c) { c.capacity = 0; });
  bad([](sink_config& c) { c.max_in_flight = 0; });
  bad([](sink_config& c) { c.max_attempts = 0; });
  bad([](sink_config& c) { c.class_offsets.clear(); });
  bad([](sink_config& c) { c.class_offsets = {0s, 2s, 1s}; });
  bad([](sink_config& c) { c.rate = token_rate{0, 1}; });
  bad([](sink_config& c) { c.backoff.base = 0s; });
}

// The heart of it: a burst of 1000 jobs, half of them spread over ten chats
// with a window each, against a service that refuses anything beyond its
// limits. The sink must keep to all of them by itself: the service never
// refuses, and its records show no excess, to the microsecond.
// The heart of it: a burst of 1000 jobs, half of them spread over ten chats
// with a window each, against a service that refuses anything beyond its
// limits. Each limit binds: the rate (2000/s) is below what four calls of
// 1 ms could do, a chat's window (4 per 50 ms) below its share of that rate,
// and the burst starts more calls at once than four. The sink must keep to
// all of them by itself: the service never refuses, and its records show no
// excess.
TEST_F(Sink, never_exceeds_its_concurrency_rate_or_windows_under_a_burst) {
  fake_service_options o;
  o.latency = 1ms;
  o.max_concurrency = 4;
  o.rate = token_rate{2000, 10};
  o.enforce_windows = true;
  fake_service fake{o};
  auto c = config("burst");
  c.capacity = 1000;
  c.max_in_flight = 4;
  c.rate = token_rate{2000, 10};
  auto sink = spawn_sink(*sys_, c, fake.call(), nullptr, &metrics_);
  sinks_.push_back(sink);

  const window_limit four_per_50ms{4, 50ms};
  std::vector<sink_job> jobs;
  for (int i = 0; i < 1000; ++i) {
    auto key = i % 2 ? "chat-" + std::to_string(i / 2 % 10) : std::string{};
    jobs.push_back(job("job-" + std::to_string(i),
                       static_cast<std::uint8_t>(i % 5), key,
                       key.empty() ? window_limit{} : four_per_50ms));
  }
  auto a = submit(sink, jobs);
  ASSERT_TRUE(a->wait_for(1000, 20s)) << a->answered() << " answered";
  stop(sink);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(*a->got[i]) << i << ": " << render(a->got[i]->error());
    EXPECT_EQ(**a->got[i], "ok:job-" + std::to_string(i));
  }
  EXPECT_EQ(a->duplicates, 0u);

  auto calls = fake.calls();
  EXPECT_EQ(calls.size(), 1000u) << "no call was refused and retried";
  EXPECT_EQ(fake.refused(), 0u);
  EXPECT_LE(fake.max_concurrency_seen(), 4u);
  EXPECT_EQ(fake.max_concurrency_seen(), 4u) << "the limit was reached";
  std::vector<steady_time> all;
  std::map<std::string, std::vector<steady_time>> by_key;
  for (auto& call : calls) {
    all.push_back(call.at);
    if (!call.sub_key.empty())
      by_key[call.sub_key].push_back(call.at);
  }
  EXPECT_EQ(testing::rate_violation(all, {2000, 10}, o.slack), "");
  ASSERT_EQ(by_key.size(), 10u);
  for (auto& [key, times] : by_key) {
    EXPECT_EQ(times.size(), 50u);
    EXPECT_EQ(testing::window_violation(times, four_per_50ms, o.slack), "")
        << key;
  }
  // The rate was binding: 990 calls beyond the burst at 2000/s.
  EXPECT_GE(all.back() - all.front(), 490ms);
  EXPECT_EQ(gauge("karvon_sink_queue_depth", "burst"), 0.0);
  EXPECT_EQ(gauge("karvon_sink_in_flight", "burst"), 0.0);
}

// One chat has thirty messages queued, two others two each, sent after it:
// they are served in turns, not after the thirty.
TEST_F(Sink, gives_sub_keys_fair_turns) {
  auto c = config("fair");
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.hold();
  std::vector<sink_job> jobs;
  for (int i = 0; i < 30; ++i)
    jobs.push_back(job("busy-" + std::to_string(i), 2, "busy"));
  for (auto key : {"q1", "q2"})
    for (int i = 0; i < 2; ++i)
      jobs.push_back(job(std::string(key) + "-" + std::to_string(i), 2, key));
  auto a = submit(sink, jobs);
  ASSERT_TRUE(eventually([&] {
    return gauge("karvon_sink_queue_depth", "fair") == 33;
  })) << "the first job is in flight, the rest queued";
  fake_.release();
  ASSERT_TRUE(a->wait_for(34));
  auto order = payloads(fake_.calls());
  ASSERT_EQ(order.size(), 34u);
  // busy-1 arrived before the quiet chats, so it goes first; then each chat
  // in turn.
  EXPECT_EQ(std::vector<std::string>(order.begin(), order.begin() + 7),
            (std::vector<std::string>{"busy-0", "busy-1", "q1-0", "q2-0",
                                      "busy-2", "q1-1", "q2-1"}));
  EXPECT_EQ(order.back(), "busy-29");
}

TEST_F(Sink, serves_more_urgent_classes_first) {
  auto c = config("classes");
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.hold();
  std::vector<sink_job> jobs{job("first", 4)};
  for (int p = 4; p >= 0; --p)
    jobs.push_back(
        job("class-" + std::to_string(p), static_cast<std::uint8_t>(p)));
  auto a = submit(sink, jobs);
  ASSERT_TRUE(eventually(
      [&] { return gauge("karvon_sink_queue_depth", "classes") == 5; }));
  fake_.release();
  ASSERT_TRUE(a->wait_for(6));
  EXPECT_EQ(payloads(fake_.calls()),
            (std::vector<std::string>{"first", "class-0", "class-1", "class-2",
                                      "class-3", "class-4"}));
}

// Aging with a step of 100 ms: a low job (4) that has waited about 200 ms
// ranks at +400 ms, between a fresh high job (1: +300 ms) and a fresh
// medium one (3: +500 ms). The margins are 100 ms either way; the exact
// rule is pinned by JobQueue's tests.
TEST_F(Sink, lets_a_long_waiting_low_job_overtake_fresher_higher_ones) {
  auto c = config("aging");
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.hold();
  auto first = submit(sink, {job("first", 0), job("low", 4)});
  ASSERT_TRUE(eventually(
      [&] { return gauge("karvon_sink_queue_depth", "aging") == 1; }));
  std::this_thread::sleep_for(200ms);
  auto later
      = submit(sink, {job("medium", 3), job("high", 1), job("interactive", 0)});
  ASSERT_TRUE(eventually(
      [&] { return gauge("karvon_sink_queue_depth", "aging") == 4; }));
  fake_.release();
  ASSERT_TRUE(first->wait_for(2));
  ASSERT_TRUE(later->wait_for(3));
  EXPECT_EQ(payloads(fake_.calls()),
            (std::vector<std::string>{"first", "interactive", "high", "low",
                                      "medium"}));
}

// A 503 with retry_after for a job without a sub-key pauses the whole sink:
// neither the job nor any other is sent before the time the service gave.
TEST_F(Sink, honours_retry_after_before_calling_again) {
  auto c = config("retry-after");
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.script(
      [](const sink_job& j, std::size_t index) -> std::optional<fake_answer> {
        if (j.payload == "throttled" && j.attempts == 1)
          return fake_answer{call_outcome::retryable("503 busy", 80ms)};
        return std::nullopt;
      });
  auto a = submit(sink, {job("throttled"), job("other")});
  ASSERT_TRUE(a->wait_for(2));
  ASSERT_TRUE(*a->got[0]) << render(a->got[0]->error());
  EXPECT_EQ(**a->got[0], "ok:throttled");
  auto throttled = fake_.calls_of("throttled");
  auto other = fake_.calls_of("other");
  ASSERT_EQ(throttled.size(), 2u);
  ASSERT_EQ(other.size(), 1u);
  EXPECT_GE(throttled[1].at - throttled[0].answered_at, 80ms);
  EXPECT_GE(other[0].at - throttled[0].answered_at, 80ms)
      << "the whole sink waits";
  EXPECT_EQ(counter("karvon_sink_retries_total", {"retry-after"}), 1u);
}

// A 429 for one chat holds back that chat only.
TEST_F(Sink, pauses_only_the_sub_key_a_service_throttled) {
  auto c = config("keyed");
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.script(
      [](const sink_job& j, std::size_t index) -> std::optional<fake_answer> {
        if (j.payload == "a-0" && j.attempts == 1)
          return fake_answer{call_outcome::retryable("429 slow down", 100ms)};
        return std::nullopt;
      });
  auto a = submit(sink, {job("a-0", 0, "a"), job("a-1", 0, "a"),
                         job("b-0", 0, "b"), job("b-1", 0, "b")});
  ASSERT_TRUE(a->wait_for(4));
  auto refused_at = fake_.calls_of("a-0")[0].answered_at;
  ASSERT_EQ(fake_.calls_of("a-0").size(), 2u);
  EXPECT_GE(fake_.calls_of("a-1")[0].at - refused_at, 100ms);
  EXPECT_GE(fake_.calls_of("a-0")[1].at - refused_at, 100ms);
  // Chat b went meanwhile. Had the whole sink paused, a-1 (queued first)
  // would have gone before b-0 once it resumed.
  auto order = payloads(fake_.calls());
  ASSERT_EQ(order.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(order.begin(), order.begin() + 3),
            (std::vector<std::string>{"a-0", "b-0", "b-1"}));
  EXPECT_LT(fake_.calls_of("b-1")[0].at - refused_at, 100ms);
}

// The delays are those of a backoff with the sink's seed: uniform in
// [0, min(cap, base * 2^n)], so at most 20, 40, 80 and 160 ms here, and
// each one waited out before the next attempt.
TEST_F(Sink, backs_off_exponentially_between_attempts) {
  auto c = config("backoff");
  c.max_in_flight = 1;
  c.max_attempts = 5;
  c.backoff.base = 20ms;
  c.backoff.cap = 1s;
  c.seed = 42;
  auto sink = spawn(c);
  fake_.script([](const sink_job&, std::size_t) -> std::optional<fake_answer> {
    return fake_answer{call_outcome::retryable("503 unavailable")};
  });
  auto r = ask(sink, job("doomed"));
  ASSERT_FALSE(r);
  EXPECT_EQ(errc_of(r.error()), errc::unavailable);
  EXPECT_NE(message_of(r.error()).find("gave up after 5 attempts: 503"),
            std::string::npos)
      << message_of(r.error());

  backoff expected{c.backoff, 42};
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 5u);
  for (int i = 0; i < 4; ++i) {
    auto d = expected.delay(i);
    EXPECT_LE(d, expected.ceiling(i));
    auto gap = calls[i + 1].at - calls[i].answered_at;
    EXPECT_GE(gap, d) << "retry " << i;
    EXPECT_LT(gap, d + 50ms) << "retry " << i;
    EXPECT_EQ(calls[i + 1].attempt, i + 2);
  }
  EXPECT_EQ(counter("karvon_sink_retries_total", {"backoff"}), 4u);
  EXPECT_EQ(counter("karvon_sink_calls_total", {"backoff", "retryable"}), 5u);
  EXPECT_EQ(counter("karvon_dead_letters_total", {"test.job"}), 1u);
}

TEST_F(Sink, passes_a_permanent_error_to_the_caller_without_retrying) {
  auto sink = spawn(config("permanent"));
  fake_.script([](const sink_job&, std::size_t) -> std::optional<fake_answer> {
    return fake_answer{call_outcome::permanent("403 blocked", errc::conflict)};
  });
  auto r = ask(sink, job("to a blocked chat"));
  ASSERT_FALSE(r);
  EXPECT_EQ(errc_of(r.error()), errc::conflict);
  EXPECT_EQ(message_of(r.error()), "403 blocked");
  EXPECT_EQ(fake_.calls().size(), 1u);
  EXPECT_EQ(counter("karvon_dead_letters_total", {"test.job"}), 0u);
}

TEST_F(Sink, fails_a_job_whose_call_throws_without_retrying) {
  std::atomic<int> calls{0};
  auto sink = spawn_sink(
      *sys_, config("throws"),
      [&](const sink_job&, std::function<void(call_outcome)>) {
        ++calls;
        throw std::runtime_error("boom");
      },
      nullptr, nullptr);
  sinks_.push_back(sink);
  auto r = ask(sink, job("x"));
  stop(sink);
  ASSERT_FALSE(r);
  EXPECT_EQ(errc_of(r.error()), errc::internal);
  EXPECT_EQ(message_of(r.error()), "the call threw: boom");
  EXPECT_EQ(calls.load(), 1);
}

// The service holds every answer, so nothing leaves the queue: the two
// submissions beyond its capacity can only have been answered at once.
TEST_F(Sink, answers_overloaded_at_once_when_the_queue_is_full) {
  auto c = config("full");
  c.capacity = 3;
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.hold();
  std::vector<sink_job> jobs;
  for (int i = 0; i < 6; ++i)
    jobs.push_back(job("job-" + std::to_string(i)));
  auto a = submit(sink, jobs);
  ASSERT_TRUE(a->wait_for(2)) << "the overflow is answered while held";
  for (int i : {4, 5}) {
    ASSERT_TRUE(a->got[i]) << i;
    ASSERT_FALSE(*a->got[i]) << i;
    EXPECT_EQ(errc_of(a->got[i]->error()), errc::overloaded);
  }
  EXPECT_EQ(gauge("karvon_sink_queue_depth", "full"), 3.0);
  EXPECT_EQ(gauge("karvon_sink_in_flight", "full"), 1.0);
  EXPECT_EQ(counter("karvon_sink_rejected_total", {"full"}), 2u);
  EXPECT_EQ(fake_.calls().size(), 1u);
  fake_.release();
  ASSERT_TRUE(a->wait_for(6));
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(*a->got[i]) << i;
}

TEST_F(Sink, retries_a_call_that_never_answers) {
  auto c = config("timeout");
  c.call_timeout = 50ms;
  auto sink = spawn(c);
  fake_.script(
      [](const sink_job& j, std::size_t) -> std::optional<fake_answer> {
        if (j.attempts == 1)
          return fake_answer{call_outcome::success("lost"),
                             fake_answer::delivery::never};
        return std::nullopt;
      });
  auto r = ask(sink, job("x"));
  ASSERT_TRUE(r) << render(r.error());
  EXPECT_EQ(*r, "ok:x");
  auto calls = fake_.calls();
  ASSERT_EQ(calls.size(), 2u);
  // Timed from the sink's start of the attempt, a moment before the fake
  // saw it.
  EXPECT_GE(calls[1].at - calls[0].at, 45ms);
  EXPECT_EQ(counter("karvon_sink_calls_total", {"timeout", "timeout"}), 1u);
}

TEST_F(Sink, answers_waiting_callers_when_it_stops) {
  auto c = config("stopping");
  c.max_in_flight = 1;
  auto sink = spawn(c);
  fake_.hold();
  std::vector<sink_job> jobs;
  for (int i = 0; i < 5; ++i)
    jobs.push_back(job("job-" + std::to_string(i)));
  auto a = submit(sink, jobs);
  ASSERT_TRUE(eventually(
      [&] { return gauge("karvon_sink_queue_depth", "stopping") == 4; }));
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  ASSERT_TRUE(a->wait_for(5));
  for (int i = 0; i < 5; ++i) {
    ASSERT_FALSE(*a->got[i]);
    EXPECT_EQ(errc_of(a->got[i]->error()), errc::unavailable);
  }
  fake_.release(); // a late answer to a stopped sink goes nowhere
}

// Everything at once: a queue too small for the burst, a service that
// fails a quarter of the calls retryably, some permanently, and answers some
// twice. Every submission gets exactly one answer, and it agrees with what
// the service did.
TEST_F(Sink, answers_every_job_exactly_once_whatever_happens) {
  auto c = config("chaos");
  c.capacity = 50;
  c.max_in_flight = 4;
  c.max_attempts = 3;
  auto sink = spawn(c);
  // Every tenth job always fails retryably (and is given up), the next
  // always permanently, the next is answered twice; the rest fail
  // retryably at random, a quarter of the time. The first jobs are always
  // admitted, so every kind of answer occurs.
  auto rng = std::make_shared<std::mt19937>(5);
  fake_.script(
      [rng](const sink_job& j, std::size_t) -> std::optional<fake_answer> {
        auto i = std::stoi(j.payload.substr(4));
        if (i % 10 == 0)
          return fake_answer{call_outcome::retryable("503")};
        if (i % 10 == 1)
          return fake_answer{call_outcome::permanent("400")};
        if (i % 10 == 2)
          return fake_answer{call_outcome::success("twice"),
                             fake_answer::delivery::twice};
        if (std::uniform_int_distribution<int>(0, 3)(*rng) == 0)
          return fake_answer{call_outcome::retryable("503")};
        return std::nullopt;
      });
  const int n = 300;
  std::vector<sink_job> jobs;
  for (int i = 0; i < n; ++i)
    jobs.push_back(job("job-" + std::to_string(i), i % 5,
                       i % 3 ? "chat-" + std::to_string(i % 7) : ""));
  auto a = submit(sink, jobs);
  ASSERT_TRUE(a->wait_for(n)) << a->answered() << " answered";
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(a->duplicates, 0u);
  std::map<errc, int> seen;
  for (int i = 0; i < n; ++i) {
    auto& r = *a->got[i];
    auto calls = fake_.calls_of(jobs[i].payload);
    if (r) {
      ++seen[errc{}];
      ASSERT_FALSE(calls.empty());
      EXPECT_EQ(calls.back().outcome, call_outcome::kind::success) << i;
      EXPECT_TRUE(*r == "ok:" + jobs[i].payload || *r == "twice") << *r;
      continue;
    }
    auto code = errc_of(r.error());
    ++seen[code];
    switch (code) {
    case errc::overloaded:
      EXPECT_TRUE(calls.empty()) << i;
      break;
    case errc::internal:
      ASSERT_FALSE(calls.empty());
      EXPECT_EQ(calls.back().outcome, call_outcome::kind::permanent) << i;
      break;
    case errc::unavailable:
      EXPECT_EQ(calls.size(), 3u) << i;
      for (auto& call : calls)
        EXPECT_EQ(call.outcome, call_outcome::kind::retryable) << i;
      break;
    default:
      ADD_FAILURE() << i << ": " << render(r.error());
    }
    EXPECT_LE(calls.size(), 3u);
  }
  // The mix really happened.
  EXPECT_GT(seen[errc{}], 0);
  EXPECT_GT(seen[errc::overloaded], 0);
  EXPECT_GT(seen[errc::internal], 0);
  EXPECT_GT(seen[errc::unavailable], 0);
  EXPECT_EQ(gauge("karvon_sink_queue_depth", "chaos"), 0.0);
  EXPECT_EQ(gauge("karvon_sink_in_flight", "chaos"), 0.0);
}

} // namespace
} // namespace karvon::actors

namespace karvon::actors {
namespace {

// Submissions may come from another node: the job and the outcome must
// cross CAF's binary serializer unchanged.
TEST(SinkMessages, a_submission_and_an_outcome_survive_the_binary_serializer) {
  caf::actor_system_config cfg;
  add_sink_message_types(cfg);
  caf::actor_system sys{cfg};
  sink_job j;
  j.priority = 3;
  j.sub_key = "-100123";
  j.window = {20, 60s};
  j.kind = "telegram.send";
  j.payload = R"({"text":"ўзбек"})";
  j.attempts = 2;
  auto outcome = call_outcome::retryable("429", 3s);
  auto original = caf::make_message(submit_atom::value, j, outcome);
  std::vector<char> buf;
  caf::binary_serializer out{sys, buf};
  auto err = out(original);
  ASSERT_FALSE(err) << sys.render(err);
  caf::binary_deserializer in{sys, buf};
  caf::message copy;
  err = in(copy);
  ASSERT_FALSE(err) << sys.render(err);
  ASSERT_TRUE((copy.match_elements<submit_atom, sink_job, call_outcome>()));
  auto& k = copy.get_as<sink_job>(1);
  EXPECT_EQ(k.priority, 3);
  EXPECT_EQ(k.sub_key, "-100123");
  EXPECT_EQ(k.window.calls, 20u);
  EXPECT_EQ(k.window.per, 60s);
  EXPECT_EQ(k.kind, "telegram.send");
  EXPECT_EQ(k.payload, j.payload);
  EXPECT_EQ(k.attempts, 2);
  auto& o = copy.get_as<call_outcome>(2);
  EXPECT_EQ(o.what, call_outcome::kind::retryable);
  EXPECT_EQ(o.text, "429");
  EXPECT_EQ(o.retry_after, 3s);
  EXPECT_EQ(caf::to_string(copy), caf::to_string(original));
}

} // namespace
} // namespace karvon::actors
