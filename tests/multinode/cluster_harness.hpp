// Multi-process cluster tests: several real `karvon serve` processes on one
// shared PostgreSQL, a probe load that counts every acknowledged write, and
// the checks that no write was lost or applied twice and that no entity was
// ever active on two nodes at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "persistence/embedded_postgres.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/process.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::testing::multinode {

using namespace std::chrono_literals;

/// cluster.shards of every node in these tests.
constexpr int cluster_shards = 256;
/// The probe keys the load writes to: k0 .. k999.
constexpr int probe_keys = 1000;
/// The cluster timings every node runs with.
constexpr auto heartbeat = 200ms;
constexpr auto failure_timeout = 2000ms;
constexpr auto lease = 2000ms;

/// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port();

/// "k<i>".
std::string probe_key(int i);

// ---------------------------------------------------------------------------
// GET /admin/cluster

struct node_view {
  std::string id;
  std::int64_t incarnation = 0;
  std::string state;
  int shards = 0;
};

struct cluster_view {
  std::int64_t epoch = 0;
  std::string node_id; //!< the node that answered
  std::vector<node_view> nodes;
  std::string body; //!< as received, for messages

  /// The entry of `id`, nullptr when absent.
  const node_view* find(const std::string& id) const;
  /// True when `id` is listed in `state`.
  bool is(const std::string& id, const std::string& state) const;
  /// The sum of `shards` over every listed node.
  int total_shards() const;
  /// The sum of `shards` over the listed ids.
  int shards_of(const std::vector<std::string>& ids) const;
};

/// True when every node in `active` is listed as active with shards > 0
/// and together they hold all cluster_shards (so no other node holds any).
bool is_balanced(const cluster_view& v, const std::vector<std::string>& active);

/// Parses a /admin/cluster body; nullopt (and `error`) when it is not one.
std::optional<cluster_view> parse_cluster_view(const std::string& body,
                                               std::string& error);

// ---------------------------------------------------------------------------
// Nodes

/// One `karvon serve` of the cluster.
struct node_process {
  int index = 0;
  std::string id; //!< "n<index>"
  std::string data_dir;
  std::uint16_t http_port = 0;
  std::uint16_t cluster_port = 0;
  std::unique_ptr<child_process> process;
  bool exited = false;
  std::optional<int> exit_code;
};

/// A shared embedded PostgreSQL and the nodes that use it. Every access to
/// a node's process goes through here: a thread drains the output of every
/// node so that none ever blocks on a full pipe.
class test_cluster {
public:
  explicit test_cluster(const std::string& tag);
  /// Kills whatever still runs (SIGKILL); prints the end of every node's
  /// output when the test failed.
  ~test_cluster();

  test_cluster(const test_cluster&) = delete;
  test_cluster& operator=(const test_cluster&) = delete;

  /// libpq connection string of the `karvon` database every node uses.
  const std::string& conninfo() const { return conninfo_; }

  /// Starts `karvon serve` as node n<index> without waiting for it.
  node_process& launch(int index);

  /// The node n<index>; it must have been launched.
  node_process& node(int index);

  /// Waits until GET /health answers 200, and picks up the first admin key
  /// if this node printed it (admin_key() stays empty until a node has).
  ::testing::AssertionResult
  wait_ready(node_process& n, std::chrono::milliseconds timeout = 60s);

  /// Waits until the node's own /admin/cluster lists it as active.
  ::testing::AssertionResult
  wait_active(node_process& n, std::chrono::milliseconds timeout = 30s);

  /// launch + wait_ready + wait_active.
  ::testing::AssertionResult start(int index);

  /// Starts n1, then the others at once, and waits until they are all
  /// active with shards each and every shard held.
  ::testing::AssertionResult start_nodes(int count);

  /// The first admin key (printed by the first node on the database).
  const std::string& admin_key() const { return admin_key_; }
  /// How many nodes printed an admin key.
  int admin_keys_printed() const { return admin_keys_printed_; }

  /// GET /admin/cluster on `via`; nullopt and `error` when it fails.
  std::optional<cluster_view> view(const node_process& via,
                                   std::string* error = nullptr);

  /// Polls /admin/cluster on `via` until `accept` holds; the message of a
  /// failure holds the last answer. `last` receives the accepted view.
  ::testing::AssertionResult
  wait_view(const node_process& via,
            const std::function<bool(const cluster_view&)>& accept,
            std::chrono::milliseconds timeout, const std::string& what,
            cluster_view* last = nullptr);

  /// Polls until is_balanced(view, active).
  ::testing::AssertionResult
  wait_balanced(const node_process& via, const std::vector<std::string>& active,
                std::chrono::milliseconds timeout,
                cluster_view* last = nullptr);

  /// Sends a signal to the node.
  void signal(node_process& n, int sig);

  /// Waits for the node to exit; its exit code or nullopt on timeout.
  std::optional<int> wait_exit(node_process& n,
                               std::chrono::milliseconds timeout);

  /// SIGTERM, then waits for exit code 0.
  ::testing::AssertionResult stop(node_process& n,
                                  std::chrono::milliseconds timeout = 30s);

  /// Stops every node still running with SIGTERM, expecting exit code 0
  /// from each (a stopped node is continued first).
  void stop_all();

  /// Everything the node printed so far.
  std::string output(node_process& n);

  /// The last `chars` characters the node printed.
  std::string log_tail(node_process& n, std::size_t chars = 4000);

  /// The current time of the database's clock, as timestamptz text.
  std::string database_now();

private:
  void pump_loop();
  /// A free port not given to another node of this cluster.
  std::uint16_t unused_port();
  /// Prints every thread's stack of a node that hangs (gdb).
  void print_stacks(node_process& n);

  scratch_dir dir_;
  std::unique_ptr<persistence::embedded_postgres> postgres_;
  std::string conninfo_;
  std::string admin_key_;
  int admin_keys_printed_ = 0;
  std::mutex mutex_; //!< guards nodes_ and every child_process
  std::vector<std::unique_ptr<node_process>> nodes_;
  std::set<std::uint16_t> ports_;
  std::atomic<bool> pumping_{true};
  std::thread pump_;
};

// ---------------------------------------------------------------------------
// Probe load

/// What the load saw of one key.
struct key_tally {
  std::int64_t acked = 0;           //!< 200 answers
  std::int64_t ambiguous = 0;       //!< any other outcome: may or may not apply
  std::vector<std::int64_t> values; //!< the values the 200s returned
  std::vector<std::string> owners;  //!< node_id of each of those 200s
};

struct load_results {
  std::vector<key_tally> keys = std::vector<key_tally>(probe_keys);
  std::map<int, std::int64_t> statuses; //!< HTTP status (0: none) → count
  std::map<std::string, std::int64_t> owners; //!< node_id of 200s → count
  std::int64_t malformed = 0; //!< 200s whose body was not a probe state
  std::vector<std::string> malformed_examples;

  std::int64_t acked() const;
  std::int64_t ambiguous() const;
  /// Records one answer to POST /admin/probe/k<key> {"add":1}.
  void record(int key, const http_reply& reply);
  void merge(const load_results& other);
  /// "200: 1234, 503: 5, none: 2".
  std::string describe_statuses() const;
};

/// The raw bytes of POST /admin/probe/k<key> {"add":1}.
std::string probe_add_request(int key, const std::string& admin_key);

/// K threads, each with its own keep-alive connection to one of the target
/// nodes (round robin), sending {"add":1} to random keys among probe_keys
/// until stop(). A thread whose connection fails moves on to the next
/// target; when the targets change, each thread takes its round-robin
/// place among the new ones.
class probe_load {
public:
  probe_load(std::string admin_key, std::vector<std::uint16_t> targets,
             int threads = 16);
  /// Stops the threads if stop() was not called.
  ~probe_load();

  probe_load(const probe_load&) = delete;
  probe_load& operator=(const probe_load&) = delete;

  /// Replaces the nodes the threads send to.
  void set_targets(std::vector<std::uint16_t> targets);

  /// 200s so far, over every thread.
  std::int64_t acked_so_far() const { return acked_.load(); }

  /// Stops every thread (each finishes its request in flight) and returns
  /// what they saw.
  load_results stop();

private:
  void run(int thread);

  std::string admin_key_;
  std::mutex mutex_;
  std::vector<std::uint16_t> targets_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<std::int64_t> acked_{0};
  std::vector<load_results> results_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

/// Waits until the load has `more` acks than now; the failure says how
/// many came in `within` (`when` names the moment, for the message).
::testing::AssertionResult wait_acks(const probe_load& load, std::int64_t more,
                                     std::chrono::milliseconds within,
                                     const std::string& when);

/// Lets the load run for `duration`, then on until it has `total` acks in
/// all, at most `cap` longer: the checks then never pass on a trickle.
::testing::AssertionResult keep_load(const probe_load& load,
                                     std::chrono::milliseconds duration,
                                     std::int64_t total,
                                     std::chrono::milliseconds cap = 20s);

/// Sends POST /admin/probe/k<key> {"add":1} for every key at once, each on
/// its own connection, then reads each answer until `timeout` from now.
load_results send_at_once(std::uint16_t port, const std::string& admin_key,
                          const std::vector<int>& keys,
                          std::chrono::milliseconds timeout);

// ---------------------------------------------------------------------------
// Checks

/// Every acknowledged write counted exactly once: per key the acked values
/// are distinct, acked <= final <= acked + ambiguous, and the largest acked
/// value <= final (final: probe_counters.value, 0 when absent). Also asserts
/// that the load did something: at least `min_acked` acks in total.
::testing::AssertionResult exactly_once(const std::string& conninfo,
                                        const load_results& load,
                                        std::int64_t min_acked);

/// No two activations of one key overlap in time, an activation lasting
/// [activated_at, coalesce(passivated_at, last_write_at, activated_at)].
/// Also asserts that at least `min_keys` keys were activated.
::testing::AssertionResult
activations_never_overlap(const std::string& conninfo, int min_keys);

/// The database sessions that wait for a lock, sit idle in a transaction
/// or have been in one for over a second, with what they run: why the
/// nodes' membership queries may be stuck.
std::string database_waits(const std::string& conninfo);

/// probe_counters.node_id → number of keys it last wrote.
std::map<std::string, std::int64_t> counter_owners(const std::string& conninfo);

/// "n1: 300, n2: 350".
std::string describe(const std::map<std::string, std::int64_t>& counts);

} // namespace karvon::testing::multinode
