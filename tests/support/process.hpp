// Child processes for end-to-end tests: the real `karvon` binary, with its
// output captured so tests can wait for a line and read what it printed.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace karvon::testing {

class child_process {
public:
  /// Starts `argv[0]` with `argv`, the current environment plus `env`
  /// (an empty value unsets a variable). stdout and stderr are captured.
  child_process(std::vector<std::string> argv,
                std::map<std::string, std::string> env = {});
  /// Kills the process (SIGKILL) if it still runs.
  ~child_process();

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }

  /// Waits until stdout+stderr contain `text`; returns the line holding it.
  std::optional<std::string> wait_for(const std::string& text,
                                      std::chrono::milliseconds timeout);

  /// Sends a signal.
  void signal(int sig);

  /// Waits for the exit; the exit code, 128+signal, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  /// Everything printed so far (stdout and stderr interleaved).
  std::string output();

private:
  void pump(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string output_;
  std::optional<int> exit_code_;
};

/// Runs a command to completion: {exit code, output}.
std::pair<int, std::string>
run_command(std::vector<std::string> argv,
            std::map<std::string, std::string> env = {},
            std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// A fresh empty directory under the test work directory.
std::string fresh_directory(const std::string& prefix);

} // namespace karvon::testing
