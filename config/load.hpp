// Loading settings: built-in defaults, then the TOML file, then
// KARVON_<SECTION>_<KEY> environment variables, then command-line overrides.
// Every layer goes through the same table of keys, so a key is spelled,
// typed and validated in one place.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/settings.hpp"

namespace karvon::config {

/// Exit code of a process that stops because of an invalid setting.
inline constexpr int invalid_setting_exit_code = 2;

using name_value = std::pair<std::string, std::string>;

struct load_options {
  std::string config_file;             //!< empty: defaults only
  std::vector<name_value> environment; //!< KARVON_* variables, name, value
  std::vector<name_value> overrides;   //!< "section.key", value (flags)
};

/// Why loading failed: the key (as written in the file), where it came from
/// and what is wrong with it.
struct load_error {
  std::string key;     //!< "http.max_body_bytes", "bots.shopbot.mode", ...
  std::string source;  //!< "file.toml:12", "KARVON_HTTP_MAX_BODY_BYTES", ...
  std::string message; //!< "must be an integer from 1 to 1073741824"

  /// One line for an operator: "invalid setting http.max_body_bytes (...)".
  std::string describe() const;
};

struct load_result {
  settings value;
  std::optional<load_error> error; //!< set when loading failed
};

/// Layers the file, environment and overrides over the defaults. Never
/// throws; the first invalid or unknown key is reported in `error`.
load_result load(const load_options& options);

/// The KARVON_* variables of this process's environment.
std::vector<name_value> process_environment();

/// Every "section.key" the configuration accepts (bots as "bots.KEY").
std::vector<std::string> known_keys();

/// Node id when server.node_id is empty: "<host>-<port>" of server.listen.
std::string effective_node_id(const settings& s);

} // namespace karvon::config
