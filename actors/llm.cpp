#include "actors/llm.hpp"

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "actors/http_client.hpp"
#include "actors/sink.hpp"
#include "metrics/registry.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/llm_cache_store.hpp"

namespace karvon::actors {

namespace {

using nlohmann::json;
using steady = std::chrono::steady_clock;

// (piece, key, attempt, text): a streamed piece, from the HTTP thread.
using piece_atom = caf::atom_constant<caf::atom("llmpiece")>;
// (cached, key, found, result): the PostgreSQL cache's answer.
using cached_atom = caf::atom_constant<caf::atom("llmcached")>;

// Calls in a row that did not reach the model before it counts as down, and
// for how long.
constexpr int down_after_failures = 3;
constexpr std::chrono::seconds down_for{5};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             steady::now().time_since_epoch())
      .count();
}

// Whether the model can be reached, shared by the actor and the calls
// (which run on the sink's and the HTTP client's threads).
class reachability {
public:
  bool down() const {
    return now_ns() < down_until_.load(std::memory_order_relaxed);
  }

  void failed(const std::string& why) {
    {
      std::lock_guard lock{mu_};
      last_error_ = why;
    }
    if (++failures_ >= down_after_failures) {
      auto was = down_until_.exchange(
          now_ns() + std::chrono::nanoseconds{down_for}.count());
      if (was == 0)
        spdlog::warn("llm: {} calls in a row failed ({}); answering from the "
                     "knowledge base for {} s before trying again",
                     down_after_failures, why, down_for.count());
    }
  }

  void reached() {
    failures_ = 0;
    if (down_until_.exchange(0) != 0)
      spdlog::info("llm: the model answers again");
  }

  std::string last_error() const {
    std::lock_guard lock{mu_};
    return last_error_;
  }

private:
  std::atomic<int> failures_{0};
  std::atomic<std::int64_t> down_until_{0};
  mutable std::mutex mu_;
  std::string last_error_;
};

// What one job carries through the sink: the call is built from it.
struct job_payload {
  std::string key;
  std::string model;
  std::string body;
  std::int64_t deadline_ns = 0;
};

std::string encode(const job_payload& p) {
  return json{{"key", p.key},
              {"model", p.model},
              {"deadline_ns", p.deadline_ns},
              {"body", p.body}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

job_payload decode(const std::string& s) {
  auto j = json::parse(s);
  return {j.at("key").get<std::string>(), j.at("model").get<std::string>(),
          j.at("body").get<std::string>(),
          j.at("deadline_ns").get<std::int64_t>()};
}

std::string encode(const llm_result& r) {
  return json{{"text", r.text},
              {"model", r.model},
              {"prompt_tokens", r.prompt_tokens},
              {"completion_tokens", r.completion_tokens},
              {"llm_ms", r.llm_ms}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

llm_result decode_result(const std::string& s) {
  auto j = json::parse(s);
  llm_result r;
  r.text = j.at("text").get<std::string>();
  r.model = j.at("model").get<std::string>();
  r.prompt_tokens = j.at("prompt_tokens").get<std::int64_t>();
  r.completion_tokens = j.at("completion_tokens").get<std::int64_t>();
  r.llm_ms = j.at("llm_ms").get<double>();
  return r;
}

http_headers auth_headers(const llm_options& o) {
  http_headers h;
  if (!o.api_key.empty())
    h.emplace_back("Authorization", "Bearer " + o.api_key);
  return h;
}

// The server's own words from an error body, shortened for a log line.
std::string server_said(const http_response& r) {
  auto text = r.body.substr(0, 200);
  return "HTTP " + std::to_string(r.status) + (text.empty() ? "" : ": " + text);
}

// One attempt of one job: POST the body, stream the pieces to the actor,
// and tell the sink how it went.
void run_call(const llm_options& o, http_client& client,
              std::shared_ptr<reachability> reach, caf::actor llm,
              const sink_job& job, std::function<void(call_outcome)> done) {
  auto p = decode(job.payload);
  if (now_ns() > p.deadline_ns)
    return done(call_outcome::permanent(
        "its caller's deadline passed while it waited", errc::timeout));
  if (reach->down())
    return done(call_outcome::permanent(
        "the LLM is unreachable: " + reach->last_error(), errc::unavailable));
  struct progress {
    std::string text;
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
    std::string error;
    bool done = false;
  };
  auto acc = std::make_shared<progress>();
  http_request req;
  req.method = "POST";
  req.url = o.url + llm_path(o.provider);
  req.headers = auth_headers(o);
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = std::move(p.body);
  req.response_timeout = o.timeout;
  req.read_timeout = o.timeout;
  auto provider = o.provider;
  auto key = p.key;
  auto attempt = job.attempts;
  req.on_chunk = [acc, provider, llm, key, attempt](std::string_view chunk) {
    auto piece = parse_llm_stream_piece(provider, chunk);
    if (!piece)
      return true; // a keep-alive or something new: not ours to judge
    if (!piece->error.empty()) {
      acc->error = piece->error;
      return false;
    }
    if (!piece->text.empty()) {
      acc->text += piece->text;
      caf::anon_send(llm, piece_atom::value, key, attempt, piece->text);
    }
    if (piece->prompt_tokens)
      acc->prompt_tokens = *piece->prompt_tokens;
    if (piece->completion_tokens)
      acc->completion_tokens = *piece->completion_tokens;
    acc->done |= piece->done;
    return true;
  };
  auto started = steady::now();
  client.request(std::move(req), [acc, reach, done, started,
                                  model = p.model](http_response r) {
    using std::chrono::seconds;
    if (!acc->error.empty()) {
      reach->reached();
      return done(call_outcome::permanent("the LLM reported: " + acc->error,
                                          errc::unavailable));
    }
    switch (r.kind) {
    case http_error::none:
      break;
    case http_error::dns:
    case http_error::connect:
    case http_error::tls:
      reach->failed(r.error);
      return done(call_outcome::retryable(r.error));
    case http_error::timeout:
      // Slow is not down: the model works, just not in time.
      return done(call_outcome::permanent(
          "the LLM did not answer in time: " + r.error, errc::timeout));
    case http_error::stopped:
      return done(call_outcome::permanent(r.error, errc::unavailable));
    default: // closed mid-answer, malformed, the client's own queue full
      return done(call_outcome::retryable(r.error));
    }
    if (r.status == 503 || r.status == 429) {
      reach->reached(); // busy, but there
      auto after = r.retry_after();
      return done(call_outcome::retryable(
          server_said(r), after
                              ? std::optional<std::chrono::nanoseconds>{*after}
                              : std::nullopt));
    }
    if (r.status >= 500) {
      reach->failed(server_said(r));
      return done(call_outcome::retryable(server_said(r)));
    }
    if (r.status < 200 || r.status >= 300) {
      reach->reached();
      // A wrong model name, a bad key: retrying cannot help.
      spdlog::error("llm: the server refused the request: {}", server_said(r));
      return done(call_outcome::permanent(server_said(r), errc::unavailable));
    }
    reach->reached();
    if (!acc->done)
      return done(call_outcome::retryable("the answer ended early"));
    llm_result out;
    out.text = std::move(acc->text);
    out.model = model;
    out.prompt_tokens = acc->prompt_tokens;
    out.completion_tokens = acc->completion_tokens;
    out.llm_ms
        = std::chrono::duration<double, std::milli>(steady::now() - started)
              .count();
    done(call_outcome::success(encode(out)));
  });
}

struct cache_entry {
  llm_result result;
  steady::time_point expires;
};

// A bounded map, least recently used first out.
class memory_cache {
public:
  explicit memory_cache(std::size_t capacity) : capacity_(capacity) {}

  const llm_result* find(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end())
      return nullptr;
    if (it->second->second.expires <= steady::now()) {
      order_.erase(it->second);
      index_.erase(it);
      return nullptr;
    }
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second.result;
  }

  void put(const std::string& key, llm_result r, steady::time_point expires) {
    if (capacity_ == 0)
      return;
    if (auto it = index_.find(key); it != index_.end()) {
      order_.erase(it->second);
      index_.erase(it);
    }
    order_.emplace_front(key, cache_entry{std::move(r), expires});
    index_[key] = order_.begin();
    while (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }

private:
  using list = std::list<std::pair<std::string, cache_entry>>;
  std::size_t capacity_;
  list order_;
  std::unordered_map<std::string, list::iterator> index_;
};

class llm_actor : public caf::event_based_actor {
public:
  llm_actor(caf::actor_config& cfg, llm_options options, http_client* client,
            persistence::db_pool* pool, metrics::registry* metrics)
      : caf::event_based_actor(cfg), options_(std::move(options)),
        client_(client), pool_(pool), cache_(options_.cache_entries),
        reach_(std::make_shared<reachability>()) {
    if (metrics)
      bind_metrics(*metrics);
  }

  const char* name() const override { return "karvon.llm"; }

  caf::behavior make_behavior() override {
    start_sink();
    return {
        [this](llm_ask_atom, llm_request& req) -> caf::result<llm_result> {
          return ask(std::move(req));
        },
        [this](piece_atom, const std::string& key, std::int32_t attempt,
               const std::string& text) { on_piece(key, attempt, text); },
        [this](cached_atom, const std::string& key, bool found, llm_result& r) {
          if (!found)
            return submit(key);
          if (m_.cache_hits)
            m_.cache_hits->inc();
          r.cached = true;
          r.llm_ms = 0;
          finish(key, std::move(r), false);
        },
    };
  }

  void on_exit() override {
    anon_send_exit(sink_, caf::exit_reason::user_shutdown);
    for (auto& [key, f] : flights_)
      for (auto& w : f.waiters)
        w.rp.deliver(make_error(errc::unavailable, "the LLM service stopped"));
    flights_.clear();
  }

private:
  struct waiter {
    caf::response_promise rp;
    caf::actor stream_to;
    std::string stream_id;
  };

  struct flight {
    std::string model;
    std::string body;
    std::uint8_t priority = llm_interactive;
    std::int64_t deadline_ns = 0;
    std::vector<waiter> waiters;
    std::string sent;    // streamed to the waiters so far
    std::string attempt; // what the current attempt has streamed
    std::int32_t attempt_no = 0;
  };

  void start_sink() {
    sink_config c;
    c.name = "llm";
    // llm.max_queue = 0 means nothing waits beyond the calls in flight.
    c.capacity = static_cast<std::size_t>(std::max(1, options_.max_queue));
    c.max_in_flight = static_cast<std::size_t>(options_.max_concurrency);
    c.class_offsets = linear_aging(2, std::chrono::seconds{30});
    c.max_attempts = options_.max_attempts;
    c.backoff.base = std::chrono::milliseconds{200};
    c.backoff.cap = std::chrono::seconds{5};
    c.backoff.max_retry_after = std::chrono::seconds{30};
    c.call_timeout = options_.timeout + std::chrono::seconds{1};
    auto o = options_;
    auto* client = client_;
    auto reach = reach_;
    caf::actor me = caf::actor_cast<caf::actor>(this);
    // A weak reference: the sink must not keep this actor alive.
    caf::actor_addr weak = me.address();
    sink_ = spawn_sink(
        system(), std::move(c),
        [o, client, reach, weak](const sink_job& job,
                                 std::function<void(call_outcome)> done) {
          run_call(o, *client, reach, caf::actor_cast<caf::actor>(weak), job,
                   std::move(done));
        },
        nullptr, metrics_);
    link_to(sink_);
  }

  caf::result<llm_result> ask(llm_request req) {
    if (req.model.empty())
      req.model = options_.model;
    auto key = llm_cache_key(req.model, req.messages);
    if (options_.cache_ttl.count() > 0)
      if (auto* hit = cache_.find(key)) {
        if (m_.cache_hits)
          m_.cache_hits->inc();
        auto r = *hit;
        r.cached = true;
        r.llm_ms = 0;
        return r;
      }
    // A promise takes over the reply: make one only where the answer is
    // not returned at once.
    if (auto it = flights_.find(key); it != flights_.end()) {
      auto rp = make_response_promise<llm_result>();
      // The same prompt is on its way: wait for that answer.
      if (m_.coalesced)
        m_.coalesced->inc();
      if (req.stream_to && !it->second.sent.empty())
        send(req.stream_to, llm_token_atom::value, req.stream_id,
             it->second.sent);
      it->second.waiters.push_back({rp, req.stream_to, req.stream_id});
      return rp;
    }
    if (reach_->down()) {
      count(req.model, "unreachable");
      return make_error(errc::unavailable,
                        "the LLM is unreachable: " + reach_->last_error());
    }
    auto rp = make_response_promise<llm_result>();
    auto budget = req.budget.count() > 0 ? req.budget : options_.timeout;
    auto& f = flights_[key];
    f.model = req.model;
    f.priority = req.priority;
    f.deadline_ns = now_ns() + std::chrono::nanoseconds{budget}.count();
    f.body = llm_request_body(options_.provider,
                              {req.model, std::move(req.messages), true});
    f.waiters.push_back({rp, req.stream_to, req.stream_id});
    if (pool_ && options_.cache_ttl.count() > 0)
      look_up(key);
    else
      submit(key);
    return rp;
  }

  // The shared cache first: another node may have asked already.
  void look_up(const std::string& key) {
    auto found = std::make_shared<std::optional<persistence::llm_cache_row>>();
    caf::actor me = caf::actor_cast<caf::actor>(this);
    bool queued = pool_->submit(
        [found, key](pqxx::connection_base& c) {
          *found = persistence::find_llm_answer(c, key);
        },
        [found, key, me](std::optional<persistence::db_error> err) {
          llm_result r;
          if (err)
            spdlog::warn("llm: reading the answer cache: {}", err->message);
          bool hit = !err && *found;
          if (hit) {
            r.text = (*found)->response;
            r.model = (*found)->model;
            r.prompt_tokens = (*found)->prompt_tokens;
            r.completion_tokens = (*found)->completion_tokens;
          }
          caf::anon_send(me, cached_atom::value, key, hit, std::move(r));
        });
    if (!queued) // the database is busy: ask the model
      submit(key);
  }

  void submit(const std::string& key) {
    auto it = flights_.find(key);
    if (it == flights_.end())
      return;
    auto& f = it->second;
    sink_job job;
    job.priority = f.priority;
    job.kind = "llm.chat";
    job.payload = encode(job_payload{key, f.model, f.body, f.deadline_ns});
    request(sink_, caf::infinite, submit_atom::value, std::move(job))
        .then(
            [this, key](std::string& out) {
              llm_result r;
              try {
                r = decode_result(out);
              } catch (const std::exception& e) {
                return fail(key, make_error(errc::internal, e.what()));
              }
              finish(key, std::move(r), true);
            },
            [this, key](caf::error& err) { fail(key, std::move(err)); });
  }

  void on_piece(const std::string& key, std::int32_t attempt,
                const std::string& text) {
    auto it = flights_.find(key);
    if (it == flights_.end())
      return;
    auto& f = it->second;
    if (attempt != f.attempt_no) {
      // A retry starts over: only what goes beyond the first is new.
      f.attempt_no = attempt;
      f.attempt.clear();
    }
    f.attempt += text;
    if (f.attempt.size() <= f.sent.size()
        || f.attempt.compare(0, f.sent.size(), f.sent) != 0)
      return;
    auto fresh = f.attempt.substr(f.sent.size());
    f.sent = f.attempt;
    for (auto& w : f.waiters)
      if (w.stream_to)
        send(w.stream_to, llm_token_atom::value, w.stream_id, fresh);
  }

  void finish(const std::string& key, llm_result r, bool fresh) {
    auto it = flights_.find(key);
    if (it == flights_.end())
      return;
    auto waiters = std::move(it->second.waiters);
    flights_.erase(it);
    if (options_.cache_ttl.count() > 0)
      cache_.put(key, r, steady::now() + options_.cache_ttl);
    if (fresh) {
      count(r.model, "ok");
      if (m_.tokens) {
        m_.tokens->with({r.model, "prompt"})
            .inc(static_cast<std::uint64_t>(
                std::max<std::int64_t>(0, r.prompt_tokens)));
        m_.tokens->with({r.model, "completion"})
            .inc(static_cast<std::uint64_t>(
                std::max<std::int64_t>(0, r.completion_tokens)));
      }
      if (m_.seconds)
        m_.seconds->with({r.model}).observe(r.llm_ms / 1000);
      store(key, r);
    }
    for (auto& w : waiters)
      w.rp.deliver(r);
  }

  void fail(const std::string& key, caf::error err) {
    auto it = flights_.find(key);
    if (it == flights_.end())
      return;
    auto waiters = std::move(it->second.waiters);
    auto model = it->second.model;
    flights_.erase(it);
    auto f = to_failure(err);
    count(model, f.code == errc::overloaded ? "overloaded"
                 : f.code == errc::timeout  ? "timeout"
                                            : "error");
    for (auto& w : waiters)
      w.rp.deliver(err);
  }

  void store(const std::string& key, const llm_result& r) {
    if (!pool_ || options_.cache_ttl.count() == 0)
      return;
    persistence::llm_cache_row row{key, r.model, r.text, r.prompt_tokens,
                                   r.completion_tokens};
    auto ttl = options_.cache_ttl;
    // Best effort: a lost cache row costs one call later, nothing more.
    pool_->submit(
        [row, ttl](pqxx::connection_base& c) {
          persistence::store_llm_answer(c, row, ttl);
        },
        [](std::optional<persistence::db_error> err) {
          if (err)
            spdlog::warn("llm: storing an answer in the cache: {}",
                         err->message);
        });
  }

  void count(const std::string& model, const char* outcome) {
    if (m_.requests)
      m_.requests->with({model, outcome}).inc();
  }

  void bind_metrics(metrics::registry& r) {
    metrics_ = &r;
    m_.requests = &r.counters(
        "karvon_llm_requests_total",
        "Requests to the LLM (coalesced and cached ones not counted), by how "
        "they ended: ok, error, overloaded, timeout, unreachable.",
        {"model", "outcome"});
    m_.cache_hits
        = &r.counters("karvon_llm_cache_hits_total",
                      "Requests answered from the LLM answer cache.", {})
               .with({});
    m_.coalesced
        = &r.counters("karvon_llm_coalesced_total",
                      "Requests that joined an identical one in flight.", {})
               .with({});
    m_.tokens = &r.counters("karvon_llm_tokens_total",
                            "Tokens the LLM read (prompt) and wrote "
                            "(completion).",
                            {"model", "kind"});
    m_.seconds = &r.histograms("karvon_llm_request_duration_seconds",
                               "The LLM's own time per call, first byte sent "
                               "to last piece read.",
                               {"model"}, metrics::latency_buckets());
  }

  struct {
    metrics::family<metrics::counter>* requests = nullptr;
    metrics::counter* cache_hits = nullptr;
    metrics::counter* coalesced = nullptr;
    metrics::family<metrics::counter>* tokens = nullptr;
    metrics::family<metrics::histogram>* seconds = nullptr;
  } m_;

  llm_options options_;
  http_client* client_;
  persistence::db_pool* pool_;
  metrics::registry* metrics_ = nullptr;
  memory_cache cache_;
  std::shared_ptr<reachability> reach_;
  caf::actor sink_;
  std::unordered_map<std::string, flight> flights_;
};

} // namespace

std::string llm_cache_key(const std::string& model,
                          const std::vector<llm_message>& messages) {
  crypto_generichash_state state;
  unsigned char out[16];
  crypto_generichash_init(&state, nullptr, 0, sizeof out);
  // Lengths before contents, so that no two lists hash the same bytes.
  auto feed = [&](const std::string& s) {
    auto n = static_cast<std::uint64_t>(s.size());
    crypto_generichash_update(&state, reinterpret_cast<unsigned char*>(&n),
                              sizeof n);
    crypto_generichash_update(
        &state, reinterpret_cast<const unsigned char*>(s.data()), s.size());
  };
  feed(model);
  for (auto& m : messages) {
    feed(m.role);
    feed(m.content);
  }
  crypto_generichash_final(&state, out, sizeof out);
  char key[2 * sizeof out + 1];
  sodium_bin2hex(key, sizeof key, out, sizeof out);
  return std::string{key};
}

caf::actor spawn_llm(caf::actor_system& sys, llm_options options,
                     http_client& client, persistence::db_pool* pool,
                     metrics::registry* metrics) {
  if (options.max_concurrency < 1)
    throw std::invalid_argument("llm.max_concurrency must be at least 1");
  return sys.spawn<llm_actor>(std::move(options), &client, pool, metrics);
}

void check_llm(http_client& client, const llm_options& options,
               std::chrono::milliseconds timeout,
               std::function<void(std::string error)> done) {
  http_request req;
  req.url = options.url
            + (options.provider == llm_provider::ollama ? "/api/tags"
                                                        : "/v1/models");
  req.headers = auth_headers(options);
  req.connect_timeout = timeout;
  req.response_timeout = timeout;
  client.request(std::move(req), [done](http_response r) {
    if (!r.error.empty())
      return done(r.error);
    if (r.status < 200 || r.status >= 300)
      return done(server_said(r));
    done({});
  });
}

void add_llm_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<llm_message>("karvon.llm_message");
  cfg.add_message_type<std::vector<llm_message>>("karvon.llm_messages");
  cfg.add_message_type<llm_request>("karvon.llm_request");
  cfg.add_message_type<llm_result>("karvon.llm_result");
}

} // namespace karvon::actors
