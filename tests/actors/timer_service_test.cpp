#include <future>
#include <mutex>
#include <vector>

#include <gtest/gtest.h>

#include "actors/timer_service.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

TEST(TimerService, runs_callbacks_in_order_of_their_due_time) {
  timer_service timers;
  std::mutex m;
  std::vector<int> order;
  std::promise<void> all;
  timers.after(60ms, [&] {
    std::lock_guard l{m};
    order.push_back(3);
    all.set_value();
  });
  timers.after(20ms, [&] {
    std::lock_guard l{m};
    order.push_back(1);
  });
  timers.after(40ms, [&] {
    std::lock_guard l{m};
    order.push_back(2);
  });
  ASSERT_EQ(all.get_future().wait_for(5s), std::future_status::ready);
  std::lock_guard l{m};
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(TimerService, drops_what_is_not_due_when_destroyed) {
  std::atomic<bool> ran{false};
  {
    timer_service timers;
    timers.after(1h, [&] { ran = true; });
  }
  EXPECT_FALSE(ran.load());
}

} // namespace
} // namespace karvon::actors
