// The chat protocols of Ollama and OpenAI-compatible servers: request
// bodies, streamed pieces and whole responses, and a streamed call to the
// fake server over real HTTP for each.
#include <future>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/http_client.hpp"
#include "actors/llm_protocol.hpp"
#include "tests/support/fake_llm.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

llm_call hello(bool stream = true) {
  return {"qwen2.5:7b-instruct",
          {{"system", "Answer briefly."}, {"user", "Доставка бесплатная?"}},
          stream};
}

TEST(LlmProtocol, names_the_providers_and_their_paths) {
  EXPECT_EQ(parse_llm_provider("ollama"), llm_provider::ollama);
  EXPECT_EQ(parse_llm_provider("openai"), llm_provider::openai);
  EXPECT_FALSE(parse_llm_provider("claude"));
  EXPECT_STREQ(llm_path(llm_provider::ollama), "/api/chat");
  EXPECT_STREQ(llm_path(llm_provider::openai), "/v1/chat/completions");
}

TEST(LlmProtocol, builds_each_providers_request_body) {
  auto o = json::parse(llm_request_body(llm_provider::ollama, hello()));
  EXPECT_EQ(o["model"], "qwen2.5:7b-instruct");
  EXPECT_EQ(o["stream"], true);
  EXPECT_EQ(o["messages"][1]["content"], "Доставка бесплатная?");
  EXPECT_FALSE(o.contains("stream_options"));
  auto a = json::parse(llm_request_body(llm_provider::openai, hello()));
  EXPECT_EQ(a["stream_options"]["include_usage"], true);
  auto whole
      = json::parse(llm_request_body(llm_provider::openai, hello(false)));
  EXPECT_EQ(whole["stream"], false);
  EXPECT_FALSE(whole.contains("stream_options"));
}

TEST(LlmProtocol, reads_ollama_lines_and_its_final_counts) {
  auto p = parse_llm_stream_piece(
      llm_provider::ollama,
      R"({"model":"m","message":{"role":"assistant","content":"Ha"},"done":false})");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->text, "Ha");
  EXPECT_FALSE(p->done);
  auto end = parse_llm_stream_piece(
      llm_provider::ollama,
      R"({"model":"m","message":{"role":"assistant","content":""},"done":true,"prompt_eval_count":12,"eval_count":3})");
  ASSERT_TRUE(end);
  EXPECT_TRUE(end->done);
  EXPECT_EQ(end->prompt_tokens, 12);
  EXPECT_EQ(end->completion_tokens, 3);
  auto err = parse_llm_stream_piece(llm_provider::ollama,
                                    R"({"error":"model not found"})");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->error, "model not found");
  EXPECT_FALSE(parse_llm_stream_piece(llm_provider::ollama, "not json"));
  EXPECT_FALSE(parse_llm_stream_piece(llm_provider::ollama, R"({"x":1})"));
}

TEST(LlmProtocol, reads_openai_events_usage_and_done) {
  auto p = parse_llm_stream_piece(
      llm_provider::openai,
      R"({"choices":[{"index":0,"delta":{"content":"Yes"},"finish_reason":null}]})");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->text, "Yes");
  EXPECT_FALSE(p->done);
  auto usage = parse_llm_stream_piece(
      llm_provider::openai,
      R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}})");
  ASSERT_TRUE(usage);
  EXPECT_EQ(usage->prompt_tokens, 9);
  auto done = parse_llm_stream_piece(llm_provider::openai, "[DONE]");
  ASSERT_TRUE(done);
  EXPECT_TRUE(done->done);
  auto err = parse_llm_stream_piece(llm_provider::openai,
                                    R"({"error":{"message":"rate limited"}})");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->error, "rate limited");
  auto whole = parse_llm_response(
      llm_provider::openai,
      R"({"choices":[{"message":{"content":"All of it"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3}})");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->text, "All of it");
  EXPECT_TRUE(whole->done);
  EXPECT_EQ(whole->completion_tokens, 3);
}

// A streamed call to the fake over real HTTP: the pieces add up to its
// answer, with its token counts.
void stream_from_fake(llm_provider provider) {
  testing::fake_llm llm{{2, 10, 1ms, [](const std::string&) {
                           return std::string{"Yetkazib berish bepul."};
                         }}};
  http_client client;
  http_request r;
  r.method = "POST";
  r.url = llm.url() + llm_path(provider);
  r.headers = {{"Content-Type", "application/json"}};
  r.body = llm_request_body(provider, hello());
  std::string text;
  std::optional<std::int64_t> completion;
  bool done = false;
  r.on_chunk = [&](std::string_view piece) {
    auto p = parse_llm_stream_piece(provider, piece);
    EXPECT_TRUE(p) << piece;
    if (p) {
      text += p->text;
      done = done || p->done;
      if (p->completion_tokens)
        completion = p->completion_tokens;
    }
    return true;
  };
  std::promise<http_response> reply;
  client.request(std::move(r),
                 [&](http_response res) { reply.set_value(res); });
  auto res = reply.get_future().get();
  ASSERT_TRUE(res.ok()) << res.error;
  EXPECT_EQ(text, "Yetkazib berish bepul.");
  EXPECT_TRUE(done);
  EXPECT_EQ(completion, 3);
}

TEST(LlmProtocol, a_streamed_ollama_call_adds_up_to_the_answer) {
  stream_from_fake(llm_provider::ollama);
}

TEST(LlmProtocol, a_streamed_openai_call_adds_up_to_the_answer) {
  stream_from_fake(llm_provider::openai);
}

} // namespace
} // namespace karvon::actors
