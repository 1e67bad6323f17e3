// An in-process fake of an LLM server, over real HTTP on loopback, for the
// chat tests. It behaves like Ollama (POST /api/chat, NDJSON stream) and
// like an OpenAI-compatible server (POST /v1/chat/completions, server-sent
// events), with Ollama's limits: at most `num_parallel` generations at once
// (OLLAMA_NUM_PARALLEL), at most `max_queue` waiting (OLLAMA_MAX_QUEUE), and
// 503 beyond that. Each token takes `token_latency`. It records every
// prompt, the highest concurrency it saw and every 503 it sent.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace karvon::testing {

struct fake_llm_options {
  std::size_t num_parallel = 4;
  std::size_t max_queue = 512;
  std::chrono::milliseconds token_latency{5};
  /// The answer to a chat's messages (the request's "messages" as JSON
  /// text); its words are streamed one token each.
  std::function<std::string(const std::string& messages)> answer
      = [](const std::string&) { return std::string{"This is an answer."}; };
  /// Answer every request with this status instead (0: behave normally);
  /// 503 and 429 carry Retry-After: 1.
  int fail_with = 0;
};

class fake_llm {
public:
  /// Listens on 127.0.0.1 at a free port, with its own threads.
  explicit fake_llm(fake_llm_options options = {});
  /// Stops at once, cutting generations short.
  ~fake_llm();

  fake_llm(const fake_llm&) = delete;
  fake_llm& operator=(const fake_llm&) = delete;

  std::uint16_t port() const;
  /// "http://127.0.0.1:<port>"
  std::string url() const;

  /// Requests that reached a generation (not refused).
  std::size_t generations() const;
  /// The "messages" JSON of every generation, in arrival order.
  std::vector<std::string> prompts() const;
  /// The most generations it ran at once.
  std::size_t max_concurrency() const;
  /// 503s it sent because it was full.
  std::size_t busy_refusals() const;

  /// Changes fail_with from now on.
  void fail_with(int status);

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace karvon::testing
