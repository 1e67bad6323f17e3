// The fake LLM server behaves as the chat tests need: Ollama's NDJSON and
// OpenAI's server-sent events, streamed a token at a time over real HTTP,
// and Ollama's limits (parallel generations, a bounded queue, 503 beyond).
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/http_client.hpp"
#include "tests/support/fake_llm.hpp"

namespace karvon::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

actors::http_request chat(const fake_llm& llm, bool openai, bool stream,
                          std::vector<std::string>* chunks = nullptr) {
  actors::http_request r;
  r.method = "POST";
  r.url = llm.url() + (openai ? "/v1/chat/completions" : "/api/chat");
  r.headers = {{"Content-Type", "application/json"}};
  r.body = json{{"model", "m"},
                {"stream", stream},
                {"messages", {{{"role", "user"}, {"content", "hello there"}}}}}
               .dump();
  if (chunks)
    r.on_chunk = [chunks](std::string_view c) {
      chunks->emplace_back(c);
      return true;
    };
  return r;
}

actors::http_response run(actors::http_client& client, actors::http_request r) {
  std::promise<actors::http_response> done;
  client.request(std::move(r),
                 [&](actors::http_response res) { done.set_value(res); });
  return done.get_future().get();
}

TEST(FakeLlm, streams_ollama_ndjson_a_token_a_line) {
  fake_llm llm{{1, 10, 1ms, [](const std::string&) {
                  return std::string{"one two three"};
                }}};
  actors::http_client client;
  std::vector<std::string> chunks;
  auto res = run(client, chat(llm, false, true, &chunks));
  ASSERT_TRUE(res.ok()) << res.error << res.body;
  ASSERT_EQ(chunks.size(), 4u); // three tokens and the end
  std::string text;
  for (auto& c : chunks)
    text += json::parse(c)["message"]["content"].get<std::string>();
  EXPECT_EQ(text, "one two three");
  auto last = json::parse(chunks.back());
  EXPECT_TRUE(last["done"].get<bool>());
  EXPECT_EQ(last["eval_count"], 3);
  ASSERT_EQ(llm.prompts().size(), 1u);
  EXPECT_NE(llm.prompts()[0].find("hello there"), std::string::npos);
}

TEST(FakeLlm, streams_openai_server_sent_events_and_answers_whole) {
  fake_llm llm{
      {1, 10, 1ms, [](const std::string&) { return std::string{"a b"}; }}};
  actors::http_client client;
  std::vector<std::string> events;
  auto res = run(client, chat(llm, true, true, &events));
  ASSERT_TRUE(res.ok()) << res.error;
  ASSERT_EQ(events.size(), 4u); // two tokens, the end, [DONE]
  EXPECT_EQ(json::parse(events[1])["choices"][0]["delta"]["content"], " b");
  EXPECT_EQ(events.back(), "[DONE]");
  auto whole = run(client, chat(llm, true, false));
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["message"]["content"], "a b");
}

TEST(FakeLlm, runs_num_parallel_at_once_queues_max_queue_and_refuses_more) {
  fake_llm llm{{1, 1, 20ms,
                [](const std::string&) { return std::string{"w w w w w"}; }}};
  actors::http_client client;
  std::vector<std::future<actors::http_response>> replies;
  std::vector<std::shared_ptr<std::promise<actors::http_response>>> ps;
  for (int i = 0; i < 3; ++i) {
    auto p = std::make_shared<std::promise<actors::http_response>>();
    replies.push_back(p->get_future());
    client.request(chat(llm, false, false),
                   [p](actors::http_response r) { p->set_value(r); });
    std::this_thread::sleep_for(10ms); // arrive in order
  }
  int ok = 0, busy = 0;
  for (auto& f : replies) {
    auto r = f.get();
    ok += r.ok();
    if (r.status == 503) {
      ++busy;
      EXPECT_EQ(r.header("retry-after"), "1");
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(busy, 1);
  EXPECT_EQ(llm.max_concurrency(), 1u);
  EXPECT_EQ(llm.busy_refusals(), 1u);
  EXPECT_EQ(llm.generations(), 2u);
}

TEST(FakeLlm, fails_as_scripted) {
  fake_llm llm;
  llm.fail_with(429);
  actors::http_client client;
  auto r = run(client, chat(llm, false, false));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.header("retry-after"), "1");
  EXPECT_EQ(llm.generations(), 0u);
}

} // namespace
} // namespace karvon::testing
