#include "tests/multinode/cluster_harness.hpp"

#include <algorithm>
#include <iostream>
#include <random>
#include <regex>
#include <sstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

namespace karvon::testing::multinode {

namespace {

using nlohmann::json;

const std::string binary = KARVON_BINARY;

const std::string first_key_banner
    = "First start: an admin API key was created";
const std::regex admin_key_pattern{"kv_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"};

// The key printed after the first-start banner, empty when there is none.
std::string printed_admin_key(const std::string& output) {
  auto at = output.find(first_key_banner);
  if (at == std::string::npos)
    return {};
  auto after = output.substr(at, 400);
  std::smatch m;
  return std::regex_search(after, m, admin_key_pattern) ? m[0].str()
                                                        : std::string{};
}

std::string tail(const std::string& text, std::size_t chars) {
  return text.size() <= chars ? text : "..." + text.substr(text.size() - chars);
}

// Every thread's stack of a running process, through gdb, condensed to the
// frames in karvon and CAF, threads with the same frames counted once: a
// node that does not exit shows where it waits.
std::string thread_stacks(pid_t pid) {
  auto [code, out] = run_command({"/usr/bin/gdb", "-p", std::to_string(pid),
                                  "-batch", "-ex", "thread apply all bt 30"},
                                 {}, 60s);
  std::vector<std::pair<std::string, std::string>> threads; // name, frames
  std::istringstream lines{out};
  std::string line;
  std::regex frame{"^#[0-9]+ +(0x[0-9a-f]+ in )?"};
  while (std::getline(lines, line)) {
    if (line.rfind("Thread ", 0) == 0) {
      auto quote = line.find('"');
      threads.emplace_back(
          quote == std::string::npos
              ? line
              : line.substr(quote, line.rfind('"') - quote + 1),
          "");
    } else if (!threads.empty() && line.rfind("#", 0) == 0
               && (line.find("karvon") != std::string::npos
                   || line.find("caf::") != std::string::npos)) {
      threads.back().second
          += "    " + std::regex_replace(line, frame, "").substr(0, 200) + "\n";
    }
  }
  std::map<std::string, std::pair<std::string, int>> grouped;
  for (auto& [name, frames] : threads) {
    auto& g = grouped[frames];
    g.first = name;
    ++g.second;
  }
  std::string result;
  for (auto& [frames, g] : grouped)
    result += std::to_string(g.second) + " thread(s) " + g.first + ":\n"
              + (frames.empty() ? "    (no karvon or CAF frame)\n" : frames);
  if (threads.empty())
    return "(gdb gave no stacks, exit code " + std::to_string(code) + ")\n"
           + tail(out, 2000);
  return tail(result, 20000);
}

} // namespace

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string probe_key(int i) {
  return "k" + std::to_string(i);
}

// ---------------------------------------------------------------------------
// cluster_view

const node_view* cluster_view::find(const std::string& id) const {
  for (auto& n : nodes)
    if (n.id == id)
      return &n;
  return nullptr;
}

bool cluster_view::is(const std::string& id, const std::string& state) const {
  auto* n = find(id);
  return n && n->state == state;
}

int cluster_view::total_shards() const {
  int sum = 0;
  for (auto& n : nodes)
    sum += n.shards;
  return sum;
}

int cluster_view::shards_of(const std::vector<std::string>& ids) const {
  int sum = 0;
  for (auto& id : ids)
    if (auto* n = find(id))
      sum += n->shards;
  return sum;
}

bool is_balanced(const cluster_view& v,
                 const std::vector<std::string>& active) {
  for (auto& id : active) {
    auto* n = v.find(id);
    if (!n || n->state != "active" || n->shards <= 0)
      return false;
  }
  return v.shards_of(active) == cluster_shards
         && v.total_shards() == cluster_shards;
}

std::optional<cluster_view> parse_cluster_view(const std::string& body,
                                               std::string& error) {
  auto j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("epoch") || !j["epoch"].is_number_integer()
      || !j.contains("nodes") || !j["nodes"].is_array()) {
    error = "not a cluster view (wants epoch and nodes): " + body;
    return std::nullopt;
  }
  cluster_view v;
  v.body = body;
  v.epoch = j["epoch"].get<std::int64_t>();
  if (j.contains("node_id") && j["node_id"].is_string())
    v.node_id = j["node_id"].get<std::string>();
  for (auto& n : j["nodes"]) {
    if (!n.is_object() || !n.contains("id") || !n["id"].is_string()
        || !n.contains("state") || !n["state"].is_string()
        || !n.contains("shards") || !n["shards"].is_number_integer()
        || !n.contains("incarnation")
        || !n["incarnation"].is_number_integer()) {
      error = "a node entry lacks id, state, shards or incarnation: " + body;
      return std::nullopt;
    }
    node_view nv;
    nv.id = n["id"].get<std::string>();
    nv.state = n["state"].get<std::string>();
    nv.shards = n["shards"].get<int>();
    nv.incarnation = n["incarnation"].get<std::int64_t>();
    v.nodes.push_back(std::move(nv));
  }
  return v;
}

// ---------------------------------------------------------------------------
// test_cluster

test_cluster::test_cluster(const std::string& tag) : dir_(tag) {
  postgres_ = start_embedded(dir_.path() + "/db");
  conninfo_ = postgres_->connection_string();
  pump_ = std::thread{[this] { pump_loop(); }};
}

test_cluster::~test_cluster() {
  pumping_ = false;
  pump_.join();
  std::lock_guard<std::mutex> lock{mutex_};
  if (::testing::Test::HasFailure())
    for (auto& n : nodes_)
      std::cerr << "\n----- output of " << n->id << " (http " << n->http_port
                << ", cluster " << n->cluster_port << ") -----\n"
                << tail(n->process->output(), 6000) << "\n";
  nodes_.clear(); // SIGKILL to whatever still runs, before the database goes
}

void test_cluster::pump_loop() {
  while (pumping_) {
    {
      std::lock_guard<std::mutex> lock{mutex_};
      for (auto& n : nodes_)
        if (!n->exited)
          n->process->output();
    }
    std::this_thread::sleep_for(100ms);
  }
}

std::uint16_t test_cluster::unused_port() {
  // A port another node of this test was given but has not bound yet is
  // free for the kernel: never hand one out twice.
  while (true) {
    auto port = free_port();
    if (ports_.insert(port).second)
      return port;
  }
}

node_process& test_cluster::launch(int index) {
  auto n = std::make_unique<node_process>();
  n->index = index;
  n->id = "n" + std::to_string(index);
  n->data_dir = dir_.path() + "/" + n->id;
  n->http_port = unused_port();
  n->cluster_port = unused_port();
  std::vector<std::string> argv{binary, "serve", "--data-dir", n->data_dir};
  auto set = [&](const std::string& key, const std::string& value) {
    argv.push_back("--set");
    argv.push_back(key + "=" + value);
  };
  set("server.listen", "127.0.0.1:" + std::to_string(n->http_port));
  set("server.node_id", n->id);
  set("cluster.listen", "127.0.0.1:" + std::to_string(n->cluster_port));
  set("database.url", conninfo_);
  set("cluster.heartbeat_ms", std::to_string(heartbeat.count()));
  set("cluster.failure_timeout_ms", std::to_string(failure_timeout.count()));
  set("cluster.lease_ms", std::to_string(lease.count()));
  // The setting's maximum: 10,000,000 is refused with exit code 2.
  set("http.key_rate_per_min", "1000000");
  set("http.burst_per_s", "1000000");
  set("cluster.shards", std::to_string(cluster_shards));
  n->process = std::make_unique<child_process>(argv);
  std::lock_guard<std::mutex> lock{mutex_};
  nodes_.push_back(std::move(n));
  return *nodes_.back();
}

node_process& test_cluster::node(int index) {
  std::lock_guard<std::mutex> lock{mutex_};
  for (auto& n : nodes_)
    if (n->index == index)
      return *n;
  throw std::logic_error("node n" + std::to_string(index)
                         + " was not launched");
}

::testing::AssertionResult
test_cluster::wait_ready(node_process& n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "no answer yet";
  while (true) {
    if (auto code = wait_exit(n, 1ms))
      return ::testing::AssertionFailure()
             << n.id << " exited with code " << *code
             << " before it answered /health:\n"
             << log_tail(n);
    try {
      auto r = http_request(n.http_port, "GET", "/health");
      if (r.status == 200)
        break;
      last = "status " + std::to_string(r.status) + " " + r.error + r.body;
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure()
             << n.id << " did not answer GET /health with 200 within "
             << timeout.count() << " ms (last: " << last << "):\n"
             << log_tail(n);
    std::this_thread::sleep_for(50ms);
  }
  std::string out;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    out = n.process->output();
  }
  if (auto key = printed_admin_key(out); !key.empty()) {
    ++admin_keys_printed_;
    if (admin_key_.empty())
      admin_key_ = key;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult
test_cluster::wait_active(node_process& n, std::chrono::milliseconds timeout) {
  return wait_view(
      n, [&](const cluster_view& v) { return v.is(n.id, "active"); }, timeout,
      n.id + " lists itself as active");
}

::testing::AssertionResult test_cluster::start(int index) {
  auto& n = launch(index);
  if (auto ready = wait_ready(n); !ready)
    return ready;
  if (admin_key_.empty())
    return ::testing::AssertionFailure()
           << n.id << " is ready but no node has printed the first admin "
           << "key:\n"
           << log_tail(n);
  return wait_active(n);
}

::testing::AssertionResult test_cluster::start_nodes(int count) {
  if (auto first = start(1); !first)
    return first;
  for (int i = 2; i <= count; ++i)
    launch(i);
  std::vector<std::string> ids{"n1"};
  for (int i = 2; i <= count; ++i) {
    auto& n = node(i);
    ids.push_back(n.id);
    if (auto ready = wait_ready(n); !ready)
      return ready;
    if (auto active = wait_active(n); !active)
      return active;
  }
  if (admin_keys_printed_ != 1)
    return ::testing::AssertionFailure()
           << admin_keys_printed_ << " nodes printed a first admin key; only "
           << "n1, the first on the database, should have";
  return wait_balanced(node(1), ids, 30s);
}

std::optional<cluster_view> test_cluster::view(const node_process& via,
                                               std::string* error) {
  std::string err;
  try {
    auto r = http_request(via.http_port, "GET", "/admin/cluster", {},
                          bearer(admin_key_));
    if (r.status == 200) {
      if (auto v = parse_cluster_view(r.body, err))
        return v;
    } else {
      err = "GET /admin/cluster on " + via.id + ": status "
            + std::to_string(r.status) + " " + r.error + r.body;
    }
  } catch (const std::exception& e) {
    err = "GET /admin/cluster on " + via.id + ": " + e.what();
  }
  if (error)
    *error = err;
  return std::nullopt;
}

::testing::AssertionResult
test_cluster::wait_view(const node_process& via,
                        const std::function<bool(const cluster_view&)>& accept,
                        std::chrono::milliseconds timeout,
                        const std::string& what, cluster_view* last) {
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + timeout;
  std::string seen = "nothing", last_view = "none";
  while (true) {
    std::string error;
    if (auto v = view(via, &error)) {
      if (accept(*v)) {
        if (last)
          *last = *v;
        return ::testing::AssertionSuccess();
      }
      seen = last_view = v->body;
    } else {
      seen = error;
    }
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure()
             << "waited " << timeout.count() << " ms for: " << what
             << "\nlast answer of /admin/cluster on " << via.id << ": " << seen
             << (seen == last_view
                     ? ""
                     : "\nthe last view it gave, before that: " + last_view)
             << "\n"
             << database_waits(conninfo_);
    std::this_thread::sleep_for(100ms);
  }
}

::testing::AssertionResult test_cluster::wait_balanced(
    const node_process& via, const std::vector<std::string>& active,
    std::chrono::milliseconds timeout, cluster_view* last) {
  std::string names;
  for (auto& id : active)
    names += (names.empty() ? "" : "+") + id;
  return wait_view(
      via, [&](const cluster_view& v) { return is_balanced(v, active); },
      timeout,
      names + " active, each with shards, together holding all "
          + std::to_string(cluster_shards),
      last);
}

void test_cluster::signal(node_process& n, int sig) {
  std::lock_guard<std::mutex> lock{mutex_};
  if (!n.exited)
    n.process->signal(sig);
}

std::optional<int> test_cluster::wait_exit(node_process& n,
                                           std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    {
      std::lock_guard<std::mutex> lock{mutex_};
      if (n.exited)
        return n.exit_code;
      if (auto code = n.process->wait_exit(std::min(timeout, 50ms))) {
        n.exited = true;
        n.exit_code = code;
        return code;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
  }
}

::testing::AssertionResult
test_cluster::stop(node_process& n, std::chrono::milliseconds timeout) {
  signal(n, SIGTERM);
  auto code = wait_exit(n, timeout);
  if (!code) {
    print_stacks(n);
    return ::testing::AssertionFailure()
           << n.id << " did not exit within " << timeout.count()
           << " ms of SIGTERM:\n"
           << log_tail(n);
  }
  if (*code != 0)
    return ::testing::AssertionFailure()
           << n.id << " exited with code " << *code << " after SIGTERM:\n"
           << log_tail(n);
  return ::testing::AssertionSuccess();
}

void test_cluster::stop_all() {
  std::vector<node_process*> running;
  {
    std::lock_guard<std::mutex> lock{mutex_};
    for (auto& n : nodes_)
      if (!n->exited) {
        n->process->signal(SIGCONT);
        n->process->signal(SIGTERM);
        running.push_back(n.get());
      }
  }
  // One deadline for all: they stop in parallel.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  std::vector<std::optional<int>> codes;
  for (auto* n : running)
    codes.push_back(wait_exit(
        *n, std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                         deadline - std::chrono::steady_clock::now()),
                     std::chrono::milliseconds{100})));
  for (std::size_t i = 0; i < running.size(); ++i) {
    auto* n = running[i];
    auto code = codes[i];
    if (!code)
      print_stacks(*n);
    EXPECT_TRUE(code) << n->id << " did not exit within 30 s of SIGTERM:\n"
                      << log_tail(*n);
    if (code) {
      EXPECT_EQ(*code, 0) << n->id << " exited with code " << *code
                          << " after SIGTERM:\n"
                          << log_tail(*n);
    }
  }
}

std::string test_cluster::log_tail(node_process& n, std::size_t chars) {
  std::lock_guard<std::mutex> lock{mutex_};
  return tail(n.process->output(), chars);
}

void test_cluster::print_stacks(node_process& n) {
  std::cerr << "\n----- threads of " << n.id << " (pid " << n.process->pid()
            << "), which did not exit -----\n"
            << thread_stacks(n.process->pid()) << "\n";
}

std::string test_cluster::output(node_process& n) {
  std::lock_guard<std::mutex> lock{mutex_};
  return n.process->output();
}

std::string test_cluster::database_now() {
  return query_value(conninfo_, "SELECT clock_timestamp()::text");
}

// ---------------------------------------------------------------------------
// load_results

std::int64_t load_results::acked() const {
  std::int64_t sum = 0;
  for (auto& k : keys)
    sum += k.acked;
  return sum;
}

std::int64_t load_results::ambiguous() const {
  std::int64_t sum = 0;
  for (auto& k : keys)
    sum += k.ambiguous;
  return sum;
}

void load_results::record(int key, const http_reply& reply) {
  ++statuses[reply.status];
  auto& k = keys.at(static_cast<std::size_t>(key));
  if (reply.status != 200) {
    ++k.ambiguous;
    return;
  }
  auto j = json::parse(reply.body, nullptr, false);
  if (!j.is_object() || !j.contains("value") || !j["value"].is_number_integer()
      || !j.contains("id") || j["id"] != probe_key(key)
      || !j.contains("node_id") || !j["node_id"].is_string()) {
    ++malformed;
    ++k.ambiguous;
    if (malformed_examples.size() < 5)
      malformed_examples.push_back(probe_key(key) + ": " + reply.body);
    return;
  }
  ++k.acked;
  k.values.push_back(j["value"].get<std::int64_t>());
  k.owners.push_back(j["node_id"].get<std::string>());
  ++owners[j["node_id"].get<std::string>()];
}

void load_results::merge(const load_results& other) {
  for (std::size_t i = 0; i < keys.size(); ++i) {
    keys[i].acked += other.keys[i].acked;
    keys[i].ambiguous += other.keys[i].ambiguous;
    keys[i].values.insert(keys[i].values.end(), other.keys[i].values.begin(),
                          other.keys[i].values.end());
    keys[i].owners.insert(keys[i].owners.end(), other.keys[i].owners.begin(),
                          other.keys[i].owners.end());
  }
  for (auto& [s, n] : other.statuses)
    statuses[s] += n;
  for (auto& [o, n] : other.owners)
    owners[o] += n;
  malformed += other.malformed;
  for (auto& e : other.malformed_examples)
    if (malformed_examples.size() < 5)
      malformed_examples.push_back(e);
}

std::string load_results::describe_statuses() const {
  std::string out;
  for (auto& [s, n] : statuses)
    out += (out.empty() ? "" : ", ") + (s == 0 ? "none" : std::to_string(s))
           + ": " + std::to_string(n);
  return out.empty() ? "no requests" : out;
}

std::string probe_add_request(int key, const std::string& admin_key) {
  std::string body = R"({"add":1})";
  return "POST /admin/probe/" + probe_key(key)
         + " HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " + admin_key
         + "\r\nContent-Type: application/json\r\nContent-Length: "
         + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// ---------------------------------------------------------------------------
// probe_load

probe_load::probe_load(std::string admin_key,
                       std::vector<std::uint16_t> targets, int threads)
    : admin_key_(std::move(admin_key)), targets_(std::move(targets)),
      results_(static_cast<std::size_t>(threads)) {
  for (int t = 0; t < threads; ++t)
    threads_.emplace_back([this, t] { run(t); });
}

probe_load::~probe_load() {
  stop();
}

void probe_load::set_targets(std::vector<std::uint16_t> targets) {
  std::lock_guard<std::mutex> lock{mutex_};
  targets_ = std::move(targets);
  ++generation_;
}

load_results probe_load::stop() {
  if (!stopped_) {
    stopped_ = true;
    stopping_ = true;
    for (auto& t : threads_)
      t.join();
  }
  load_results all;
  for (auto& r : results_)
    all.merge(r);
  return all;
}

void probe_load::run(int thread) {
  auto& out = results_[static_cast<std::size_t>(thread)];
  std::mt19937 rng{static_cast<std::mt19937::result_type>(7919 * thread + 1)};
  std::uniform_int_distribution<int> pick{0, probe_keys - 1};
  auto h = bearer(admin_key_, true);
  std::unique_ptr<http_connection> conn;
  std::uint16_t port = 0;
  std::vector<std::uint16_t> targets;
  std::uint64_t seen = ~std::uint64_t{0};
  auto cursor = static_cast<std::size_t>(thread);
  while (!stopping_) {
    if (auto g = generation_.load(); g != seen) {
      std::lock_guard<std::mutex> lock{mutex_};
      targets = targets_;
      seen = g;
      // Round robin over the new targets: nodes that joined get their
      // share of the threads.
      if (conn && (targets.empty() || targets[cursor % targets.size()] != port))
        conn.reset();
    }
    if (!conn) {
      if (targets.empty()) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      port = targets[cursor % targets.size()];
      try {
        conn = std::make_unique<http_connection>(port);
      } catch (const std::exception&) {
        ++cursor; // refused: that node is gone, try the next
        std::this_thread::sleep_for(20ms);
        continue;
      }
    }
    int key = pick(rng);
    auto r = conn->request("POST", "/admin/probe/" + probe_key(key),
                           R"({"add":1})", h, 10s);
    out.record(key, r);
    if (r.status == 200)
      ++acked_;
    if (r.status == 0) {
      conn.reset();
      ++cursor; // no answer: the node may have died, move on
    } else if (r.closed) {
      conn.reset();
    }
    if (r.status == 503 || r.status == 429)
      std::this_thread::sleep_for(20ms);
  }
}

load_results send_at_once(std::uint16_t port, const std::string& admin_key,
                          const std::vector<int>& keys,
                          std::chrono::milliseconds timeout) {
  load_results out;
  std::vector<std::unique_ptr<http_connection>> conns;
  for (int key : keys) {
    try {
      conns.push_back(std::make_unique<http_connection>(port));
      conns.back()->send(probe_add_request(key, admin_key));
    } catch (const std::exception&) {
      conns.push_back(nullptr); // refused: counts as no answer
    }
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    http_reply r;
    if (conns[i]) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      r = conns[i]->read(std::max(left, std::chrono::milliseconds{200}));
    } else {
      r.error = "connection refused";
    }
    out.record(keys[i], r);
  }
  return out;
}

::testing::AssertionResult keep_load(const probe_load& load,
                                     std::chrono::milliseconds duration,
                                     std::int64_t total,
                                     std::chrono::milliseconds cap) {
  std::this_thread::sleep_for(duration);
  auto deadline = std::chrono::steady_clock::now() + cap;
  while (load.acked_so_far() < total) {
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure()
             << "the load got only " << load.acked_so_far() << " acks in all, "
             << cap.count() << " ms after its planned "
             << "end (wanted " << total << ")";
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionSuccess();
}

std::string database_waits(const std::string& conninfo) {
  try {
    pqxx::connection c{conninfo};
    pqxx::nontransaction tx{c};
    auto rows = tx.exec(R"sql(
      SELECT pid, state, coalesce(wait_event_type || '/' || wait_event, '-'),
             pg_blocking_pids(pid)::text,
             round(extract(epoch FROM clock_timestamp() - xact_start) * 1000),
             left(regexp_replace(query, '\s+', ' ', 'g'), 160)
      FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND (cardinality(pg_blocking_pids(pid)) > 0
             OR state LIKE 'idle in transaction%'
             OR clock_timestamp() - xact_start > interval '1 second')
      ORDER BY xact_start LIMIT 15)sql");
    if (rows.empty())
      return "database: no session blocked or in a transaction for over 1 s";
    std::string out = "database sessions blocked or in long transactions:";
    for (auto r : rows)
      out += std::string{"\n  pid "} + r[0].c_str() + " " + r[1].c_str()
             + " wait " + r[2].c_str() + " blocked by " + r[3].c_str()
             + " in transaction for " + r[4].c_str() + " ms: " + r[5].c_str();
    return out;
  } catch (const std::exception& e) {
    return std::string{"database: cannot list sessions: "} + e.what();
  }
}

::testing::AssertionResult wait_acks(const probe_load& load, std::int64_t more,
                                     std::chrono::milliseconds within,
                                     const std::string& when) {
  auto from = load.acked_so_far();
  auto deadline = std::chrono::steady_clock::now() + within;
  while (load.acked_so_far() < from + more) {
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure()
             << "only " << load.acked_so_far() - from << " writes were acked "
             << "in " << within.count() << " ms " << when << " (wanted " << more
             << ")";
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------
// Checks

namespace {

// The activations of one entity key, oldest first, one indented line each.
std::string activation_log(const std::string& conninfo,
                           const std::string& key) {
  std::ostringstream out;
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  auto rows = tx.exec_params(
      "SELECT id, node_id, coalesce(incarnation::text, 'null'), activated_at, "
      "coalesce(last_write_at::text, 'none'), "
      "coalesce(passivated_at::text, 'never') "
      "FROM probe_activations WHERE key = $1 ORDER BY id",
      key);
  out << "\n    activations of " << key << ":";
  for (auto r : rows)
    out << "\n      #" << r[0].c_str() << " " << r[1].c_str() << " inc "
        << r[2].c_str() << " activated " << r[3].c_str() << ", last write "
        << r[4].c_str() << ", passivated " << r[5].c_str();
  return out.str();
}

} // namespace

::testing::AssertionResult exactly_once(const std::string& conninfo,
                                        const load_results& load,
                                        std::int64_t min_acked) {
  if (load.acked() < min_acked)
    return ::testing::AssertionFailure()
           << "the load got only " << load.acked() << " acks (wanted at least "
           << min_acked << "); answers: " << load.describe_statuses();
  if (load.malformed > 0) {
    auto f = ::testing::AssertionFailure();
    f << load.malformed << " answers were 200 without a probe state, e.g.:";
    for (auto& e : load.malformed_examples)
      f << "\n  " << e;
    return f;
  }
  std::map<std::string, std::int64_t> finals;
  {
    pqxx::connection c{conninfo};
    pqxx::nontransaction tx{c};
    for (auto row : tx.exec("SELECT id, value FROM probe_counters"))
      finals[row[0].as<std::string>()] = row[1].as<std::int64_t>();
  }
  std::vector<std::string> violations;
  int violated = 0;
  for (int i = 0; i < probe_keys; ++i) {
    auto& k = load.keys[static_cast<std::size_t>(i)];
    auto it = finals.find(probe_key(i));
    std::int64_t final_value = it == finals.end() ? 0 : it->second;
    std::vector<std::pair<std::int64_t, std::string>> acks;
    for (std::size_t a = 0; a < k.values.size(); ++a)
      acks.emplace_back(k.values[a], k.owners[a]);
    std::sort(acks.begin(), acks.end());
    std::vector<std::int64_t> values;
    for (auto& a : acks)
      values.push_back(a.first);
    std::vector<std::string> why;
    if (std::adjacent_find(values.begin(), values.end()) != values.end())
      why.push_back("the same value acked twice");
    if (final_value < k.acked)
      why.push_back("final < acked: acknowledged writes lost");
    if (final_value > k.acked + k.ambiguous)
      why.push_back("final > acked + ambiguous: writes applied twice");
    if (!values.empty() && values.back() > final_value)
      why.push_back("an acked value above the final one");
    if (why.empty())
      continue;
    ++violated;
    if (violations.size() >= 10)
      continue;
    std::ostringstream line;
    line << probe_key(i) << ": acked " << k.acked << ", ambiguous "
         << k.ambiguous << ", final " << final_value
         << (it == finals.end() ? " (no row)" : "") << ", acked value@owner [";
    for (std::size_t v = 0; v < acks.size() && v < 30; ++v)
      line << (v ? " " : "") << acks[v].first << "@" << acks[v].second;
    line << (acks.size() > 30 ? " ...]" : "]") << ": ";
    for (std::size_t w = 0; w < why.size(); ++w)
      line << (w ? "; " : "") << why[w];
    if (violations.size() < 3)
      line << activation_log(conninfo, "probe/" + probe_key(i));
    violations.push_back(line.str());
  }
  if (violated == 0)
    return ::testing::AssertionSuccess();
  auto f = ::testing::AssertionFailure();
  f << violated << " of " << probe_keys << " keys break exactly-once (acked "
    << load.acked() << ", ambiguous " << load.ambiguous()
    << "; answers: " << load.describe_statuses() << "); the first ones:";
  for (auto& v : violations)
    f << "\n  " << v;
  return f;
}

::testing::AssertionResult
activations_never_overlap(const std::string& conninfo, int min_keys) {
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  auto keys
      = tx.exec1("SELECT count(DISTINCT key), count(*) FROM probe_activations");
  auto distinct = keys[0].as<std::int64_t>();
  if (distinct < min_keys)
    return ::testing::AssertionFailure()
           << "only " << distinct << " keys were ever activated ("
           << keys[1].as<std::int64_t>() << " activations), wanted at least "
           << min_keys;
  const char* overlaps = R"sql(
    WITH a AS (
      SELECT id, key, node_id, incarnation, activated_at,
             coalesce(passivated_at, last_write_at, activated_at) AS ended_at,
             passivated_at IS NOT NULL AS closed
      FROM probe_activations)
    SELECT a.key, a.id, a.node_id, a.incarnation, a.activated_at, a.ended_at,
           a.closed, b.id, b.node_id, b.incarnation, b.activated_at,
           b.ended_at, b.closed, count(*) OVER () AS total
    FROM a JOIN a b ON a.key = b.key AND a.id < b.id
     AND a.activated_at < b.ended_at AND b.activated_at < a.ended_at
    ORDER BY a.activated_at
    LIMIT 20)sql";
  auto rows = tx.exec(overlaps);
  if (rows.empty())
    return ::testing::AssertionSuccess();
  auto f = ::testing::AssertionFailure();
  f << rows[0][13].as<std::int64_t>()
    << " pairs of activations of one key overlap in time (of "
    << keys[1].as<std::int64_t>() << " activations of " << distinct
    << " keys); the first ones:";
  auto side = [](const pqxx::row& r, int at) {
    std::ostringstream s;
    s << "#" << r[at].c_str() << " on " << r[at + 1].c_str() << " inc "
      << (r[at + 2].is_null() ? "null" : r[at + 2].c_str()) << " ["
      << r[at + 3].c_str() << ", " << r[at + 4].c_str() << "]"
      << (r[at + 5].as<bool>() ? " passivated" : " never closed");
    return s.str();
  };
  for (auto r : rows)
    f << "\n  " << r[0].c_str() << ": " << side(r, 1) << "  overlaps  "
      << side(r, 7);
  return f;
}

std::map<std::string, std::int64_t>
counter_owners(const std::string& conninfo) {
  std::map<std::string, std::int64_t> out;
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  for (auto row : tx.exec("SELECT node_id, count(*) FROM probe_counters "
                          "GROUP BY node_id"))
    out[row[0].as<std::string>()] = row[1].as<std::int64_t>();
  return out;
}

std::string describe(const std::map<std::string, std::int64_t>& counts) {
  std::string out;
  for (auto& [k, n] : counts)
    out += (out.empty() ? "" : ", ") + k + ": " + std::to_string(n);
  return out.empty() ? "none" : out;
}

} // namespace karvon::testing::multinode
