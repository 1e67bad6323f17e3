// The `karvon` command: serve, migrate, keys, bench, help.
#include "app/cli.hpp"

#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <system_error>

#include <CLI/CLI.hpp>
#include <pqxx/pqxx>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include "actors/api_keys.hpp"
#include "actors/partners.hpp"
#include "app/chat_client.hpp"
#include "app/logging.hpp"
#include "app/node.hpp"
#include "bench/bench.hpp"
#include "config/load.hpp"
#include "persistence/api_key_store.hpp"
#include "persistence/database.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/errors.hpp"
#include "persistence/migrations.hpp"

namespace karvon::app {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = config::invalid_setting_exit_code; // 2

// Options every subcommand takes, so that `keys` and `migrate` reach the
// same database as `serve`.
struct common_options {
  std::string config_file;
  std::vector<std::string> sets; // KEY=VALUE
  std::string log_level;
  std::string log_format;
};

void add_common(CLI::App* cmd, common_options& o) {
  cmd->add_option("--config", o.config_file, "TOML configuration file")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", o.sets,
                  "Override a setting: SECTION.KEY=VALUE (repeatable)");
  // Given twice, the last one wins, as with the other layers.
  cmd->add_option("--log-level", o.log_level,
                  "trace, debug, info, warn, error (log.level)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--log-format", o.log_format, "text or json (log.format)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

// Loads the settings of a subcommand; prints the problem and returns nullopt
// when a setting is invalid (the caller exits with 2).
std::optional<config::settings>
load_settings(const common_options& o, std::vector<config::name_value> extra) {
  config::load_options lo;
  lo.config_file = o.config_file;
  lo.environment = config::process_environment();
  for (auto& set : o.sets) {
    auto eq = set.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "karvon: --set " << set << ": expected SECTION.KEY=VALUE\n";
      return std::nullopt;
    }
    lo.overrides.emplace_back(set.substr(0, eq), set.substr(eq + 1));
  }
  if (!o.log_level.empty())
    lo.overrides.emplace_back("log.level", o.log_level);
  if (!o.log_format.empty())
    lo.overrides.emplace_back("log.format", o.log_format);
  for (auto& e : extra)
    lo.overrides.push_back(std::move(e));
  auto result = config::load(lo);
  if (result.error) {
    std::cerr << "karvon: " << result.error->describe() << "\n";
    return std::nullopt;
  }
  setup_logging(result.value.log);
  return result.value;
}

// SIGINT and SIGTERM are blocked in every thread and taken by sigwait() in
// main, so no handler runs at an arbitrary point of another thread.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

int run_serve(const config::settings& s, bool demo) {
  auto signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  node n{s, node_options{true, demo}};
  try {
    n.start();
  } catch (const persistence::startup_error& e) {
    spdlog::critical("cannot start: {}", e.what());
    return exit_failure;
  } catch (const std::system_error& e) {
    spdlog::critical("{}", e.what()); // "cannot listen on HOST:PORT: ..."
    return exit_failure;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return exit_failure;
  }
  config::host_port hp;
  config::parse_host_port(s.server.listen, hp);
  auto where = s.database.url.empty()
                   ? "embedded PostgreSQL under " + s.server.data_dir
                   : std::string{"external PostgreSQL"};
  std::cout << "karvon " << version() << " listening on http://" << hp.host
            << ":" << n.http_port() << " (node " << config::effective_node_id(s)
            << ", " << where << ")" << std::endl;

  int received = 0;
  sigwait(&signals, &received);
  spdlog::info("received {}: draining requests in flight (up to {} ms)",
               received == SIGTERM ? "SIGTERM" : "SIGINT",
               s.http.shutdown_grace_ms);
  n.stop();
  spdlog::info("stopped cleanly");
  return exit_ok;
}

int run_migrate(const config::settings& s) {
  try {
    persistence::database db{s, persistence::ownership::guest};
    auto applied = persistence::migrate(db.conninfo());
    std::cout << "applied " << applied << " migration(s); schema is at "
              << persistence::builtin_migrations().back().name << "\n";
    return exit_ok;
  } catch (const persistence::startup_error& e) {
    std::cerr << "karvon migrate: " << e.what() << "\n";
    return exit_failure;
  }
}

// Runs `f` with a connection to the migrated database of `s`.
template <class F>
int with_database(const config::settings& s, const char* what, F&& f) {
  try {
    persistence::database db{s, persistence::ownership::guest};
    persistence::migrate(db.conninfo());
    pqxx::connection c{db.conninfo()};
    return f(c);
  } catch (const persistence::startup_error& e) {
    std::cerr << "karvon " << what << ": " << e.what() << "\n";
  } catch (const std::exception& e) {
    auto err = persistence::current_db_error();
    std::cerr << "karvon " << what << ": " << err.message << "\n";
  }
  return exit_failure;
}

int run_keys_create(const config::settings& s, const std::string& role_text,
                    const std::string& partner, const std::string& name) {
  auto r = actors::parse_role(role_text);
  if (!r) {
    std::cerr << "karvon keys create: --role must be admin, operator, "
                 "partner or client\n";
    return exit_usage;
  }
  if ((*r == actors::role::partner) != !partner.empty()) {
    std::cerr << "karvon keys create: --partner ID is required for role "
                 "partner and only for it\n";
    return exit_usage;
  }
  if (!partner.empty() && !actors::valid_partner_id(partner)) {
    std::cerr << "karvon keys create: --partner must match "
                 "[a-z0-9][a-z0-9_-]{0,63}\n";
    return exit_usage;
  }
  return with_database(s, "keys create", [&](pqxx::connection& c) {
    pqxx::nontransaction check{c};
    if (!partner.empty()
        && check.exec_params("SELECT 1 FROM partners WHERE id = $1", partner)
               .empty()) {
      std::cerr << "karvon keys create: no partner '" << partner
                << "'; create it first with POST /api/v1/partners\n";
      return exit_failure;
    }
    check.commit();
    auto key = actors::generate_api_key();
    persistence::api_key_row row;
    row.name = name;
    row.role = actors::to_string(*r);
    row.partner_id = partner;
    row.lookup = key.lookup;
    row.secret_hash = key.secret_hash;
    auto id = persistence::insert_api_key(c, row);
    std::cerr << "created " << row.role << " key " << id
              << "; it is shown only this once:\n";
    std::cout << key.text << std::endl;
    return exit_ok;
  });
}

int run_keys_list(const config::settings& s) {
  return with_database(s, "keys list", [](pqxx::connection& c) {
    auto rows = persistence::list_api_keys(c);
    std::cout << std::left << std::setw(6) << "ID" << std::setw(10) << "ROLE"
              << std::setw(16) << "PARTNER" << std::setw(22) << "CREATED"
              << std::setw(22) << "LAST USED" << std::setw(9) << "STATE"
              << "NAME\n";
    for (auto& r : rows)
      std::cout << std::left << std::setw(6) << r.id << std::setw(10) << r.role
                << std::setw(16) << (r.partner_id.empty() ? "-" : r.partner_id)
                << std::setw(22) << r.created_at << std::setw(22)
                << (r.last_used_at.empty() ? "never" : r.last_used_at)
                << std::setw(9) << (r.revoked ? "revoked" : "active") << r.name
                << "\n";
    return exit_ok;
  });
}

int run_keys_revoke(const config::settings& s, std::int64_t id) {
  return with_database(s, "keys revoke", [id](pqxx::connection& c) {
    if (!persistence::revoke_api_key(c, id)) {
      std::cerr << "karvon keys revoke: no active key " << id << "\n";
      return exit_failure;
    }
    std::cout << "revoked key " << id
              << "; running servers refuse it within a second\n";
    return exit_ok;
  });
}

} // namespace

int run_cli(int argc, char** argv) {
  // Writes to a closed pipe or socket must fail with EPIPE, not kill us.
  signal(SIGPIPE, SIG_IGN);

  CLI::App app{"karvon: one server for chat assistants, Telegram bots and AI "
               "back-office jobs"};
  app.name("karvon");
  app.require_subcommand(0, 1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version and exit");

  common_options common;

  auto serve = app.add_subcommand("serve", "Run a node: HTTP, workers and, "
                                           "with no database.url, the "
                                           "embedded PostgreSQL");
  add_common(serve, common);
  std::string listen, data_dir;
  std::vector<std::string> joins;
  bool demo = false;
  serve->add_option("--listen", listen, "HOST:PORT (server.listen)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--data-dir", data_dir, "DIR (server.data_dir)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--join", joins,
                    "HOST:PORT of a node to join (cluster.seeds)");
  serve->add_flag("--demo", demo, "Seed demo data and keys");

  auto migrate = app.add_subcommand("migrate", "Apply schema migrations and "
                                               "exit");
  add_common(migrate, common);

  auto keys = app.add_subcommand("keys", "Create, list and revoke API keys");
  keys->require_subcommand(1);
  auto keys_create
      = keys->add_subcommand("create", "Create a key and print it once");
  add_common(keys_create, common);
  std::string role, partner, name;
  keys_create->add_option("--role", role, "admin, operator, partner, client")
      ->required();
  keys_create->add_option("--partner", partner, "Partner id (role partner)");
  keys_create->add_option("--name", name, "A label for the key");
  auto keys_list = keys->add_subcommand("list", "List keys (never the "
                                                "keys themselves)");
  add_common(keys_list, common);
  auto keys_revoke = keys->add_subcommand("revoke", "Revoke a key by id");
  add_common(keys_revoke, common);
  std::int64_t revoke_id = 0;
  keys_revoke->add_option("ID", revoke_id, "Key id (see keys list)")
      ->required();

  auto bench_cmd = app.add_subcommand("bench", "Run benchmarks and print "
                                               "figures next to ceilings");
  add_common(bench_cmd, common);
  bench::options bench_options;
  bench::add_cli_options(bench_cmd, bench_options);

  auto chat = app.add_subcommand("chat", "Ask the chat assistant one question "
                                         "over the WebSocket, streamed");
  chat_client_options chat_options;
  if (auto* env = std::getenv("KARVON_API_KEY"))
    chat_options.key = env;
  chat->add_option("QUESTION", chat_options.question, "The question")
      ->required();
  chat->add_option("--server", chat_options.server, "http://HOST:PORT")
      ->capture_default_str();
  chat->add_option("--key", chat_options.key,
                   "A client API key (default: $KARVON_API_KEY)");
  chat->add_option("--user", chat_options.user_id, "The end user's id")
      ->capture_default_str();
  chat->add_option("--session", chat_options.session_id,
                   "Continue this session");
  chat->add_option("--language", chat_options.language, "uz, ru or en");
  chat->add_flag("--json", chat_options.json, "Print every frame as received");

  auto help = app.add_subcommand("help", "Show help for a command");
  std::vector<std::string> help_topic;
  help->add_option("COMMAND", help_topic, "serve, migrate, keys, bench, chat");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }

  if (show_version) {
    std::cout << "karvon " << version() << "\n";
    return exit_ok;
  }
  if (help->parsed() || app.get_subcommands().empty()) {
    CLI::App* topic = &app;
    for (auto& word : help_topic) {
      try {
        topic = topic->get_subcommand(word);
      } catch (const CLI::OptionNotFound&) {
        std::cerr << "karvon help: no command '" << word << "'\n";
        return exit_usage;
      }
    }
    std::cout << topic->help();
    return app.get_subcommands().empty() && !help->parsed() ? exit_usage
                                                            : exit_ok;
  }

  if (serve->parsed()) {
    std::vector<config::name_value> extra;
    if (!listen.empty())
      extra.emplace_back("server.listen", listen);
    if (!data_dir.empty())
      extra.emplace_back("server.data_dir", data_dir);
    auto s = load_settings(common, std::move(extra));
    if (!s)
      return exit_usage;
    for (auto& j : joins) {
      config::host_port hp;
      if (!config::parse_host_port(j, hp)) {
        std::cerr << "karvon: invalid setting cluster.seeds (--join " << j
                  << "): must be HOST:PORT\n";
        return exit_usage;
      }
      s->cluster.seeds.push_back(j);
    }
    return run_serve(*s, demo);
  }
  if (migrate->parsed()) {
    auto s = load_settings(common, {});
    return s ? run_migrate(*s) : exit_usage;
  }
  if (keys_create->parsed() || keys_list->parsed() || keys_revoke->parsed()) {
    auto s = load_settings(common, {});
    if (!s)
      return exit_usage;
    if (keys_create->parsed())
      return run_keys_create(*s, role, partner, name);
    if (keys_list->parsed())
      return run_keys_list(*s);
    return run_keys_revoke(*s, revoke_id);
  }
  if (chat->parsed())
    return run_chat_client(chat_options);
  if (bench_cmd->parsed()) {
    setup_logging({"warn", "text"});
    return bench::run(bench_options);
  }
  return exit_ok;
}

} // namespace karvon::app
