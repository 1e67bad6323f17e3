#include "process.hpp"

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace karvon::testing {

child_process::child_process(std::vector<std::string> argv,
                             std::map<std::string, std::string> env) {
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e; ++e) {
    std::string entry{*e};
    auto eq = entry.find('=');
    if (eq != std::string::npos)
      merged[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (auto& [k, v] : env) {
    if (v.empty())
      merged.erase(k);
    else
      merged[k] = v;
  }
  std::vector<std::string> env_strings;
  for (auto& [k, v] : merged)
    env_strings.push_back(k + "=" + v);

  // Build every pointer before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0)
    throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    // A test runner may block signals; the child must see SIGTERM.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  ::close(fds[1]);
  out_fd_ = fds[0];
  fcntl(out_fd_, F_SETFL, fcntl(out_fd_, F_GETFL) | O_NONBLOCK);
}

child_process::~child_process() {
  if (!exit_code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0)
    ::close(out_fd_);
}

void child_process::pump(std::chrono::milliseconds timeout) {
  if (out_fd_ < 0)
    return;
  pollfd p{out_fd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
    return;
  char buf[4096];
  while (true) {
    auto n = ::read(out_fd_, buf, sizeof buf);
    if (n > 0) {
      output_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      ::close(out_fd_);
      out_fd_ = -1;
    }
    break;
  }
}

std::optional<std::string>
child_process::wait_for(const std::string& text,
                        std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto pos = output_.find(text);
    if (pos != std::string::npos) {
      auto begin = output_.rfind('\n', pos);
      begin = begin == std::string::npos ? 0 : begin + 1;
      auto end = output_.find('\n', pos);
      return output_.substr(begin,
                            end == std::string::npos ? end : end - begin);
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline || out_fd_ < 0)
      return std::nullopt;
    pump(std::min<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now),
        std::chrono::milliseconds{50}));
  }
}

void child_process::signal(int sig) {
  if (!exit_code_)
    ::kill(pid_, sig);
}

std::optional<int> child_process::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_)
    return exit_code_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pump(std::chrono::milliseconds{20});
    int status = 0;
    auto r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_
          = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // Collect what it printed last.
      for (int i = 0; i < 20 && out_fd_ >= 0; ++i)
        pump(std::chrono::milliseconds{10});
      return exit_code_;
    }
  }
  return std::nullopt;
}

std::string child_process::output() {
  pump(std::chrono::milliseconds{0});
  return output_;
}

std::pair<int, std::string> run_command(std::vector<std::string> argv,
                                        std::map<std::string, std::string> env,
                                        std::chrono::milliseconds timeout) {
  child_process p{std::move(argv), std::move(env)};
  auto code = p.wait_exit(timeout);
  return {code.value_or(-1), p.output()};
}

std::string fresh_directory(const std::string& prefix) {
  static std::atomic<int> counter{0};
  std::string base = KARVON_TEST_WORK_DIR;
  ::mkdir(base.c_str(), 0755);
  auto path = base + "/" + prefix + "-" + std::to_string(getpid()) + "-"
              + std::to_string(counter++);
  std::string cmd = "rm -rf '" + path + "'";
  if (std::system(cmd.c_str()) != 0)
    throw std::runtime_error("cannot clear " + path);
  if (::mkdir(path.c_str(), 0755) != 0)
    throw std::runtime_error("cannot create " + path);
  return path;
}

} // namespace karvon::testing
