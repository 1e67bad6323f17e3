#include "actors/job_queue.hpp"

#include <queue>
#include <set>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

namespace karvon::actors {

std::vector<std::chrono::nanoseconds>
linear_aging(std::size_t classes, std::chrono::nanoseconds step) {
  std::vector<std::chrono::nanoseconds> out;
  out.reserve(classes);
  for (std::size_t c = 0; c < classes; ++c)
    out.push_back(step * static_cast<std::int64_t>(c));
  return out;
}

struct job_queue::impl {
  struct job {
    time_point deadline; // since + offset[class]
    time_point since;    // when it arrived
    std::uint64_t seq;   // push order: FIFO among equal deadlines
    std::uint64_t id;
    bool operator>(const job& o) const {
      return std::tie(deadline, seq) > std::tie(o.deadline, o.seq);
    }
  };

  struct lane;

  // A lane's place among the lanes: ready ones by rank, parked ones by the
  // time they may go. `seq` orders equal times by when the lane got there.
  struct ticket {
    time_point at;
    std::uint64_t seq;
    lane* l;
    bool operator<(const ticket& o) const {
      return std::tie(at, seq) < std::tie(o.at, o.seq);
    }
  };

  struct lane {
    std::string key;
    std::priority_queue<job, std::vector<job>, std::greater<>> jobs;
    // When the lane last went; a keyed lane re-enters no earlier than this.
    std::optional<time_point> last_turn;
    bool parked = false;
    std::set<ticket>::iterator place; // in ready or parked
  };

  queue_options options;
  const clock* clk;
  std::size_t size = 0;
  std::uint64_t next_seq = 0;
  std::unordered_map<std::string, lane> lanes;
  std::set<ticket> ready;
  std::set<ticket> parked;

  // The rank of a lane among ready lanes (see the file comment).
  time_point rank(const lane& l) const {
    const auto& best = l.jobs.top();
    if (l.key.empty() || !l.last_turn || *l.last_turn <= best.since)
      return best.deadline;
    return best.deadline + (*l.last_turn - best.since);
  }

  void make_ready(lane& l) {
    l.parked = false;
    l.place = ready.insert({rank(l), next_seq++, &l}).first;
  }

  void wake(time_point now) {
    while (!parked.empty() && parked.begin()->at <= now) {
      lane& l = *parked.begin()->l;
      parked.erase(parked.begin());
      make_ready(l);
    }
  }
};

job_queue::job_queue(queue_options options, const clock& c)
    : impl_(std::make_unique<impl>()) {
  if (options.capacity == 0)
    throw std::invalid_argument("job_queue: capacity must be at least 1");
  if (options.class_offsets.empty())
    throw std::invalid_argument("job_queue: at least one priority class");
  for (std::size_t i = 1; i < options.class_offsets.size(); ++i)
    if (options.class_offsets[i] < options.class_offsets[i - 1])
      throw std::invalid_argument("job_queue: class offsets must not decrease");
  impl_->options = std::move(options);
  impl_->clk = &c;
}

job_queue::~job_queue() = default;

bool job_queue::push(std::uint64_t id, std::size_t priority,
                     const std::string& sub_key) {
  return push(id, priority, sub_key, impl_->clk->now());
}

bool job_queue::push(std::uint64_t id, std::size_t priority,
                     const std::string& sub_key, time_point since) {
  auto& d = *impl_;
  if (d.size >= d.options.capacity
      || priority >= d.options.class_offsets.size())
    return false;
  auto [it, created] = d.lanes.try_emplace(sub_key);
  auto& l = it->second;
  if (created)
    l.key = sub_key;
  const bool was_empty = l.jobs.empty();
  const auto old_best = was_empty ? 0 : l.jobs.top().seq;
  l.jobs.push(
      {since + d.options.class_offsets[priority], since, d.next_seq++, id});
  ++d.size;
  if (was_empty) {
    d.make_ready(l);
  } else if (!l.parked && l.jobs.top().seq != old_best) {
    // A better job leads the lane now: its rank may be earlier. A parked
    // lane is ranked again when it wakes.
    d.ready.erase(l.place);
    d.make_ready(l);
  }
  return true;
}

std::optional<std::uint64_t> job_queue::pop(const gate_fn& gate) {
  auto& d = *impl_;
  const auto now = d.clk->now();
  d.wake(now);
  while (!d.ready.empty()) {
    auto first = d.ready.begin();
    impl::lane& l = *first->l;
    auto best = l.jobs.top();
    if (gate) {
      auto when = gate(best.id, l.key);
      // A gate that answers with its own, later reading of the clock means
      // "now": read again rather than park the lane for nothing.
      if (when > now && when > d.clk->now()) {
        d.ready.erase(first);
        l.parked = true;
        l.place = d.parked.insert({when, d.next_seq++, &l}).first;
        continue;
      }
    }
    d.ready.erase(first);
    l.jobs.pop();
    --d.size;
    if (l.jobs.empty()) {
      // Erase by iterator: erasing by the lane's own key would read the key
      // while destroying it.
      d.lanes.erase(d.lanes.find(l.key));
    } else {
      l.last_turn = now;
      d.make_ready(l);
    }
    return best.id;
  }
  return std::nullopt;
}

std::optional<job_queue::time_point> job_queue::next_ready() const {
  if (impl_->parked.empty())
    return std::nullopt;
  return impl_->parked.begin()->at;
}

std::size_t job_queue::size() const {
  return impl_->size;
}

std::size_t job_queue::capacity() const {
  return impl_->options.capacity;
}

std::size_t job_queue::classes() const {
  return impl_->options.class_offsets.size();
}

std::size_t job_queue::lanes() const {
  return impl_->lanes.size();
}

} // namespace karvon::actors
