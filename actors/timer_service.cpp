#include "actors/timer_service.hpp"

#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace karvon::actors {

struct timer_service::impl {
  using time_point = std::chrono::steady_clock::time_point;
  struct item {
    time_point due;
    std::uint64_t seq; // keeps callbacks due at the same time in order
    std::function<void()> f;
    bool operator>(const item& o) const {
      return due != o.due ? due > o.due : seq > o.seq;
    }
  };
  std::mutex mutex;
  std::condition_variable cv;
  std::priority_queue<item, std::vector<item>, std::greater<>> queue;
  std::uint64_t next_seq = 0;
  bool stopping = false;
  std::thread thread;

  void run() {
    std::unique_lock lock{mutex};
    while (!stopping) {
      if (queue.empty()) {
        cv.wait(lock);
        continue;
      }
      auto due = queue.top().due;
      if (std::chrono::steady_clock::now() < due) {
        cv.wait_until(lock, due);
        continue;
      }
      auto f = std::move(const_cast<item&>(queue.top()).f);
      queue.pop();
      lock.unlock();
      f();
      lock.lock();
    }
  }
};

timer_service::timer_service() : impl_(std::make_unique<impl>()) {
  impl_->thread = std::thread([i = impl_.get()] { i->run(); });
}

timer_service::~timer_service() {
  {
    std::lock_guard lock{impl_->mutex};
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

void timer_service::after(std::chrono::steady_clock::duration delay,
                          std::function<void()> f) {
  {
    std::lock_guard lock{impl_->mutex};
    impl_->queue.push({std::chrono::steady_clock::now() + delay,
                       impl_->next_seq++, std::move(f)});
  }
  impl_->cv.notify_all();
}

} // namespace karvon::actors
