#include "bench/caf_load.hpp"

#include <thread>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "cluster/router.hpp"

namespace karvon::bench {

namespace {

using namespace std::chrono_literals;

// Load: `clients` actors keep `window` requests each in flight until told
// to stop; `make` builds the next (destination, message) to send.
struct load_state {
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> stop{false};
  std::atomic<int> clients_left{0};
  std::string first_error;
  std::mutex mutex;
};

struct client_state {
  std::shared_ptr<load_state> load;
  next_fn next;
  std::mt19937 rng;
  int in_flight = 0;
};

void issue(caf::stateful_actor<client_state>* self);

// One request; its answer sends the next, until told to stop.
void issue(caf::stateful_actor<client_state>* self) {
  auto& st = self->state;
  if (st.load->stop.load(std::memory_order_relaxed)) {
    if (st.in_flight == 0) {
      --st.load->clients_left;
      self->quit();
    }
    return;
  }
  auto [dest, msg] = st.next(st.rng);
  ++st.in_flight;
  self->request(dest, caf::infinite, std::move(msg))
      .then(
          [self](int) {
            --self->state.in_flight;
            self->state.load->done.fetch_add(1, std::memory_order_relaxed);
            issue(self);
          },
          [self](caf::error& err) {
            auto& st = self->state;
            --st.in_flight;
            if (st.load->errors.fetch_add(1) == 0) {
              std::lock_guard lock{st.load->mutex};
              st.load->first_error = caf::to_string(err);
            }
            issue(self);
          });
}

void client(caf::stateful_actor<client_state>* self,
            std::shared_ptr<load_state> load, next_fn next, int window,
            unsigned seed) {
  self->state.load = std::move(load);
  self->state.next = std::move(next);
  self->state.rng.seed(seed);
  for (int i = 0; i < window; ++i)
    issue(self);
}

// Runs the load for `duration`; a sample of completed requests per second.
} // namespace

sample run_load(caf::actor_system& sys, next_fn next, int clients, int window,
                std::chrono::milliseconds duration) {
  auto st = std::make_shared<load_state>();
  st->clients_left = clients;
  auto started = std::chrono::steady_clock::now();
  for (int c = 0; c < clients; ++c)
    sys.spawn(client, st, next, window, static_cast<unsigned>(c + 1));
  std::this_thread::sleep_for(duration);
  auto counted = st->done.load();
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                               - started)
                     .count();
  st->stop = true;
  while (st->clients_left.load() > 0)
    std::this_thread::sleep_for(1ms);
  sample s;
  s.values = {static_cast<double>(counted) / elapsed};
  s.errors = st->errors.load();
  s.first_error = st->first_error;
  return s;
}

caf::behavior echo(caf::event_based_actor*) {
  return {[](caf::ping_atom, int x) { return x; }};
}

std::vector<std::string> bench_keys(int n, int offset) {
  std::vector<std::string> keys;
  keys.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    keys.push_back("bench/" + std::to_string(offset + i));
  return keys;
}

// Activates `keys` with `clients` × `window` requests in flight; blocking.
void activate_all(caf::actor_system& sys, const cluster::router& r,
                  const std::vector<std::string>& keys) {
  auto next_index = std::make_shared<std::atomic<std::size_t>>(0);
  auto sup = r.route_for("bench/0");
  auto st = std::make_shared<load_state>();
  st->clients_left = 4;
  // Each client takes the next key until all are taken.
  next_fn next = [&keys, next_index, sup, st](std::mt19937&) {
    auto i = next_index->fetch_add(1);
    if (i + 1 >= keys.size())
      st->stop = true;
    auto& key = keys[std::min(i, keys.size() - 1)];
    return std::make_pair(
        sup, caf::make_message(actors::route_atom::value, key,
                               caf::make_message(caf::ping_atom::value, 1)));
  };
  for (int c = 0; c < 4; ++c)
    sys.spawn(client, st, next, 32, static_cast<unsigned>(c + 1));
  while (st->clients_left.load() > 0)
    std::this_thread::sleep_for(1ms);
}

} // namespace karvon::bench
