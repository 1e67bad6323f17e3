#include "config/load.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <variant>

#include <toml++/toml.h>

extern char** environ;

namespace karvon::config {

namespace {

// A value as it arrives from any layer, before it is checked against the key.
using value = std::variant<std::string, std::int64_t, double, bool,
                           std::vector<std::string>>;

enum class kind { string, integer, number, boolean, string_list };

const char* kind_name(kind k) {
  switch (k) {
  case kind::string:
    return "a string";
  case kind::integer:
    return "an integer";
  case kind::number:
    return "a number";
  case kind::boolean:
    return "true or false";
  case kind::string_list:
    return "a list of strings";
  }
  return "a value";
}

// Returns an error message, empty when the value was applied.
template <class Target>
using apply_fn = std::function<std::string(Target&, const value&)>;

template <class Target>
struct key_spec {
  std::string name;
  kind type;
  apply_fn<Target> apply;
};

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string upper(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos)
    return {};
  auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Strings from the environment and the command line become the key's type.
std::optional<value> from_text(const std::string& text, kind type) {
  switch (type) {
  case kind::string:
    return value{text};
  case kind::integer: {
    auto t = trim(text);
    if (t.empty())
      return std::nullopt;
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(t.c_str(), &end, 10);
    if (errno != 0 || *end != '\0')
      return std::nullopt;
    return value{static_cast<std::int64_t>(v)};
  }
  case kind::number: {
    auto t = trim(text);
    if (t.empty())
      return std::nullopt;
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    if (errno != 0 || *end != '\0' || !std::isfinite(v))
      return std::nullopt;
    return value{v};
  }
  case kind::boolean: {
    auto t = lower(trim(text));
    if (t == "true" || t == "1" || t == "yes" || t == "on")
      return value{true};
    if (t == "false" || t == "0" || t == "no" || t == "off")
      return value{false};
    return std::nullopt;
  }
  case kind::string_list: {
    // Comma-separated; an empty string is an empty list.
    std::vector<std::string> items;
    std::stringstream in{text};
    std::string item;
    while (std::getline(in, item, ',')) {
      item = trim(item);
      if (!item.empty())
        items.push_back(item);
    }
    return value{items};
  }
  }
  return std::nullopt;
}

// TOML nodes become values; a wrong TOML type is reported by the key.
std::optional<value> from_toml(const toml::node& node) {
  if (auto s = node.as_string())
    return value{s->get()};
  if (auto i = node.as_integer())
    return value{i->get()};
  if (auto d = node.as_floating_point())
    return value{d->get()};
  if (auto b = node.as_boolean())
    return value{b->get()};
  if (auto a = node.as_array()) {
    std::vector<std::string> items;
    for (auto& element : *a) {
      auto s = element.as_string();
      if (!s)
        return std::nullopt;
      items.push_back(s->get());
    }
    return value{items};
  }
  return std::nullopt;
}

template <class Target>
key_spec<Target> string_key(std::string name, std::string Target::*member,
                            std::function<std::string(const std::string&)> check
                            = nullptr) {
  return {std::move(name), kind::string,
          [member, check](Target& t, const value& v) -> std::string {
            auto s = std::get_if<std::string>(&v);
            if (!s)
              return "must be a string";
            if (check) {
              if (auto err = check(*s); !err.empty())
                return err;
            }
            t.*member = *s;
            return {};
          }};
}

template <class Target, class Int>
key_spec<Target> int_key(std::string name, Int Target::*member,
                         std::int64_t min, std::int64_t max) {
  return {std::move(name), kind::integer,
          [member, min, max](Target& t, const value& v) -> std::string {
            auto i = std::get_if<std::int64_t>(&v);
            if (!i || *i < min || *i > max)
              return "must be an integer from " + std::to_string(min) + " to "
                     + std::to_string(max);
            t.*member = static_cast<Int>(*i);
            return {};
          }};
}

template <class Target>
key_spec<Target> number_key(std::string name, double Target::*member,
                            double min, double max) {
  return {std::move(name), kind::number,
          [member, min, max](Target& t, const value& v) -> std::string {
            double d;
            if (auto x = std::get_if<double>(&v))
              d = *x;
            else if (auto i = std::get_if<std::int64_t>(&v))
              d = static_cast<double>(*i);
            else
              return "must be a number";
            if (!(d >= min && d <= max)) {
              std::ostringstream msg;
              msg << "must be a number from " << min << " to " << max;
              return msg.str();
            }
            t.*member = d;
            return {};
          }};
}

template <class Target>
key_spec<Target> bool_key(std::string name, bool Target::*member) {
  return {std::move(name), kind::boolean,
          [member](Target& t, const value& v) -> std::string {
            auto b = std::get_if<bool>(&v);
            if (!b)
              return "must be true or false";
            t.*member = *b;
            return {};
          }};
}

template <class Target>
key_spec<Target>
list_key(std::string name, std::vector<std::string> Target::*member,
         std::function<std::string(const std::string&)> check = nullptr) {
  return {std::move(name), kind::string_list,
          [member, check](Target& t, const value& v) -> std::string {
            auto l = std::get_if<std::vector<std::string>>(&v);
            if (!l)
              return "must be a list of strings";
            if (check) {
              for (auto& item : *l)
                if (auto err = check(item); !err.empty())
                  return err;
            }
            t.*member = *l;
            return {};
          }};
}

std::function<std::string(const std::string&)>
one_of(std::vector<std::string> allowed, bool allow_empty = false) {
  return [allowed, allow_empty](const std::string& s) -> std::string {
    if (allow_empty && s.empty())
      return {};
    if (std::find(allowed.begin(), allowed.end(), s) != allowed.end())
      return {};
    std::string msg = "must be one of";
    for (size_t i = 0; i < allowed.size(); ++i)
      msg += (i ? ", \"" : " \"") + allowed[i] + "\"";
    return msg;
  };
}

std::string check_host_port(const std::string& s) {
  host_port hp;
  if (!parse_host_port(s, hp))
    return "must be HOST:PORT with a port from 0 to 65535";
  return {};
}

std::string check_http_url(const std::string& s) {
  if (s.empty())
    return {};
  if (s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0)
    if (s.size() > 8)
      return {};
  return "must be an http:// or https:// URL";
}

std::string check_database_url(const std::string& s) {
  if (s.empty() || s.rfind("postgresql://", 0) == 0
      || s.rfind("postgres://", 0) == 0 || s.find('=') != std::string::npos)
    return {};
  return "must be a postgresql:// URL or a libpq key=value string";
}

std::string check_node_id(const std::string& s) {
  if (s.size() > 64)
    return "must be at most 64 characters";
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'
          || c == '.'))
      return "may hold only letters, digits, '-', '_' and '.'";
  return {};
}

std::string check_not_empty(const std::string& s) {
  return s.empty() ? "must not be empty" : std::string{};
}

struct section_spec {
  std::string name;
  std::vector<key_spec<settings>> keys;
};

// Adapts a key of one section struct to the whole settings struct.
template <class Section>
key_spec<settings> in(Section settings::*section, key_spec<Section> k) {
  auto apply = std::move(k.apply);
  return {k.name, k.type, [section, apply](settings& s, const value& v) {
            return apply(s.*section, v);
          }};
}

const std::vector<section_spec>& sections() {
  using S = settings;
  static const std::vector<section_spec> table = [] {
    std::vector<section_spec> t;
    t.push_back(
        {"server",
         {
             in(&S::server, string_key("listen", &server_settings::listen,
                                       check_host_port)),
             in(&S::server, string_key("data_dir", &server_settings::data_dir,
                                       check_not_empty)),
             in(&S::server, string_key("node_id", &server_settings::node_id,
                                       check_node_id)),
             in(&S::server,
                int_key("threads", &server_settings::threads, 0, 256)),
             in(&S::server, int_key("actor_threads",
                                    &server_settings::actor_threads, 0, 256)),
         }});
    t.push_back(
        {"database",
         {
             in(&S::database,
                string_key("url", &database_settings::url, check_database_url)),
             in(&S::database,
                int_key("pool_size", &database_settings::pool_size, 1, 256)),
             in(&S::database,
                int_key("batch_max_rows", &database_settings::batch_max_rows, 1,
                        100000)),
             in(&S::database,
                int_key("batch_max_delay_ms",
                        &database_settings::batch_max_delay_ms, 0, 10000)),
             in(&S::database,
                int_key("max_queue", &database_settings::max_queue, 1,
                        10000000)),
         }});
    t.push_back(
        {"http",
         {
             in(&S::http,
                int_key("max_body_bytes", &http_settings::max_body_bytes, 1,
                        std::int64_t{1} << 30)),
             in(&S::http,
                int_key("anon_rate_per_min", &http_settings::anon_rate_per_min,
                        1, 1000000)),
             in(&S::http,
                int_key("key_rate_per_min", &http_settings::key_rate_per_min, 1,
                        1000000)),
             in(&S::http, int_key("burst_per_s", &http_settings::burst_per_s, 1,
                                  1000000)),
             in(&S::http,
                int_key("client_key_rate_per_s",
                        &http_settings::client_key_rate_per_s, 1, 10000000)),
             in(&S::http,
                int_key("max_header_bytes", &http_settings::max_header_bytes,
                        1024, 1048576)),
             in(&S::http, int_key("max_connections",
                                  &http_settings::max_connections, 1, 1000000)),
             in(&S::http,
                int_key("read_timeout_ms", &http_settings::read_timeout_ms, 100,
                        3600000)),
             in(&S::http,
                int_key("idle_timeout_ms", &http_settings::idle_timeout_ms, 100,
                        3600000)),
             in(&S::http,
                int_key("shutdown_grace_ms", &http_settings::shutdown_grace_ms,
                        0, 600000)),
         }});
    t.push_back(
        {"chat",
         {
             in(&S::chat,
                bool_key("allow_anonymous", &chat_settings::allow_anonymous)),
             in(&S::chat, list_key("languages", &chat_settings::languages,
                                   one_of({"uz", "ru", "en"}))),
             in(&S::chat, int_key("retention_days",
                                  &chat_settings::retention_days, 1, 36500)),
             in(&S::chat, int_key("deadline_ms", &chat_settings::deadline_ms,
                                  100, 3600000)),
         }});
    t.push_back(
        {"llm",
         {
             in(&S::llm, string_key("provider", &llm_settings::provider,
                                    one_of({"ollama", "openai"}))),
             in(&S::llm, string_key("url", &llm_settings::url, check_http_url)),
             in(&S::llm, string_key("api_key", &llm_settings::api_key)),
             in(&S::llm,
                string_key("model", &llm_settings::model, check_not_empty)),
             in(&S::llm, string_key("cheap_model", &llm_settings::cheap_model)),
             in(&S::llm, int_key("max_concurrency",
                                 &llm_settings::max_concurrency, 1, 1024)),
             in(&S::llm,
                int_key("max_queue", &llm_settings::max_queue, 0, 10000000)),
             in(&S::llm,
                int_key("timeout_ms", &llm_settings::timeout_ms, 100, 3600000)),
             in(&S::llm, int_key("cache_ttl_s", &llm_settings::cache_ttl_s, 0,
                                 365 * 86400)),
         }});
    t.push_back({"geocoder",
                 {
                     in(&S::geocoder, string_key("url", &geocoder_settings::url,
                                                 check_http_url)),
                     in(&S::geocoder,
                        number_key("rate_per_s", &geocoder_settings::rate_per_s,
                                   0.001, 1000.0)),
                     in(&S::geocoder,
                        string_key("user_agent", &geocoder_settings::user_agent,
                                   check_not_empty)),
                 }});
    t.push_back(
        {"cluster",
         {
             in(&S::cluster, string_key("listen", &cluster_settings::listen,
                                        [](const std::string& v) {
                                          return v.empty() ? std::string{}
                                                           : check_host_port(v);
                                        })),
             in(&S::cluster,
                int_key("shards", &cluster_settings::shards, 1, 1 << 20)),
             in(&S::cluster,
                list_key("seeds", &cluster_settings::seeds, check_host_port)),
             in(&S::cluster,
                int_key("heartbeat_ms", &cluster_settings::heartbeat_ms, 10,
                        600000)),
             in(&S::cluster,
                int_key("failure_timeout_ms",
                        &cluster_settings::failure_timeout_ms, 100, 3600000)),
             in(&S::cluster,
                int_key("lease_ms", &cluster_settings::lease_ms, 100, 3600000)),
         }});
    t.push_back(
        {"entities",
         {
             in(&S::entities,
                int_key("idle_timeout_ms", &entities_settings::idle_timeout_ms,
                        100, 7 * 86400 * 1000)),
             in(&S::entities,
                int_key("max_active", &entities_settings::max_active, 1,
                        100000000)),
         }});
    t.push_back(
        {"metrics",
         {
             in(&S::metrics, bool_key("public", &metrics_settings::is_public)),
         }});
    t.push_back(
        {"log",
         {
             in(&S::log, string_key("level", &log_settings::level,
                                    one_of({"trace", "debug", "info", "warn",
                                            "error", "critical", "off"}))),
             in(&S::log, string_key("format", &log_settings::format,
                                    one_of({"text", "json"}))),
         }});
    return t;
  }();
  return table;
}

const std::vector<key_spec<bot_settings>>& bot_keys() {
  using B = bot_settings;
  static const std::vector<key_spec<B>> table = {
      string_key("name", &B::name,
                 [](const std::string& s) -> std::string {
                   if (s.empty() || s.size() > 64)
                     return "must be 1 to 64 characters";
                   for (char c : s)
                     if (!(std::islower(static_cast<unsigned char>(c))
                           || std::isdigit(static_cast<unsigned char>(c))
                           || c == '_'))
                       return "may hold only a-z, 0-9 and '_'";
                   return {};
                 }),
      string_key("token", &B::token),
      string_key("api_base", &B::api_base,
                 [](const std::string& s) {
                   return s.empty() ? std::string{"must not be empty"}
                                    : check_http_url(s);
                 }),
      string_key("mode", &B::mode, one_of({"polling", "webhook"})),
      string_key("secret_token", &B::secret_token),
      int_key("global_per_s", &B::global_per_s, 1, 100000),
      int_key("group_per_min", &B::group_per_min, 1, 100000),
  };
  return table;
}

template <class Target>
const key_spec<Target>* find_key(const std::vector<key_spec<Target>>& keys,
                                 const std::string& name) {
  for (auto& k : keys)
    if (k.name == name)
      return &k;
  return nullptr;
}

const section_spec* find_section(const std::string& name) {
  for (auto& s : sections())
    if (s.name == name)
      return &s;
  return nullptr;
}

// The key named "<section><separator><key>"; null when there is none.
// Section names hold no separator, so the first one splits.
const key_spec<settings>* find_setting(const std::string& name,
                                       char separator) {
  auto at = name.find(separator);
  if (at == std::string::npos)
    return nullptr;
  auto section = find_section(name.substr(0, at));
  return section ? find_key(section->keys, name.substr(at + 1)) : nullptr;
}

// Applies a value to a key; fills `err` and returns false on failure.
template <class Target>
bool apply_value(Target& target, const key_spec<Target>& key, const value& v,
                 const std::string& key_name, const std::string& source,
                 std::optional<load_error>& err) {
  if (auto msg = key.apply(target, v); !msg.empty()) {
    err = load_error{key_name, source, msg};
    return false;
  }
  return true;
}

template <class Target>
bool apply_text(Target& target, const key_spec<Target>& key,
                const std::string& text, const std::string& key_name,
                const std::string& source, std::optional<load_error>& err) {
  auto v = from_text(text, key.type);
  if (!v) {
    err = load_error{key_name, source,
                     std::string{"must be "} + kind_name(key.type) + " (got \""
                         + text + "\")"};
    return false;
  }
  return apply_value(target, key, *v, key_name, source, err);
}

std::string where(const std::string& file, const toml::node& node) {
  auto& src = node.source();
  return file + ":" + std::to_string(src.begin.line);
}

// One key of a TOML table: known, of the right type, valid.
template <class Target>
bool apply_toml_key(Target& target, const std::vector<key_spec<Target>>& keys,
                    const std::string& name, const toml::node& node,
                    const std::string& key_name, const std::string& file,
                    std::optional<load_error>& err) {
  auto spec = find_key(keys, name);
  if (!spec) {
    err = load_error{key_name, where(file, node), "unknown key"};
    return false;
  }
  auto v = from_toml(node);
  if (!v) {
    err = load_error{key_name, where(file, node),
                     std::string{"must be "} + kind_name(spec->type)};
    return false;
  }
  return apply_value(target, *spec, *v, key_name, where(file, node), err);
}

bool apply_bot_table(const std::string& file, const toml::table& table,
                     size_t index, bot_settings& bot,
                     std::optional<load_error>& err) {
  auto prefix = "bots[" + std::to_string(index) + "].";
  for (auto& [k, node] : table) {
    std::string name{k.str()};
    if (!apply_toml_key(bot, bot_keys(), name, node, prefix + name, file, err))
      return false;
  }
  if (bot.name.empty()) {
    err = load_error{prefix + "name", where(file, table), "is required"};
    return false;
  }
  return true;
}

bool apply_file(const std::string& file, settings& s,
                std::optional<load_error>& err) {
  toml::table root;
  try {
    root = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    auto& src = e.source();
    err = load_error{"", file + ":" + std::to_string(src.begin.line),
                     std::string{e.description()}};
    return false;
  } catch (const std::exception& e) {
    err = load_error{"", file, e.what()};
    return false;
  }
  for (auto& [k, node] : root) {
    std::string section{k.str()};
    if (section == "bots") {
      auto array = node.as_array();
      if (!array) {
        err = load_error{"bots", where(file, node),
                         "must be an array of tables ([[bots]])"};
        return false;
      }
      size_t index = 0;
      for (auto& element : *array) {
        auto table = element.as_table();
        if (!table) {
          err = load_error{"bots", where(file, element),
                           "must be an array of tables ([[bots]])"};
          return false;
        }
        bot_settings bot;
        if (!apply_bot_table(file, *table, index++, bot, err))
          return false;
        s.bots.push_back(std::move(bot));
      }
      continue;
    }
    auto spec = find_section(section);
    if (!spec) {
      err = load_error{section, where(file, node), "unknown section"};
      return false;
    }
    auto table = node.as_table();
    if (!table) {
      err = load_error{section, where(file, node), "must be a table"};
      return false;
    }
    for (auto& [kk, vnode] : *table) {
      std::string name{kk.str()};
      if (!apply_toml_key(s, spec->keys, name, vnode, section + "." + name,
                          file, err))
        return false;
    }
  }
  return true;
}

bool apply_bot_env(const std::string& var, const std::string& text, settings& s,
                   std::optional<load_error>& err) {
  // KARVON_BOT_<NAME>_<KEY>: the name may itself hold underscores, so match
  // the configured names rather than split on '_'.
  const std::string prefix = "KARVON_BOT_";
  auto rest = var.substr(prefix.size());
  for (auto& bot : s.bots) {
    auto name = upper(bot.name) + "_";
    if (rest.rfind(name, 0) != 0)
      continue;
    auto key_name = lower(rest.substr(name.size()));
    auto spec = find_key(bot_keys(), key_name);
    if (!spec || key_name == "name")
      continue;
    // The file wins for the token: the environment fills it in when the
    // file leaves it out. Other keys follow the usual order.
    if (key_name == "token" && !bot.token.empty())
      return true;
    return apply_text(bot, *spec, text, "bots." + bot.name + "." + key_name,
                      var, err);
  }
  err = load_error{var, var,
                   "names no [[bots]] entry of the configuration, or no key "
                   "of one"};
  return false;
}

bool apply_env(const std::vector<name_value>& env, settings& s,
               std::optional<load_error>& err) {
  const std::string prefix = "KARVON_";
  for (auto& [var, text] : env) {
    if (var.rfind(prefix, 0) != 0)
      continue;
    if (var.rfind("KARVON_BOT_", 0) == 0) {
      if (!apply_bot_env(var, text, s, err))
        return false;
      continue;
    }
    auto rest = lower(var.substr(prefix.size()));
    auto key = find_setting(rest, '_');
    if (!key) {
      err = load_error{var, var, "is not a configuration key"};
      return false;
    }
    auto key_name = rest.replace(rest.find('_'), 1, ".");
    if (!apply_text(s, *key, text, key_name, var, err))
      return false;
  }
  return true;
}

bool apply_overrides(const std::vector<name_value>& overrides, settings& s,
                     std::optional<load_error>& err) {
  for (auto& [name, text] : overrides) {
    auto source = "--set " + name;
    if (name.rfind("bots.", 0) == 0) {
      // bots.<name>.<key>
      auto dot = name.find('.', 5);
      auto bot_name = name.substr(5, dot == std::string::npos ? dot : dot - 5);
      auto it = std::find_if(s.bots.begin(), s.bots.end(),
                             [&](auto& b) { return b.name == bot_name; });
      auto spec = dot == std::string::npos
                      ? nullptr
                      : find_key(bot_keys(), name.substr(dot + 1));
      if (it == s.bots.end() || !spec || spec->name == "name") {
        err = load_error{name, source, "is not a configuration key"};
        return false;
      }
      if (!apply_text(*it, *spec, text, name, source, err))
        return false;
      continue;
    }
    auto key = find_setting(name, '.');
    if (!key) {
      err = load_error{name, source, "is not a configuration key"};
      return false;
    }
    if (!apply_text(s, *key, text, name, source, err))
      return false;
  }
  return true;
}

bool check_whole(const settings& s, std::optional<load_error>& err) {
  std::set<std::string> names;
  for (auto& bot : s.bots) {
    if (!names.insert(bot.name).second) {
      err = load_error{"bots." + bot.name + ".name", "configuration",
                       "is used by two [[bots]] entries"};
      return false;
    }
  }
  if (s.cluster.failure_timeout_ms <= s.cluster.heartbeat_ms) {
    err = load_error{"cluster.failure_timeout_ms", "configuration",
                     "must be greater than cluster.heartbeat_ms"};
    return false;
  }
  // A node stops serving a lease a fifth of it before it expires, and must
  // renew it (once a heartbeat) before then.
  if (s.cluster.lease_ms - s.cluster.lease_ms / 5 <= s.cluster.heartbeat_ms) {
    err = load_error{"cluster.lease_ms", "configuration",
                     "must be more than 1.25 times cluster.heartbeat_ms"};
    return false;
  }
  return true;
}

} // namespace

bool parse_host_port(const std::string& text, host_port& out) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size()
        || text[close + 1] != ':')
      return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos)
      return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos)
      return false; // IPv6 needs brackets
  }
  if (host.empty() || port.empty() || port.size() > 5)
    return false;
  for (char c : port)
    if (!std::isdigit(static_cast<unsigned char>(c)))
      return false;
  auto p = std::stoi(port);
  if (p > 65535)
    return false;
  out.host = host;
  out.port = static_cast<std::uint16_t>(p);
  return true;
}

std::string load_error::describe() const {
  std::string out = "invalid setting";
  if (!key.empty())
    out += " " + key;
  if (!source.empty() && source != key)
    out += " (" + source + ")";
  out += ": " + message;
  return out;
}

load_result load(const load_options& options) {
  load_result result;
  auto& err = result.error;
  if (!options.config_file.empty()
      && !apply_file(options.config_file, result.value, err))
    return result;
  if (!apply_env(options.environment, result.value, err))
    return result;
  if (!apply_overrides(options.overrides, result.value, err))
    return result;
  check_whole(result.value, err);
  return result;
}

std::vector<name_value> process_environment() {
  std::vector<name_value> out;
  for (char** e = environ; e && *e; ++e) {
    std::string entry{*e};
    if (entry.rfind("KARVON_", 0) != 0)
      continue;
    auto eq = entry.find('=');
    if (eq == std::string::npos)
      continue;
    out.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> known_keys() {
  std::vector<std::string> out;
  for (auto& s : sections())
    for (auto& k : s.keys)
      out.push_back(s.name + "." + k.name);
  for (auto& k : bot_keys())
    out.push_back("bots." + k.name);
  return out;
}

host_port cluster_listen(const settings& s) {
  host_port hp;
  if (!s.cluster.listen.empty() && parse_host_port(s.cluster.listen, hp))
    return hp;
  parse_host_port(s.server.listen, hp);
  if (hp.port != 0)
    hp.port = static_cast<std::uint16_t>(
        hp.port + 1000 > 65535 ? 0 : hp.port + 1000);
  return hp;
}

std::string effective_node_id(const settings& s) {
  if (!s.server.node_id.empty())
    return s.server.node_id;
  host_port hp;
  if (!parse_host_port(s.server.listen, hp))
    return "node";
  std::string id = hp.host + "-" + std::to_string(hp.port);
  for (auto& c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'))
      c = '_';
  return id;
}

} // namespace karvon::config
