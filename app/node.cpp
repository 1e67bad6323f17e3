#include "app/node.hpp"

#include <atomic>
#include <csignal>
#include <functional>
#include <iostream>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "actors/api_keys.hpp"
#include "actors/chat.hpp"
#include "actors/chat_analytics.hpp"
#include "actors/clock.hpp"
#include "actors/dead_letters.hpp"
#include "actors/demo_kb.hpp"
#include "actors/http_client.hpp"
#include "actors/idempotency.hpp"
#include "actors/knowledge_base.hpp"
#include "actors/llm.hpp"
#include "actors/messages.hpp"
#include "actors/partners.hpp"
#include "actors/passages.hpp"
#include "actors/probe.hpp"
#include "actors/sink.hpp"
#include "actors/supervisor.hpp"
#include "actors/timer_service.hpp"
#include "cluster/member.hpp"
#include "cluster/router.hpp"
#include "cluster/shard_map.hpp"
#include "config/load.hpp"
#include "gateway/admin_routes.hpp"
#include "gateway/api_routes.hpp"
#include "gateway/chat_analytics_routes.hpp"
#include "gateway/dispatcher.hpp"
#include "gateway/health.hpp"
#include "gateway/server.hpp"
#include "metrics/registry.hpp"
#include "persistence/api_key_store.hpp"
#include "persistence/batch_writer.hpp"
#include "persistence/chat_store.hpp"
#include "persistence/database.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/errors.hpp"
#include "persistence/idempotency_store.hpp"
#include "persistence/kb_store.hpp"
#include "persistence/llm_cache_store.hpp"
#include "persistence/migrations.hpp"
#include "persistence/partner_store.hpp"

namespace karvon::app {

const char* version() {
  return "0.1.0";
}

namespace {

// How often a running node looks for created or revoked keys: a revoked key
// stops working within this interval (API promise: within a second).
constexpr std::chrono::milliseconds key_poll_interval{250};

int io_threads(int configured) {
  if (configured > 0)
    return configured;
  auto n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

} // namespace

struct node::impl {
  config::settings settings;
  node_options options;
  std::string first_admin_key;

  // Declared in start order; stop() tears down in reverse.
  metrics::registry metrics;
  actors::timer_service timers;
  std::unique_ptr<persistence::database> database;
  std::unique_ptr<persistence::db_pool> pool;
  std::unique_ptr<actors::key_directory> keys;
  std::unique_ptr<caf::actor_system_config> actor_config;
  std::unique_ptr<caf::actor_system> actor_system;
  std::unique_ptr<cluster::shard_map> shards;
  std::unique_ptr<cluster::router> router;
  std::unique_ptr<cluster::member> member;
  gateway::health_checks checks;
  std::unique_ptr<actors::partner_registry> partners;
  std::unique_ptr<actors::kb_index> kb_index;
  std::unique_ptr<actors::knowledge_base> kb;
  std::unique_ptr<actors::chat_history> chat_history;
  std::unique_ptr<actors::chat_analytics> chat_analytics;
  // The outside services' HTTP client (the LLM's now; bots and the
  // geocoder later), and the writer of chat turns.
  std::unique_ptr<actors::http_client> http;
  std::unique_ptr<persistence::batch_writer> chat_turns;
  caf::actor llm;
  std::unique_ptr<actors::idempotency_guard> idempotency;
  std::unique_ptr<actors::dead_letter_service> dead_letters;
  std::shared_ptr<std::atomic<bool>> cleaning
      = std::make_shared<std::atomic<bool>>(true);
  std::shared_ptr<std::function<void()>> cleanup_tick;
  std::unique_ptr<gateway::dispatcher> dispatcher;
  std::unique_ptr<gateway::http_server> server;
  bool stopped = false;

  // Every ten minutes, in short batches: forgets expired Idempotency-Keys
  // and deletes chat sessions past chat.retention_days.
  void schedule_cleanup() {
    auto* p = pool.get();
    auto* t = &timers;
    auto running = cleaning;
    auto tick = std::make_shared<std::function<void()>>();
    auto days = settings.chat.retention_days;
    *tick = [p, t, running, days,
             weak = std::weak_ptr<std::function<void()>>(tick)] {
      if (!running->load())
        return;
      p->submit(
          [](pqxx::connection_base& c) {
            while (persistence::idempotency_delete_expired(c) == 10000)
              ;
          },
          [](std::optional<persistence::db_error> err) {
            if (err)
              spdlog::warn("deleting expired Idempotency-Keys: {}",
                           err->message);
          });
      // Chat sessions past chat.retention_days, a thousand at a time so
      // that no statement holds the tables for long.
      p->submit(
          [days](pqxx::connection_base& c) {
            int total = 0;
            std::int64_t cursor = 0;
            do {
              auto [n, next] = persistence::delete_old_chat_sessions(
                  c, days, 1000, cursor);
              total += n;
              cursor = next;
            } while (cursor != 0);
            if (total > 0)
              spdlog::info("deleted {} chat sessions unused for {} days", total,
                           days);
            // Expired LLM answers, for the same reason in batches.
            while (persistence::delete_expired_llm_answers(c, 1000) == 1000)
              ;
          },
          [](std::optional<persistence::db_error> err) {
            if (err)
              spdlog::warn("deleting old chat sessions: {}", err->message);
          });
      if (auto next = weak.lock())
        t->after(std::chrono::minutes{10}, [next] { (*next)(); });
    };
    cleanup_tick = tick;
    timers.after(std::chrono::minutes{1}, [tick] { (*tick)(); });
  }

  // The actor system, the shard map (this node owns every shard until the
  // cluster says otherwise) and a supervisor per entity kind.
  void start_runtime() {
    actor_config = std::make_unique<caf::actor_system_config>();
    auto threads = settings.server.actor_threads > 0
                       ? settings.server.actor_threads
                       : io_threads(0);
    actor_config->set("scheduler.max-threads", threads);
    // Nodes talk BASP over TCP through CAF's middleman.
    actor_config->load<caf::io::middleman>();
    // Logging goes through spdlog; CAF's own is compiled out in 0.17.6.
    actors::add_message_types(*actor_config);
    actors::add_partner_message_types(*actor_config);
    actors::add_sink_message_types(*actor_config);
    actors::add_probe_message_types(*actor_config);
    actors::add_chat_message_types(*actor_config);
    actors::add_llm_message_types(*actor_config);
    actor_system = std::make_unique<caf::actor_system>(*actor_config);
    shards = std::make_unique<cluster::shard_map>(
        static_cast<std::uint32_t>(settings.cluster.shards),
        config::effective_node_id(settings));
    // A shard is served only under a valid lease, even on a lone node: the
    // database, not the node, says who may write.
    shards->require_leases();
    router = std::make_unique<cluster::router>(*actor_system, *shards);
    router->count_forwards(metrics);
    actors::supervisor_options so;
    so.rules = cluster::ownership_rules_of(*shards);
    so.idle_timeout
        = std::chrono::milliseconds{settings.entities.idle_timeout_ms};
    so.max_active = static_cast<std::size_t>(settings.entities.max_active);
    actors::chat_services chat;
    chat.index = kb_index.get();
    chat.turns = chat_turns.get();
    chat.deadline = std::chrono::milliseconds{settings.chat.deadline_ms};
    chat.metrics = &metrics;
    if (!settings.llm.url.empty())
      chat.llm = llm = actors::spawn_llm(*actor_system, llm_options(), *http,
                                         pool.get(), &metrics);
    for (auto& kind : {actors::partner_kind(),
                       actors::probe_kind(config::effective_node_id(settings)),
                       actors::user_kind(chat)})
      router->add_kind(
          kind.name,
          actors::spawn_supervisor(*actor_system, kind, so, *pool, &metrics));
  }

  actors::llm_options llm_options() const {
    auto& l = settings.llm;
    actors::llm_options o;
    o.provider = *actors::parse_llm_provider(l.provider); // checked on load
    o.url = l.url;
    while (!o.url.empty() && o.url.back() == '/')
      o.url.pop_back();
    o.api_key = l.api_key;
    o.model = l.model;
    o.max_concurrency = l.max_concurrency;
    o.max_queue = l.max_queue;
    o.timeout = std::chrono::milliseconds{l.timeout_ms};
    o.cache_ttl = std::chrono::seconds{l.cache_ttl_s};
    return o;
  }

  // This node as a member of the cluster: returns once it is one.
  void start_cluster(const config::host_port& http) {
    auto& c = settings.cluster;
    auto where = config::cluster_listen(settings);
    cluster::member_options o;
    o.node_id = config::effective_node_id(settings);
    o.conninfo = database->conninfo();
    o.http_address = http.host + ":" + std::to_string(server->port());
    o.listen_host = where.host;
    o.listen_port = where.port;
    o.heartbeat = std::chrono::milliseconds{c.heartbeat_ms};
    o.failure_timeout = std::chrono::milliseconds{c.failure_timeout_ms};
    o.lease = std::chrono::milliseconds{c.lease_ms};
    // Another process took this node id: this one stops as on SIGTERM.
    o.on_replaced = [] { std::raise(SIGTERM); };
    member = std::make_unique<cluster::member>(*actor_system, *shards, *router,
                                               o, &metrics);
    try {
      member->start();
    } catch (const std::runtime_error& e) {
      throw persistence::startup_error(e.what());
    }
  }

  // Creates the first admin key, so a newcomer can call admin endpoints at
  // once. Runs before the server accepts requests.
  void ensure_admin_key() {
    pqxx::connection c{database->conninfo()};
    // Nodes starting at once on an empty database: one creates the key. A
    // session lock, released when this connection closes at the end.
    pqxx::nontransaction{c}.exec(
        "SELECT pg_advisory_lock(hashtext('karvon.first_admin_key'))");
    if (persistence::has_active_admin_key(c))
      return;
    auto key = actors::generate_api_key();
    persistence::api_key_row row;
    row.name = "first admin key";
    row.role = "admin";
    row.lookup = key.lookup;
    row.secret_hash = key.secret_hash;
    auto id = persistence::insert_api_key(c, row);
    first_admin_key = key.text;
    spdlog::info("created the first admin API key (id {})", id);
    if (options.print_new_keys)
      std::cout << "\n  First start: an admin API key was created. It is "
                   "shown only this once:\n\n    "
                << key.text
                << "\n\n  Use it as 'Authorization: Bearer <key>'. Manage "
                   "keys with 'karvon keys'.\n\n"
                << std::flush;
  }

  // --demo: a demo partner, and one client and one partner key for it,
  // printed once, so a newcomer can try every role at once. The knowledge
  // base joins the demo with the chat assistant.
  void seed_demo() {
    pqxx::connection c{database->conninfo()};
    pqxx::nontransaction{c}.exec(
        "SELECT pg_advisory_lock(hashtext('karvon.demo_seed'))");
    // The knowledge base of a small shop, in uz, ru and en, when it is
    // empty.
    if (persistence::list_kb_documents(c, {}).empty()) {
      for (auto& d : actors::demo_documents()) {
        persistence::kb_document_row row;
        row.title = d.title;
        row.content = d.content;
        row.language = d.language;
        row.category = d.topic;
        persistence::insert_kb_document(c, row,
                                        actors::split_passages(d.content));
      }
      spdlog::info("demo: created {} knowledge-base documents",
                   actors::demo_documents().size());
    }
    if (!persistence::find_partner(c, "demo")) {
      persistence::partner_row p;
      p.id = "demo";
      p.name = "Demo Shop";
      p.monthly_budget_usd = 50.0;
      persistence::insert_partner(c, p);
      spdlog::info("demo: created partner 'demo'");
    }
    bool have_keys = false;
    for (auto& k : persistence::list_api_keys(c))
      have_keys |= k.name.rfind("demo ", 0) == 0 && !k.revoked;
    if (have_keys)
      return;
    auto make = [&](const char* role, const char* partner, const char* name) {
      auto key = actors::generate_api_key();
      persistence::api_key_row row;
      row.name = name;
      row.role = role;
      row.partner_id = partner;
      row.lookup = key.lookup;
      row.secret_hash = key.secret_hash;
      persistence::insert_api_key(c, row);
      return key.text;
    };
    auto client = make("client", "", "demo client");
    auto partner = make("partner", "demo", "demo partner");
    if (options.print_new_keys)
      std::cout << "  Demo keys (shown once):\n    client:  " << client
                << "\n    partner: " << partner << " (partner 'demo')\n\n"
                << std::flush;
  }
};

node::node(config::settings s, node_options options)
    : impl_(std::make_unique<impl>()) {
  impl_->settings = std::move(s);
  impl_->options = options;
}

node::~node() {
  stop();
}

void node::start() {
  auto& i = *impl_;
  auto& s = i.settings;
  metrics::register_process_metrics(i.metrics);

  config::host_port listen;
  config::parse_host_port(s.server.listen, listen);
  gateway::server_options so;
  so.host = listen.host;
  so.port = listen.port;
  so.threads = io_threads(s.server.threads);
  so.http = s.http;
  // The address is taken first: a port in use fails start-up before the
  // database is touched, and clients that connect early wait in the
  // backlog until everything is ready.
  i.server = std::make_unique<gateway::http_server>(so, i.metrics);
  i.server->listen();

  i.database = std::make_unique<persistence::database>(
      s, persistence::ownership::owner);
  auto applied = persistence::migrate(i.database->conninfo());
  if (applied > 0)
    spdlog::info("applied {} schema migration(s)", applied);

  persistence::pool_options po{
      i.database->conninfo(), s.database.pool_size, s.database.max_queue, {}};
  // A node paused (SIGSTOP, a frozen VM) inside a transaction keeps its
  // locks, and a fenced write's lock on its lease row would keep the next
  // owner from taking the shard for as long as the pause lasts. PostgreSQL
  // ends such a session after the lease's safety margin, so its write fails
  // rather than landing after the lease has passed on.
  po.session = {{"idle_in_transaction_session_timeout",
                 std::to_string(std::max(100, s.cluster.lease_ms / 5))}};
  i.pool = std::make_unique<persistence::db_pool>(std::move(po), &i.metrics);

  i.ensure_admin_key();
  if (i.options.demo)
    i.seed_demo();
  i.keys = std::make_unique<actors::key_directory>(*i.pool, &i.metrics);
  if (!i.keys->load(std::chrono::seconds{30}))
    throw persistence::startup_error(
        "could not load the API keys from the database within 30 s");
  i.keys->start(key_poll_interval);

  auto* pool = i.pool.get();
  i.checks.add("database", true, [pool](auto done) {
    pool->ping([done](std::chrono::microseconds latency,
                      std::optional<persistence::db_error> err) {
      gateway::check_result r;
      r.ok = !err;
      r.latency = latency;
      if (err)
        r.error = std::string{persistence::to_string(err->what)} + ": "
                  + err->message;
      done(r);
    });
  });

  i.kb_index = std::make_unique<actors::kb_index>(*pool);
  if (!i.kb_index->load(std::chrono::seconds{30}))
    throw persistence::startup_error(
        "could not load the knowledge base from the database within 30 s");
  // Changes made through other nodes reach this one within a second.
  i.kb_index->start(std::chrono::seconds{1});
  {
    actors::http_client_options ho;
    // Room for every LLM call in flight, plus the health check.
    ho.max_connections_per_host
        = static_cast<std::size_t>(std::max(8, s.llm.max_concurrency + 2));
    ho.max_idle_per_host = ho.max_connections_per_host;
    ho.metrics = &i.metrics;
    i.http = std::make_unique<actors::http_client>(ho);
    auto wo = persistence::chat_turn_writer_options(i.database->conninfo());
    wo.max_rows = s.database.batch_max_rows;
    wo.max_delay = std::chrono::milliseconds{s.database.batch_max_delay_ms};
    i.chat_turns = std::make_unique<persistence::batch_writer>(wo, &i.metrics);
  }
  i.start_runtime();
  if (!s.llm.url.empty()) {
    auto* http = i.http.get();
    auto o = i.llm_options();
    i.checks.add("llm", false, [http, o](auto done) {
      auto started = std::chrono::steady_clock::now();
      actors::check_llm(
          *http, o, std::chrono::seconds{2},
          [done, started](std::string error) {
            gateway::check_result r;
            r.ok = error.empty();
            r.error = std::move(error);
            r.latency = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::steady_clock::now() - started);
            done(r);
          });
    });
  }
  i.start_cluster(listen);
  auto* router = i.router.get();
  i.checks.add("runtime", true, [router](auto done) {
    auto started = std::chrono::steady_clock::now();
    router->ping(std::chrono::seconds{2},
                 [done, started](caf::expected<cluster::router::totals> t) {
                   gateway::check_result r;
                   r.ok = static_cast<bool>(t);
                   r.latency
                       = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - started);
                   if (!t)
                     r.error = caf::to_string(t.error());
                   done(r);
                 });
  });

  i.partners = std::make_unique<actors::partner_registry>(*pool);
  gateway::router routes;
  gateway::add_health_routes(
      routes, i.checks, i.metrics, i.timers,
      {config::effective_node_id(s), version(), s.metrics.is_public});
  i.kb = std::make_unique<actors::knowledge_base>(*pool, i.kb_index.get());
  i.chat_history = std::make_unique<actors::chat_history>(*pool);
  gateway::add_api_routes(routes,
                          {i.partners.get(), i.router.get(), i.kb.get(),
                           i.chat_history.get(), s.chat.allow_anonymous,
                           std::chrono::milliseconds{s.chat.deadline_ms}});
  i.chat_analytics = std::make_unique<actors::chat_analytics>(*pool);
  gateway::add_chat_analytics_routes(routes, *i.chat_analytics);
  // Sinks register here as the workloads that own them arrive.
  i.dead_letters = std::make_unique<actors::dead_letter_service>(*pool);
  gateway::add_admin_routes(routes,
                            {i.dead_letters.get(), i.router.get(),
                             &i.member->ops(), config::effective_node_id(s)});
  auto* member = i.member.get();
  i.checks.add("cluster", false, [member](auto done) {
    gateway::check_result r;
    r.ok = member->incarnation() != 0;
    if (!r.ok)
      r.error = "this node is not a member of the cluster now (rejoining)";
    done(r);
  });

  i.dispatcher = std::make_unique<gateway::dispatcher>(
      std::move(routes), s.http, i.keys.get(), i.metrics,
      actors::system_clock());
  i.idempotency = std::make_unique<actors::idempotency_guard>(*pool);
  i.dispatcher->set_idempotency(i.idempotency.get());
  i.schedule_cleanup();

  i.server->start(*i.dispatcher);
}

void node::stop() {
  auto& i = *impl_;
  if (i.stopped)
    return;
  i.stopped = true;
  i.cleaning->store(false);
  if (i.server)
    i.server->stop(
        std::chrono::milliseconds{i.settings.http.shutdown_grace_ms});
  // Entities save their state while the database is still there: handed
  // off to the other nodes (or passivated, alone) by the drain.
  if (i.member)
    i.member->leave();
  i.member.reset();
  if (i.router) {
    i.router->stop(std::chrono::seconds{30});
    i.router.reset();
  }
  if (i.llm)
    caf::anon_send_exit(i.llm, caf::exit_reason::user_shutdown);
  i.llm = nullptr;
  i.actor_system.reset(); // waits for the last actors to finish
  // Entities have answered: their last turns are in the writer.
  i.chat_turns.reset();
  if (i.http)
    i.http->stop();
  if (i.keys)
    i.keys->stop();
  if (i.kb_index)
    i.kb_index->stop();
  if (i.pool)
    i.pool->stop();
  i.server.reset();
  i.dispatcher.reset();
  i.keys.reset();
  i.pool.reset();
  if (i.database)
    i.database->stop();
}

std::uint16_t node::cluster_port() const {
  return impl_->member ? impl_->member->port() : 0;
}

std::uint16_t node::http_port() const {
  return impl_->server ? impl_->server->port() : 0;
}

const std::string& node::conninfo() const {
  return impl_->database->conninfo();
}

const std::string& node::first_admin_key() const {
  return impl_->first_admin_key;
}

const config::settings& node::settings() const {
  return impl_->settings;
}

std::vector<std::pair<std::string, std::string>> node::routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  if (impl_->dispatcher)
    for (auto* r : impl_->dispatcher->routes().routes())
      out.emplace_back(r->method, r->path);
  return out;
}

} // namespace karvon::app
