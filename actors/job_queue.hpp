// The bounded queue in front of a sink: priority classes with aging, and
// lanes per sub-key (a chat, a partner) that take fair turns.
//
// Aging rule. A job of class c (0 is the most urgent) pushed at time t has
// the deadline t + offset[c], and jobs are served in deadline order (ties in
// push order). Put differently: a class-c job that has waited w ranks with a
// fresh job whose class offset is offset[c] - w; with linear_aging(step) its
// effective class is c - w / step. So its priority rises with its wait and a
// low job never starves: no job pushed after t + offset[c] - offset[0] can
// overtake it. Because a deadline never changes once the job is in, the
// order is a plain heap order: O(log n) per operation, and FIFO within a
// class (same offset, earlier t).
//
// Fair turns. Jobs with the same sub-key form a lane; jobs with no sub-key
// form one lane that takes no turns (its jobs compete by their own
// deadlines). Lanes compete by the deadline of their best job, but a keyed
// lane that has just been served re-enters as if its best job had been
// pushed at that moment: deadline max(t, last_turn) + offset[c]. So a chat
// with a thousand queued jobs gets one turn, then goes behind every lane
// that was already waiting: round-robin among lanes of the same class,
// priority (with aging) between classes.
//
// Readiness. pop() asks a gate when a lane's best job may go (the sink's
// window limiter). A lane that may not go yet is parked until then and does
// not block the others; next_ready() says when the first parked lane wakes,
// so the owner can sleep exactly until then. A parked lane keeps its place:
// when it wakes it ranks as it did before.
//
// Not thread-safe: owned by one actor.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/clock.hpp"

namespace karvon::actors {

struct queue_options {
  /// Jobs the queue holds at most; push fails beyond it.
  std::size_t capacity = 1000;
  /// offset[c]: how long a class-c job must wait to rank with a fresh job of
  /// class 0. One entry per class, non-decreasing; classes = size().
  std::vector<std::chrono::nanoseconds> class_offsets{
      std::chrono::nanoseconds{0}};
};

/// Offsets c * step for `classes` classes: a job climbs one class per step
/// of waiting.
std::vector<std::chrono::nanoseconds>
linear_aging(std::size_t classes, std::chrono::nanoseconds step);

class job_queue {
public:
  using time_point = clock::time_point;
  /// The earliest time the job `id` (the best of its lane `sub_key`) may go;
  /// a time not after now means now.
  using gate_fn
      = std::function<time_point(std::uint64_t id, const std::string& sub_key)>;

  /// Throws std::invalid_argument when capacity is 0, there are no classes
  /// or the offsets decrease. `c` must outlive the queue.
  job_queue(queue_options options, const clock& c);
  ~job_queue();

  job_queue(const job_queue&) = delete;
  job_queue& operator=(const job_queue&) = delete;

  /// Queues `id` (unique among queued jobs) in class `priority` and lane
  /// `sub_key` (empty: no lane), pushed now. False, and nothing queued, when
  /// the queue is full or the class does not exist.
  bool push(std::uint64_t id, std::size_t priority,
            const std::string& sub_key = {});

  /// The same with the time the job first arrived: a job that comes back for
  /// a retry keeps the age it had. False when full or no such class.
  bool push(std::uint64_t id, std::size_t priority, const std::string& sub_key,
            time_point since);

  /// Removes and returns the best job that may go now (see the file
  /// comment); nullopt when the queue is empty or every lane is parked.
  /// Without a gate every lane may go.
  std::optional<std::uint64_t> pop(const gate_fn& gate = {});

  /// When the first parked lane may go; nullopt when none is parked.
  std::optional<time_point> next_ready() const;

  /// Jobs queued.
  std::size_t size() const;
  bool empty() const { return size() == 0; }
  bool full() const { return size() >= capacity(); }
  std::size_t capacity() const;
  std::size_t classes() const;

  /// Lanes that hold jobs now; an emptied lane is forgotten at once, so
  /// memory follows the jobs queued.
  std::size_t lanes() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::actors
