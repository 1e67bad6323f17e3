// One thread that runs callbacks at given times: deadlines for work that
// waits on other threads (a health check that must answer within 2 s), for
// code that has no event loop of its own. Callbacks must be short: they run
// on the timer thread one after another.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

namespace karvon::actors {

class timer_service {
public:
  timer_service();
  /// Drops the callbacks not yet due and joins the thread.
  ~timer_service();

  timer_service(const timer_service&) = delete;
  timer_service& operator=(const timer_service&) = delete;

  /// Runs `f` on the timer thread after `delay`. Thread-safe.
  void after(std::chrono::steady_clock::duration delay,
             std::function<void()> f);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::actors
