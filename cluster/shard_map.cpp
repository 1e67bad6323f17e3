#include "cluster/shard_map.hpp"

#include <atomic>

#include "cluster/shard.hpp"

namespace karvon::cluster {

// One per shard; written by the membership thread, read on every send.
struct shard_map::lease_slot {
  std::atomic<std::int64_t> serve_until_ns{0}; // steady clock; 0: none
  std::atomic<std::int64_t> incarnation{0};
  std::atomic<std::int64_t> epoch{0};
};

namespace {
std::int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             t.time_since_epoch())
      .count();
}
} // namespace

struct shard_map::assignment {
  std::vector<std::string> owners;
  std::uint64_t epoch = 0;
};

shard_map::shard_map(std::uint32_t shards, std::string local_node)
    : shards_(shards), local_node_(std::move(local_node)),
      leases_(std::make_unique<lease_slot[]>(shards)) {
  auto a = std::make_shared<assignment>();
  a->owners.assign(shards_, local_node_);
  a->epoch = 1;
  current_ = std::move(a);
}

shard_map::~shard_map() = default;

std::uint64_t shard_map::epoch() const {
  return std::atomic_load(&current_)->epoch;
}

std::string shard_map::owner(std::uint32_t shard) const {
  return std::atomic_load(&current_)->owners.at(shard);
}

bool shard_map::owns_key(std::string_view key) const {
  auto shard = shard_of(key, shards_);
  auto a = std::atomic_load(&current_);
  if (a->owners[shard] != local_node_)
    return false;
  return !leases_required_ || lease_valid(shard);
}

bool shard_map::holds_lease(std::string_view key) const {
  return !leases_required_ || lease_valid(shard_of(key, shards_));
}

bool shard_map::lease_valid(std::uint32_t shard) const {
  auto until = leases_[shard].serve_until_ns.load(std::memory_order_acquire);
  return until != 0 && steady_ns(std::chrono::steady_clock::now()) < until;
}

void shard_map::require_leases() {
  leases_required_ = true;
}

void shard_map::set_leases(const std::vector<lease>& leases) {
  std::vector<bool> held(shards_, false);
  for (auto& l : leases) {
    if (l.shard >= shards_)
      continue;
    held[l.shard] = true;
    auto& slot = leases_[l.shard];
    // Token first, expiry last: a reader that sees the expiry sees the
    // token that goes with it.
    slot.incarnation.store(l.incarnation, std::memory_order_relaxed);
    slot.epoch.store(l.epoch, std::memory_order_relaxed);
    slot.serve_until_ns.store(steady_ns(l.serve_until),
                              std::memory_order_release);
  }
  for (std::uint32_t s = 0; s < shards_; ++s)
    if (!held[s])
      leases_[s].serve_until_ns.store(0, std::memory_order_release);
}

std::optional<persistence::fencing_token>
shard_map::fence(std::string_view key) const {
  if (!leases_required_)
    return std::nullopt;
  auto shard = shard_of(key, shards_);
  auto& slot = leases_[shard];
  if (!lease_valid(shard))
    return std::nullopt;
  return persistence::fencing_token{
      shard, local_node_, slot.incarnation.load(std::memory_order_relaxed),
      slot.epoch.load(std::memory_order_relaxed)};
}

std::vector<std::uint32_t> shard_map::held_shards() const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t s = 0; s < shards_; ++s)
    if (!leases_required_ || lease_valid(s))
      out.push_back(s);
  return out;
}

std::shared_ptr<const actors::ownership_rules>
ownership_rules_of(const shard_map& map) {
  auto rules = std::make_shared<actors::ownership_rules>();
  auto* m = &map;
  rules->activates = [m](std::string_view key) { return m->owns_key(key); };
  rules->serves = [m](std::string_view key) { return m->holds_lease(key); };
  rules->fence
      = [m](std::string_view key) -> std::optional<persistence::fencing_token> {
    auto token = m->fence(key);
    if (!token && m->leases_required())
      throw actors::lease_lost("this node no longer holds the lease of "
                               + std::string{key});
    return token;
  };
  rules->shard_of
      = [m](std::string_view key) { return shard_of(key, m->shards()); };
  return rules;
}

bool shard_map::assign(std::vector<std::string> owners, std::uint64_t epoch) {
  if (owners.size() != shards_)
    return false;
  auto next = std::make_shared<assignment>();
  next->owners = std::move(owners);
  next->epoch = epoch;
  auto expected = std::atomic_load(&current_);
  do {
    if (epoch <= expected->epoch)
      return false;
  } while (!std::atomic_compare_exchange_weak(
      &current_, &expected, std::shared_ptr<const assignment>{next}));
  return true;
}

} // namespace karvon::cluster
