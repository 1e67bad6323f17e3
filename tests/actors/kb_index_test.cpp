// The knowledge base's retrieval index follows the table: built at load,
// rebuilt when a document is added or deleted, here or on another node.
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "actors/knowledge_base.hpp"
#include "actors/retrieval.hpp"
#include "persistence/db_pool.hpp"
#include "persistence/kb_store.hpp"
#include "persistence/migrations.hpp"
#include "tests/support/test_database.hpp"

namespace karvon::actors {
namespace {

using namespace std::chrono_literals;

persistence::kb_document_row doc(const std::string& title,
                                 const std::string& language) {
  persistence::kb_document_row d;
  d.title = title;
  d.content = title + " content";
  d.language = language;
  d.category = "general";
  return d;
}

class KbIndex : public ::testing::Test {
protected:
  KbIndex() {
    conninfo_ = testing::fresh_database();
    persistence::migrate(conninfo_);
    pool_ = std::make_unique<persistence::db_pool>(
        persistence::pool_options{conninfo_, 2, 100, {}}, nullptr);
  }

  void insert(const std::string& title, const std::string& language) {
    pqxx::connection c{conninfo_};
    persistence::insert_kb_document(c, doc(title, language),
                                    {title + " passage"});
  }

  template <class Pred>
  bool eventually(Pred p) {
    for (int i = 0; i < 300; ++i) {
      if (p())
        return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::string conninfo_;
  std::unique_ptr<persistence::db_pool> pool_;
};

TEST_F(KbIndex, loads_every_passage_with_its_documents_title_and_language) {
  insert("Delivery", "en");
  insert("Доставка", "ru");
  kb_index index{*pool_};
  ASSERT_TRUE(index.load(10s));
  auto current = index.current();
  ASSERT_EQ(current->size(), 2u);
  auto hits = current->search_documents("доставка", "ru", 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(current->passages()[hits[0].passage].title, "Доставка");
  EXPECT_EQ(current->passages()[hits[0].passage].language, "ru");
}

TEST_F(KbIndex, follows_changes_made_elsewhere_by_polling) {
  kb_index index{*pool_};
  ASSERT_TRUE(index.load(10s));
  EXPECT_EQ(index.current()->size(), 0u);
  index.start(50ms);
  insert("Warranty", "en"); // as another node would
  EXPECT_TRUE(eventually([&] { return index.current()->size() == 1; }));
  index.stop();
}

TEST_F(KbIndex, changes_made_through_the_service_show_at_once) {
  kb_index index{*pool_};
  ASSERT_TRUE(index.load(10s));
  index.start(1h); // no polling: only the service's nudge
  knowledge_base kb{*pool_, &index};
  std::promise<result<kb_document>> created;
  kb.create(doc("Payment", "en"),
            [&](result<kb_document> r) { created.set_value(std::move(r)); });
  auto r = created.get_future().get();
  ASSERT_TRUE(std::holds_alternative<kb_document>(r));
  EXPECT_TRUE(eventually([&] { return index.current()->size() == 1; }));
  std::promise<result<bool>> removed;
  kb.remove(std::get<kb_document>(r).id,
            [&](result<bool> r) { removed.set_value(std::move(r)); });
  removed.get_future().get();
  EXPECT_TRUE(eventually([&] { return index.current()->size() == 0; }));
  index.stop();
}

} // namespace
} // namespace karvon::actors
