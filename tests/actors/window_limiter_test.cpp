#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/window_limiter.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

const window_limit one_per_second{1, 1s};
const window_limit twenty_per_minute{20, 60s};

TEST(WindowLimiter, allows_the_limit_within_a_window_then_says_when_next) {
  manual_clock clock;
  window_limiter w{clock};
  auto t0 = clock.now();
  window_limit three_per_minute{3, 60s};
  EXPECT_TRUE(w.try_acquire("group", three_per_minute));
  clock.advance(10s);
  EXPECT_TRUE(w.try_acquire("group", three_per_minute));
  EXPECT_TRUE(w.try_acquire("group", three_per_minute));
  EXPECT_FALSE(w.try_acquire("group", three_per_minute));
  EXPECT_EQ(w.next_allowed("group", three_per_minute), t0 + 60s);
}

// A sliding window, not a fixed one that resets: after calls at 0, 10 and
// 20 s, the fourth may go at 60 s (the first has left), the fifth only at
// 70 s.
TEST(WindowLimiter, slides_the_window_instead_of_resetting_it) {
  manual_clock clock;
  window_limiter w{clock};
  auto t0 = clock.now();
  window_limit three_per_minute{3, 60s};
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(w.try_acquire("g", three_per_minute));
    clock.advance(10s);
  }
  clock.advance(30s - 1ns); // 60 s - 1 ns
  EXPECT_FALSE(w.try_acquire("g", three_per_minute));
  clock.advance(1ns);
  EXPECT_TRUE(w.try_acquire("g", three_per_minute));
  EXPECT_FALSE(w.try_acquire("g", three_per_minute));
  EXPECT_EQ(w.next_allowed("g", three_per_minute), t0 + 70s);
}

TEST(WindowLimiter, keeps_keys_apart_each_with_its_own_limit) {
  manual_clock clock;
  window_limiter w{clock};
  EXPECT_TRUE(w.try_acquire("private", one_per_second));
  EXPECT_FALSE(w.try_acquire("private", one_per_second));
  for (int i = 0; i < 20; ++i)
    EXPECT_TRUE(w.try_acquire("group", twenty_per_minute)) << i;
  EXPECT_FALSE(w.try_acquire("group", twenty_per_minute));
  EXPECT_TRUE(w.try_acquire("other private", one_per_second));
  clock.advance(1s);
  EXPECT_TRUE(w.try_acquire("private", one_per_second));
  EXPECT_FALSE(w.try_acquire("group", twenty_per_minute));
}

TEST(WindowLimiter, lets_an_unknown_or_unlimited_key_go_now) {
  manual_clock clock;
  window_limiter w{clock};
  EXPECT_LE(w.next_allowed("new", one_per_second), clock.now());
  for (int i = 0; i < 100; ++i)
    EXPECT_TRUE(w.try_acquire("free", window_limit{}));
  EXPECT_EQ(w.size(), 0u) << "an unlimited key needs no memory";
}

TEST(WindowLimiter, blocks_a_key_until_the_time_the_service_asked) {
  manual_clock clock;
  window_limiter w{clock};
  auto t0 = clock.now();
  w.block("chat", t0 + 3s);
  w.block("chat", t0 + 1s); // an earlier block does not shorten it
  EXPECT_FALSE(w.try_acquire("chat", window_limit{}));
  EXPECT_FALSE(w.try_acquire("chat", one_per_second));
  EXPECT_EQ(w.next_allowed("chat", one_per_second), t0 + 3s);
  EXPECT_TRUE(w.try_acquire("other", one_per_second));
  clock.advance(3s);
  EXPECT_TRUE(w.try_acquire("chat", one_per_second));
  EXPECT_EQ(w.next_allowed("chat", one_per_second), t0 + 4s);
}

TEST(WindowLimiter, remembers_the_longest_window_a_key_was_given) {
  manual_clock clock;
  window_limiter w{clock};
  window_limit two_per_minute{2, 60s};
  EXPECT_TRUE(w.try_acquire("k", two_per_minute));
  EXPECT_TRUE(w.try_acquire("k", two_per_minute));
  clock.advance(2s);
  // A shorter limit in between must not erase the minute's history.
  EXPECT_TRUE(w.try_acquire("k", one_per_second));
  EXPECT_FALSE(w.try_acquire("k", two_per_minute));
}

TEST(WindowLimiter, forgets_keys_that_behave_as_new) {
  manual_clock clock;
  window_limiter w{clock};
  for (int i = 0; i < 1000; ++i)
    w.try_acquire("chat-" + std::to_string(i), one_per_second);
  w.block("blocked", clock.now() + 5s);
  EXPECT_EQ(w.size(), 1001u);
  clock.advance(1s);
  w.forget_idle();
  EXPECT_EQ(w.size(), 1u) << "the block is still ahead";
  clock.advance(4s);
  w.forget_idle();
  EXPECT_EQ(w.size(), 0u);
}

// Memory follows the keys active within their window, with no help: a
// million one-off chats over time leave a bounded number of keys.
TEST(WindowLimiter, stays_bounded_when_many_keys_pass_through) {
  manual_clock clock;
  window_limiter w{clock};
  std::size_t most = 0;
  for (int i = 0; i < 100000; ++i) {
    w.try_acquire("chat-" + std::to_string(i), one_per_second);
    clock.advance(10ms); // 100 keys a second, each idle after 1 s
    most = std::max(most, w.size());
  }
  EXPECT_LE(most, 400u);
}

// Random attempts on a few keys with mixed limits: whatever went through
// never has more than `calls` calls in any interval of length `per`.
TEST(WindowLimiter, never_lets_more_than_the_limit_through_any_window) {
  manual_clock clock;
  window_limiter w{clock};
  std::mt19937 rng{7};
  std::map<std::string, window_limit> limits{
      {"a", {1, 50ms}}, {"b", {5, 200ms}}, {"c", {20, 1s}}};
  std::map<std::string, std::vector<clock::time_point>> passed;
  std::uniform_int_distribution<int> key(0, 2), step_us(0, 5000);
  for (int i = 0; i < 20000; ++i) {
    auto k = std::string(1, static_cast<char>('a' + key(rng)));
    auto& limit = limits[k];
    auto next = w.next_allowed(k, limit);
    bool ok = w.try_acquire(k, limit);
    EXPECT_EQ(ok, next <= clock.now()) << "next_allowed and try_acquire agree";
    if (ok)
      passed[k].push_back(clock.now());
    clock.advance(std::chrono::microseconds{step_us(rng)});
  }
  for (auto& [k, times] : passed) {
    auto limit = limits[k];
    ASSERT_GT(times.size(), limit.calls) << k;
    for (std::size_t i = 0; i + limit.calls < times.size(); ++i)
      ASSERT_GE(times[i + limit.calls] - times[i], limit.per) << k << " " << i;
  }
  // The limit was the binding constraint, not the attempts: key a is tried
  // about every 7.5 ms over 50 s and got close to one call per 50 ms.
  EXPECT_GT(passed["a"].size(), 700u);
}

} // namespace
} // namespace karvon::actors
