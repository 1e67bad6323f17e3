// Benchmarks of the chat assistant (issue 6), through a whole node as
// `karvon serve --demo` runs it (app::node: gateway, user entities, the LLM
// service, the batch writer of turns, an embedded PostgreSQL), with the fake
// LLM server of the tests standing in for the model:
//   chat_cached    cached asks per second through HTTP, next to a raw Beast
//                  server answering the same POSTs;
//   chat_overhead  what karvon adds to one LLM ask (p50, p99): each ask's
//                  latency next to the same call made straight to the model.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "actors/api_keys.hpp"
#include "actors/llm_protocol.hpp"
#include "app/node.hpp"
#include "bench/load_client.hpp"
#include "bench/raw_server.hpp"
#include "bench/scenario.hpp"
#include "config/settings.hpp"
#include "persistence/api_key_store.hpp"
#include "tests/support/fake_llm.hpp"

namespace karvon::bench {

namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using http_response = http::response<http::string_body>;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Requests. Both sides of each scenario are measured with bench/load_client,
// so that its own cost is the same on both: POSTs with a body of their own,
// each answer checked, one client thread (it shares the two cores with the
// server).

// POSTs of JSON to `target` on `port`; `key` empty: no Authorization.
load_options post_options(std::uint16_t port, const std::string& target,
                          const std::string& key) {
  load_options l;
  l.port = port;
  l.method = "POST";
  l.target = target;
  if (!key.empty())
    l.headers = "Authorization: Bearer " + key + "\r\n";
  l.headers += "Content-Type: application/json\r\n";
  // An ask that reaches the model takes tens of ms; at the end, give those
  // in flight ample time before they count as failures.
  l.drain = 5000ms;
  return l;
}

// One request on a fresh connection, blocking: set-up only (waiting for the
// key, warming the cache), never measured.
http_response request_once(const load_options& o, const std::string& body) {
  net::io_context ioc;
  tcp::socket socket{ioc};
  socket.connect({net::ip::make_address(o.host), o.port});
  net::write(socket, net::buffer(request_bytes(o, body)));
  boost::beast::flat_buffer buffer;
  http_response res;
  http::read(socket, buffer, res);
  return res;
}

// Bench user ids and questions are plain ASCII without quotes or
// backslashes: the body needs no JSON escaping.
std::string ask_body(const std::string& user_id, const std::string& question) {
  return R"({"user_id":")" + user_id + R"(","question":")" + question + R"("})";
}

bool has_source(const std::string& body, const char* source) {
  return body.find(std::string{R"("source":")"} + source + "\"")
         != std::string::npos;
}

// p50 and p99 in milliseconds, nearest rank; zeros for no answers.
std::vector<double> p50_p99_ms(std::vector<std::chrono::nanoseconds> v) {
  if (v.empty())
    return {0.0, 0.0};
  std::sort(v.begin(), v.end());
  auto ms = [&v](double q) {
    auto rank = static_cast<std::size_t>(
        std::ceil(q * static_cast<double>(v.size())));
    auto at = v[std::max<std::size_t>(rank, 1) - 1];
    return std::chrono::duration<double, std::milli>(at).count();
  };
  return {ms(0.50), ms(0.99)};
}

sample to_sample(const load_result& r, std::vector<double> values) {
  sample s;
  s.values = std::move(values);
  s.errors = r.failures();
  s.first_error = r.first_error;
  return s;
}

// ---------------------------------------------------------------------------
// The node under test.

// A fresh temporary folder, removed with everything in it at the end.
class temp_folder {
public:
  temp_folder() {
    std::string dir = (fs::temp_directory_path() / "karvon-bench-chat-XXXXXX");
    if (!::mkdtemp(dir.data()))
      throw std::runtime_error("cannot create a folder for the bench node");
    path_ = dir;
    // mkdtemp makes it 0700; run as root, the embedded PostgreSQL runs as
    // the postgres user, which must be able to enter it.
    fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read
                               | fs::perms::group_exec | fs::perms::others_read
                               | fs::perms::others_exec);
  }
  ~temp_folder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_folder(const temp_folder&) = delete;
  temp_folder& operator=(const temp_folder&) = delete;

  const std::string& path() const { return path_; }

private:
  std::string path_;
};

// Five words, five tokens: each takes the fake's token latency, and the end
// one more.
std::string five_words(const std::string&) {
  return "Delivery takes two working days.";
}

// A node with the demo knowledge base (as `karvon serve --demo`), its own
// embedded PostgreSQL in a temporary folder, the fake as its LLM, and a
// client key made straight in the database (as tests/server/node_fixture).
class chat_node {
public:
  chat_node(const std::string& llm_url, int threads) {
    config::settings s;
    s.server.listen = "127.0.0.1:0";
    s.server.data_dir = folder_.path();
    s.server.threads = threads;
    s.llm.url = llm_url;
    s.llm.max_concurrency = 4;
    // The bench measures what the node does per ask, not its rate limits:
    // one client key speaks for every bench user.
    s.http.client_key_rate_per_s = 100'000'000;
    s.http.key_rate_per_min = 100'000'000;
    s.http.anon_rate_per_min = 100'000'000;
    s.http.burst_per_s = 100'000'000;
    node_ = std::make_unique<app::node>(
        s, app::node_options{/*print_new_keys=*/false, /*demo=*/true});
    node_->start();
    auto key = actors::generate_api_key();
    persistence::api_key_row row;
    row.name = "bench client";
    row.role = actors::to_string(actors::role::client);
    row.lookup = key.lookup;
    row.secret_hash = key.secret_hash;
    {
      pqxx::connection c{node_->conninfo()};
      persistence::insert_api_key(c, row);
    }
    key_ = key.text;
    // The node picks new keys up within its poll interval (250 ms).
    for (int i = 0;; ++i) {
      auto r = request_once(ask_options(), "{}");
      if (r.result_int() != 401)
        break;
      if (i == 200)
        throw std::runtime_error("the bench node never accepted its key");
      std::this_thread::sleep_for(25ms);
    }
  }

  ~chat_node() { node_->stop(); }

  chat_node(const chat_node&) = delete;
  chat_node& operator=(const chat_node&) = delete;

  std::uint16_t port() const { return node_->http_port(); }
  /// Asks to this node with its client key; no body yet.
  load_options ask_options() const {
    return post_options(port(), "/api/v1/chat/ask", key_);
  }

  /// One ask, blocking; throws unless it is a 200 from `source`.
  void ask_once(const std::string& user, const std::string& question,
                const char* source) {
    auto r = request_once(ask_options(), ask_body(user, question));
    if (r.result_int() != 200 || !has_source(r.body(), source))
      throw std::runtime_error("asking '" + question + "' while setting up: "
                               + std::to_string(r.result_int()) + " "
                               + r.body().substr(0, 300) + " (expected "
                               + source + ")");
  }

private:
  temp_folder folder_; // outlives the node and its database
  std::unique_ptr<app::node> node_;
  std::string key_;
};

// ---------------------------------------------------------------------------
// chat_cached

// A fixed small set of questions on the demo knowledge base: each is asked
// once before measuring, so that every measured ask is a cache hit.
const std::vector<std::string>& cached_questions() {
  static const std::vector<std::string> q = {
      "is delivery free",
      "how long does delivery take",
      "do you deliver to samarkand",
      "how much does delivery cost",
      "can i pay by card",
      "can i pay cash on delivery",
      "do you accept click or payme",
      "can i pay in installments",
      "how do returns work",
      "can i exchange a product",
      "how many days do i have to return an item",
      "who pays for return shipping",
      "what does the warranty cover",
      "how long is the warranty",
      "how do i make a warranty claim",
      "how can i track my order",
      "where is my order",
      "what are your opening hours",
      "how can i contact support",
      "what is your phone number",
  };
  return q;
}

// Users the asks come from, round-robin: the entities are all active after
// the warm-up, as under steady traffic.
constexpr int cached_users = 1000;

scenario_result run_chat_cached(const options& o) {
  const std::vector<figure> figures
      = {{"req_per_s", "1/s", "raw_beast", better::higher}};
  // The model's speed does not matter here: nothing measured reaches it.
  testing::fake_llm fake{{4, 512, 1ms, five_words}};
  chat_node node{fake.url(), o.threads};
  auto& questions = cached_questions();
  for (auto& q : questions)
    node.ask_once("warm", q, "llm");
  // A question from a new session has the same prompt: from the cache now.
  for (auto& q : questions)
    node.ask_once("warm", q, "cache");

  raw_http_server raw{o.threads};
  raw.start();
  // The same requests to both sides (question, user id and key included),
  // round-robin over the questions, each from a new session.
  auto ask_load = [&](std::uint16_t port,
                      std::function<bool(const std::string&)> accept) -> side {
    auto l = node.ask_options();
    l.port = port;
    l.connections = o.connections;
    l.body = [&questions](std::uint64_t i) {
      return ask_body("user" + std::to_string(i % cached_users),
                      questions[i % questions.size()]);
    };
    l.accept = std::move(accept);
    return [l](std::chrono::milliseconds d) {
      auto run = l;
      run.duration = d;
      auto r = run_load(run);
      return to_sample(r, {r.req_per_s()});
    };
  };
  side karvon = ask_load(node.port(), [](const std::string& body) {
    return has_source(body, "cache");
  });
  side ceiling = ask_load(raw.port(), {});
  return measure_interleaved(figures, o, karvon, ceiling);
}

// ---------------------------------------------------------------------------
// chat_overhead

// Asks in flight: below llm.max_concurrency (4) and the fake's parallelism
// (4), so that no ask waits for a slot and the difference is karvon's own.
constexpr int overhead_in_flight = 2;
// Users the asks come from, round-robin (all active after the warm-up).
constexpr int overhead_users = 8;
// The issue's goal for the added p99.
constexpr double overhead_goal_ms = 5.0;

scenario_result run_chat_overhead(const options& o) {
  // Measured interleaved: a whole ask through karvon, and the same kind of
  // call straight to the model. Lower is better; report.cpp's ratio is then
  // ceiling / value.
  const std::vector<figure> measured = {
      {"ask_p50_ms", "ms", "direct_llm", better::lower},
      {"ask_p99_ms", "ms", "direct_llm", better::lower},
  };
  // 5 tokens x 4 ms and the end: 24 ms for a call. The fake does not set
  // TCP_NODELAY, so on a kept-alive connection its tokens wait for the
  // reader's delayed ACK (about 40 ms on Linux) and a call takes about 44
  // ms; karvon's client and this one wait alike, so the difference stands,
  // but the fake's own time varies by a few ms from run to run.
  testing::fake_llm fake{{4, 512, 4ms, five_words}};
  chat_node node{fake.url(), o.threads};
  // The messages the node sends for a question: the direct calls send the
  // same system prompt and a question of the same kind, in the body the
  // node builds (llm_request_body).
  node.ask_once("probe", "is delivery free, probe", "llm");
  auto prompts = fake.prompts();
  if (prompts.empty())
    throw std::runtime_error("the fake LLM saw no prompt");
  std::vector<actors::llm_message> messages;
  for (auto& m : nlohmann::json::parse(prompts.back()))
    messages.push_back(
        {m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  const std::string model = config::llm_settings{}.model;

  // Every question is new, on both sides, so that nothing is cached. The
  // client's request index starts again with each run: this counter goes
  // on across runs.
  std::uint64_t next = 0;
  auto question
      = [&next] { return "is delivery free, order " + std::to_string(next++); };
  // A side that keeps every run (the warm-up first) in `runs` as well, for
  // the added latency below.
  auto latency_side = [](load_options l, std::vector<sample>& runs) -> side {
    l.connections = overhead_in_flight;
    l.keep_latencies = true;
    return [l, &runs](std::chrono::milliseconds d) {
      auto run = l;
      run.duration = d;
      auto r = run_load(run);
      runs.push_back(to_sample(r, p50_p99_ms(std::move(r.latencies))));
      return runs.back();
    };
  };
  auto asks = node.ask_options();
  asks.body = [&](std::uint64_t) {
    auto user = "user" + std::to_string(next % overhead_users);
    return ask_body(user, question());
  };
  asks.accept = [](const std::string& body) { return has_source(body, "llm"); };
  auto calls = post_options(fake.port(), "/api/chat", {});
  calls.body = [&](std::uint64_t) {
    auto m = messages;
    m.back().content = question();
    return actors::llm_request_body(actors::llm_provider::ollama,
                                    {model, std::move(m), true});
  };
  calls.accept = [](const std::string& body) {
    return body.find(R"("done":true)") != std::string::npos;
  };
  std::vector<sample> ours, direct;
  side karvon = latency_side(std::move(asks), ours);
  side ceiling = latency_side(std::move(calls), direct);
  auto result = measure_interleaved(measured, o, karvon, ceiling);

  // The added latency, the issue's figure: each run's ask percentile minus
  // that of the direct run right after it. It has no measured ceiling of
  // its own (the direct call is already subtracted), so it stands next to
  // the issue's goal instead, with the ratio goal / value: 1.0 or more
  // meets it.
  if (o.warmup_ms > 0 && !ours.empty() && !direct.empty()) {
    ours.erase(ours.begin());
    direct.erase(direct.begin());
  }
  const char* names[] = {"p50_ms", "p99_ms"};
  for (std::size_t f = 0; f < 2; ++f) {
    std::vector<double> added;
    for (std::size_t i = 0; i < ours.size() && i < direct.size(); ++i)
      added.push_back(ours[i].values[f] - direct[i].values[f]);
    figure_result r;
    r.fig = {names[f], "ms", "goal_5ms", better::lower};
    r.runs = static_cast<int>(added.size());
    r.value = summarize(std::move(added));
    r.ceiling = {overhead_goal_ms, overhead_goal_ms, overhead_goal_ms};
    result.figures.push_back(std::move(r));
  }
  return result;
}

} // namespace

scenario chat_cached_scenario() {
  return {"chat_cached",
          "cached asks (POST /api/v1/chat/ask, each from a new session, 20 "
          "questions round-robin) vs a raw Beast server answering the same "
          "POSTs",
          {{"req_per_s", "1/s", "raw_beast", better::higher}},
          run_chat_cached};
}

scenario chat_overhead_scenario() {
  return {"chat_overhead",
          "latency of an LLM ask through karvon (2 in flight, every question "
          "new, the fake LLM at 5 tokens x 4 ms) vs the same call straight "
          "to the fake; karvon's added latency vs the 5 ms goal",
          {{"ask_p50_ms", "ms", "direct_llm", better::lower},
           {"ask_p99_ms", "ms", "direct_llm", better::lower},
           {"p50_ms", "ms", "goal_5ms", better::lower},
           {"p99_ms", "ms", "goal_5ms", better::lower}},
          run_chat_overhead};
}

} // namespace karvon::bench
