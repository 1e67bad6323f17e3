#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/job_queue.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

// Five classes as the LLM sink has them: interactive, urgent, high, medium,
// low; a job climbs one class per second of waiting.
queue_options five_classes(std::size_t capacity = 100) {
  return {capacity, linear_aging(5, 1s)};
}

std::vector<std::uint64_t> drain(job_queue& q,
                                 const job_queue::gate_fn& gate = {}) {
  std::vector<std::uint64_t> out;
  while (auto id = q.pop(gate))
    out.push_back(*id);
  return out;
}

TEST(JobQueue, refuses_a_push_when_full_and_takes_one_after_a_pop) {
  manual_clock clock;
  job_queue q{five_classes(2), clock};
  EXPECT_TRUE(q.push(1, 0));
  EXPECT_TRUE(q.push(2, 4, "chat"));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.push(3, 0));
  EXPECT_FALSE(q.push(3, 0, "other")) << "a new lane does not add room";
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.pop(), 1u);
  EXPECT_TRUE(q.push(3, 0));
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{3, 2}));
  EXPECT_TRUE(q.empty());
}

TEST(JobQueue, refuses_a_class_it_does_not_have) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  EXPECT_FALSE(q.push(1, 5));
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.push(1, 4));
}

TEST(JobQueue, refuses_options_that_cannot_work) {
  manual_clock clock;
  EXPECT_THROW((job_queue{{0, linear_aging(5, 1s)}, clock}),
               std::invalid_argument);
  EXPECT_THROW((job_queue{{10, {}}, clock}), std::invalid_argument);
  EXPECT_THROW((job_queue{{10, {0s, 2s, 1s}}, clock}), std::invalid_argument);
}

TEST(JobQueue, serves_one_class_first_in_first_out) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  for (std::uint64_t id = 1; id <= 5; ++id)
    q.push(id, 2);
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
}

TEST(JobQueue, serves_more_urgent_classes_first_when_jobs_are_equally_old) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  q.push(40, 4);
  q.push(30, 3);
  q.push(41, 4);
  q.push(0, 0);
  q.push(20, 2);
  q.push(10, 1);
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{0, 10, 20, 30, 40, 41}));
}

// The rule: a class-c job pushed at t ranks at t + c * step. A low job (4)
// that has waited 4 steps ranks with a fresh interactive job (0); one
// nanosecond later every fresh job, of any class, comes after it.
TEST(JobQueue, lets_an_old_low_priority_job_overtake_new_urgent_ones) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  q.push(1, 4); // low, ranks at 4 s
  clock.advance(3s);
  q.push(2, 1); // urgent, pushed at 3 s: ranks at 4 s, after the low one
  q.push(3, 0); // interactive at 3 s: ranks at 3 s, before it
  clock.advance(1s + 1ns);
  q.push(4, 0); // interactive at 4 s + 1 ns: after the low one
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{3, 1, 2, 4}));
}

TEST(JobQueue, keeps_strict_classes_while_the_wait_is_shorter_than_a_step) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  q.push(1, 4);
  clock.advance(999ms);
  q.push(2, 3); // ranks at 3.999 s, before the low job's 4 s
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{2, 1}));
}

// One urgent job arrives and one job is served every 100 ms, forever. With
// strict priorities the low job would wait forever; with aging it goes once
// it has waited its 4 steps.
TEST(JobQueue, never_starves_a_low_job_under_a_steady_stream_of_urgent_ones) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  const std::uint64_t low = 999999;
  q.push(low, 4);
  auto start = clock.now();
  std::optional<std::chrono::nanoseconds> served_after;
  for (std::uint64_t i = 1; i <= 100 && !served_after; ++i) {
    q.push(i, 1);
    clock.advance(100ms);
    if (q.pop() == low)
      served_after = clock.now() - start;
  }
  ASSERT_TRUE(served_after) << "the low job starved";
  // It ranks at 4 s, level with an urgent job pushed at 3 s; those pushed
  // before 3 s go first, one per 100 ms.
  EXPECT_GE(*served_after, 3s);
  EXPECT_LE(*served_after, 4s + 100ms);
}

// The busy chat's jobs all came first; without turns they would all go
// first too.
TEST(JobQueue, gives_busy_and_quiet_sub_keys_turns_in_round_robin) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  for (std::uint64_t id = 1; id <= 5; ++id)
    q.push(id, 3, "busy"); // 1..5
  clock.advance(1ms);
  q.push(11, 3, "quiet");
  q.push(12, 3, "quiet");
  clock.advance(1ms);
  q.push(21, 3, "rare");
  std::vector<std::uint64_t> order;
  while (auto id = q.pop()) {
    order.push_back(*id);
    clock.advance(1ms);
  }
  EXPECT_EQ(order, (std::vector<std::uint64_t>{1, 11, 21, 2, 12, 3, 4, 5}));
}

// A lane that has just had its turn goes to the back of the round, behind
// lanes that were waiting when it went, even lanes of newer jobs.
TEST(JobQueue, puts_a_lane_that_just_went_behind_the_lanes_already_waiting) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  for (std::uint64_t id = 1; id <= 3; ++id)
    q.push(id, 3, "busy");
  clock.advance(10ms);
  EXPECT_EQ(q.pop(), 1u); // busy's turn at 10 ms
  clock.advance(10ms);
  q.push(11, 3, "newcomer"); // pushed at 20 ms
  EXPECT_EQ(q.pop(), 2u) << "busy re-entered at 10 ms, before the newcomer";
  clock.advance(10ms);
  q.push(21, 3, "late"); // pushed at 30 ms; busy re-entered at 20 ms
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{11, 3, 21}));
}

TEST(JobQueue, ranks_classes_before_turns_across_sub_keys) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  q.push(1, 0, "a");
  q.push(2, 0, "a");
  q.push(3, 4, "b");
  clock.advance(1s);
  // a just went at 1 s; its next interactive job ranks at 1 s, b's low job
  // at 4 s.
  EXPECT_EQ(q.pop(), 1u);
  EXPECT_EQ(q.pop(), 2u);
  EXPECT_EQ(q.pop(), 3u);
}

TEST(JobQueue, serves_jobs_without_a_sub_key_by_their_own_rank) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  // The keyless lane takes no turns: all of its jobs go before a keyed job
  // that arrived later.
  q.push(1, 2);
  q.push(2, 2);
  q.push(3, 2);
  clock.advance(1ms);
  q.push(11, 2, "chat");
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{1, 2, 3, 11}));
}

TEST(JobQueue, orders_a_lane_by_class_with_aging_too) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  q.push(1, 4, "chat");
  clock.advance(2s);
  q.push(2, 0, "chat"); // ranks at 2 s, before the low job's 4 s
  q.push(3, 3, "chat"); // ranks at 5 s
  EXPECT_EQ(drain(q), (std::vector<std::uint64_t>{2, 1, 3}));
}

TEST(JobQueue, parks_a_lane_its_gate_refuses_without_blocking_the_others) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  auto t0 = clock.now();
  q.push(1, 0, "slow");
  q.push(2, 0, "slow");
  q.push(11, 4, "fast");
  q.push(12, 4, "fast");
  auto gate = [&](std::uint64_t, const std::string& key) {
    return key == "slow" ? t0 + 50ms : t0;
  };
  EXPECT_EQ(drain(q, gate), (std::vector<std::uint64_t>{11, 12}));
  EXPECT_EQ(q.size(), 2u);
  ASSERT_TRUE(q.next_ready());
  EXPECT_EQ(*q.next_ready(), t0 + 50ms);
  clock.advance(49ms);
  EXPECT_EQ(q.pop(gate), std::nullopt);
  clock.advance(1ms);
  EXPECT_EQ(q.pop(gate), 1u);
  EXPECT_FALSE(q.next_ready());
}

TEST(JobQueue, lets_a_parked_lane_keep_its_place_when_it_wakes) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  auto t0 = clock.now();
  q.push(1, 2, "parked");
  for (std::uint64_t id = 11; id <= 14; ++id)
    q.push(id, 2, "busy");
  bool closed = true;
  auto gate = [&](std::uint64_t, const std::string& key) {
    return key == "parked" && closed ? t0 + 10ms : t0;
  };
  EXPECT_EQ(q.pop(gate), 11u);
  clock.advance(5ms);
  EXPECT_EQ(q.pop(gate), 12u);
  clock.advance(5ms);
  closed = false;
  EXPECT_EQ(q.pop(gate), 1u) << "it was first in line before it was parked";
  EXPECT_EQ(drain(q, gate), (std::vector<std::uint64_t>{13, 14}));
}

TEST(JobQueue, forgets_lanes_once_they_are_empty) {
  manual_clock clock;
  job_queue q{five_classes(1000), clock};
  for (std::uint64_t id = 0; id < 500; ++id)
    q.push(id, 1, "chat-" + std::to_string(id % 100));
  EXPECT_EQ(q.lanes(), 100u);
  drain(q);
  EXPECT_EQ(q.lanes(), 0u);
}

TEST(JobQueue, keeps_the_age_a_retried_job_brings_back) {
  manual_clock clock;
  job_queue q{five_classes(), clock};
  auto arrived = clock.now();
  clock.advance(10s);
  q.push(1, 0);
  q.push(2, 4, "", arrived); // a low job first pushed 10 s ago
  EXPECT_EQ(q.pop(), 2u);
}

TEST(JobQueue, handles_many_jobs_and_lanes_in_rank_order) {
  manual_clock clock;
  const std::size_t n = 20000;
  job_queue q{five_classes(n), clock};
  for (std::uint64_t id = 0; id < n; ++id) {
    q.push(id, id % 5, id % 3 ? "chat-" + std::to_string(id % 97) : "");
    if (id % 100 == 0)
      clock.advance(1ms);
  }
  EXPECT_EQ(drain(q).size(), n);
  EXPECT_EQ(q.lanes(), 0u);
}

} // namespace
} // namespace karvon::actors
