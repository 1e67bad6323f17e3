// Splitting documents into passages: sizes, boundaries, UTF-8.
#include <gtest/gtest.h>

#include "actors/passages.hpp"

namespace karvon::actors {
namespace {

TEST(Passages, short_text_is_one_passage_trimmed) {
  EXPECT_EQ(split_passages("  Delivery takes two days.  \n"),
            std::vector<std::string>{"Delivery takes two days."});
}

TEST(Passages, empty_or_blank_text_gives_none) {
  EXPECT_TRUE(split_passages("").empty());
  EXPECT_TRUE(split_passages(" \n\n\t ").empty());
}

TEST(Passages, paragraphs_are_packed_up_to_the_target_and_kept_on_lines) {
  auto p = split_passages("First paragraph.\n\nSecond one.\n\n"
                          "A third paragraph that is longer.",
                          30);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0], "First paragraph.\nSecond one.");
  EXPECT_EQ(p[1], "A third paragraph that is longer.");
}

TEST(Passages, a_long_paragraph_is_cut_at_sentence_ends) {
  std::string text;
  for (int i = 0; i < 20; ++i)
    text += "Sentence number " + std::to_string(i) + " is here. ";
  auto p = split_passages(text, 100);
  ASSERT_GT(p.size(), 3u);
  for (auto& s : p) {
    EXPECT_LE(s.size(), 100u) << s;
    EXPECT_EQ(s.back(), '.') << s;
  }
}

TEST(Passages, never_cuts_inside_a_character) {
  std::string word = "ёлка"; // 2-byte letters, no spaces at all
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += word;
  for (auto& s : split_passages(text, 50)) {
    EXPECT_LE(s.size(), 100u);
    // Every piece starts on a lead byte and ends on a whole character.
    EXPECT_NE(static_cast<unsigned char>(s.front()) & 0xC0, 0x80);
    EXPECT_EQ(s.size() % 2, 0u);
  }
}

TEST(Passages, keeps_every_word_in_order) {
  std::string text = "Buyurtma ikki kunda yetkaziladi. Toshkent bo'ylab "
                     "bepul.\n\nПлатеж картой или наличными. Возврат в "
                     "течение 14 дней.";
  std::string joined;
  for (auto& s : split_passages(text, 40))
    joined += s + " ";
  for (auto* w : {"Buyurtma", "bo'ylab", "Платеж", "наличными.", "14"})
    EXPECT_NE(joined.find(w), std::string::npos) << w;
  EXPECT_LT(joined.find("Buyurtma"), joined.find("Возврат"));
}

} // namespace
} // namespace karvon::actors
