// The knowledge base's admin routes through a real node: create, read,
// list, delete, and the 400 that names the bad field.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/server/node_fixture.hpp"

namespace karvon::testing {
namespace {

using nlohmann::json;
using KnowledgeBase = NodeTest;

json doc(const std::string& title, const std::string& language,
         const std::string& content = "Buyurtma ikki kunda yetkaziladi.") {
  return {{"title", title},
          {"content", content},
          {"language", language},
          {"category", "delivery"}};
}

TEST_F(KnowledgeBase, a_document_is_created_read_and_deleted) {
  std::string long_text;
  for (int i = 0; i < 40; ++i)
    long_text += "Доставка по Ташкенту занимает один день, по регионам до "
                 "трёх дней. ";
  auto created = http_request(port(), "POST", "/api/v1/kb/documents",
                              doc("Доставка", "ru", long_text).dump(),
                              bearer(admin_key_, true));
  ASSERT_EQ(created.status, 201) << created.body;
  auto c = json::parse(created.body);
  auto id = c["id"].get<std::int64_t>();
  EXPECT_EQ(c["title"], "Доставка");
  EXPECT_EQ(c["language"], "ru");
  EXPECT_EQ(c["category"], "delivery");
  EXPECT_EQ(c["content"], long_text);
  EXPECT_GT(c["passages"].get<int>(), 1); // long documents are split
  EXPECT_EQ(count_rows("kb_passages"), c["passages"].get<long>());

  auto read = http_request(port(), "GET",
                           "/api/v1/kb/documents/" + std::to_string(id), {},
                           bearer(admin_key_));
  ASSERT_EQ(read.status, 200);
  EXPECT_EQ(json::parse(read.body)["content"], long_text);

  auto gone = http_request(port(), "DELETE",
                           "/api/v1/kb/documents/" + std::to_string(id), {},
                           bearer(admin_key_));
  EXPECT_EQ(gone.status, 204);
  EXPECT_EQ(count_rows("kb_passages"), 0);
  EXPECT_EQ(http_request(port(), "GET",
                         "/api/v1/kb/documents/" + std::to_string(id), {},
                         bearer(admin_key_))
                .status,
            404);
  EXPECT_EQ(http_request(port(), "DELETE",
                         "/api/v1/kb/documents/" + std::to_string(id), {},
                         bearer(admin_key_))
                .status,
            404);
}

TEST_F(KnowledgeBase, the_list_pages_newest_first_and_filters) {
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(http_request(
                  port(), "POST", "/api/v1/kb/documents",
                  doc("doc " + std::to_string(i), i % 2 ? "en" : "uz").dump(),
                  bearer(admin_key_, true))
                  .status,
              201);
  auto page
      = json::parse(http_request(port(), "GET", "/api/v1/kb/documents?limit=2",
                                 {}, bearer(admin_key_))
                        .body);
  ASSERT_EQ(page["documents"].size(), 2u);
  EXPECT_EQ(page["documents"][0]["title"], "doc 4");
  EXPECT_FALSE(page["documents"][0].contains("content"));
  auto next = page["next_before"].get<std::int64_t>();
  auto rest = json::parse(
      http_request(port(), "GET",
                   "/api/v1/kb/documents?before=" + std::to_string(next), {},
                   bearer(admin_key_))
          .body);
  EXPECT_EQ(rest["documents"].size(), 3u);
  EXPECT_TRUE(rest["next_before"].is_null());
  auto english = json::parse(http_request(port(), "GET",
                                          "/api/v1/kb/documents?language=en",
                                          {}, bearer(admin_key_))
                                 .body);
  EXPECT_EQ(english["documents"].size(), 2u);
}

TEST_F(KnowledgeBase, bad_input_is_a_400_naming_the_field) {
  auto field_of = [&](const json& body) {
    auto r = http_request(port(), "POST", "/api/v1/kb/documents", body.dump(),
                          bearer(admin_key_, true));
    EXPECT_EQ(r.status, 400) << body.dump();
    auto j = json::parse(r.body, nullptr, false);
    return j.is_discarded() ? std::string{}
                            : j["error"]["details"]["field"].get<std::string>();
  };
  auto d = doc("t", "uz");
  d.erase("title");
  EXPECT_EQ(field_of(d), "title");
  EXPECT_EQ(field_of(doc("  ", "uz")), "title");
  EXPECT_EQ(field_of(doc("t", "de")), "language");
  EXPECT_EQ(field_of(doc("t", "uz", "")), "content");
  EXPECT_EQ(field_of(doc("t", "uz", " \n ")), "content");
  d = doc("t", "uz");
  d["category"] = 5;
  EXPECT_EQ(field_of(d), "category");
  EXPECT_EQ(count_rows("kb_documents"), 0);
  EXPECT_EQ(http_request(port(), "GET", "/api/v1/kb/documents?language=xx", {},
                         bearer(admin_key_))
                .status,
            400);
}

TEST_F(KnowledgeBase, only_admins_change_it_and_operators_read_it) {
  auto op = create_key(actors::role::operator_);
  auto client = create_key(actors::role::client);
  wait_for_key(op);
  wait_for_key(client);
  EXPECT_EQ(http_request(port(), "GET", "/api/v1/kb/documents", {}, bearer(op))
                .status,
            200);
  EXPECT_EQ(http_request(port(), "POST", "/api/v1/kb/documents",
                         doc("t", "en").dump(), bearer(op, true))
                .status,
            403);
  EXPECT_EQ(
      http_request(port(), "GET", "/api/v1/kb/documents", {}, bearer(client))
          .status,
      403);
  EXPECT_EQ(http_request(port(), "POST", "/api/v1/kb/documents",
                         doc("t", "en").dump(), bearer(client, true))
                .status,
            403);
}

} // namespace
} // namespace karvon::testing
