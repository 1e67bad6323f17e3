// Retrieval over the knowledge base: the passages that best answer a
// question, in uz (Latin or Cyrillic), ru or en. A plain in-process index
// (BM25), rebuilt from kb_passages when the knowledge base changes.
//
// Text is folded before indexing and before a search, so that the forms
// users type meet the forms documents use:
// - Unicode case folding; Cyrillic transliterated to Latin (Uzbek's ў қ ғ ҳ
//   included), so Uzbek in either script meets the same terms, and Russian
//   meets Russian; accents stripped; the apostrophes of o' and g' (', ’, ‘,
//   ʻ, ʼ, `) dropped.
// - Each word gives a prefix term (its first five letters: Uzbek and
//   Russian inflect by suffix, so "yetkazib", "yetkaziladi" and "доставка",
//   "доставки" share one) and, with a lower weight, its letter trigrams, so
//   a typo still shares most of them.
// See docs/chat.md for the choice and the measured quality.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace karvon::actors {

/// The text folded as above, words separated by single spaces.
std::string fold_text(std::string_view text);

/// "uz", "ru" or "en" for a question, from its script, letters and common
/// words; `fallback` when it cannot tell (empty or no letters).
std::string detect_language(std::string_view text,
                            std::string_view fallback = "en");

struct kb_passage {
  std::int64_t document_id = 0;
  int ordinal = 0;
  std::string title;
  std::string language;
  std::string text;
};

struct retrieval_hit {
  std::size_t passage = 0; //!< index into passages()
  double score = 0;        //!< BM25, the language bonus included
};

class retrieval_index {
public:
  /// Adds a passage; its title counts as part of it.
  void add(kb_passage p);

  std::size_t size() const { return passages_.size(); }
  const std::vector<kb_passage>& passages() const { return passages_; }

  /// The `k` best passages for `question`, best first; passages in
  /// `language` get a bonus. Only passages sharing a term with it.
  std::vector<retrieval_hit> search(std::string_view question,
                                    std::string_view language,
                                    std::size_t k) const;

  /// Like search, but one hit per document (its best passage), best first.
  std::vector<retrieval_hit> search_documents(std::string_view question,
                                              std::string_view language,
                                              std::size_t k) const;

  /// How well the best hit answers `question`, from 0 to 1: its score over
  /// the score a passage holding every query term would get.
  double confidence(std::string_view question, const retrieval_hit& best) const;

private:
  struct posting {
    std::uint32_t passage;
    float tf;
  };
  struct weighted_term {
    std::string term;
    double weight;
  };
  static std::vector<weighted_term> terms_of(std::string_view text);
  /// A question's terms, each once, with its weight.
  static std::map<std::string, double> query_terms(std::string_view question);
  double idf(const std::string& term) const;

  std::vector<kb_passage> passages_;
  std::vector<double> lengths_;
  double total_length_ = 0;
  std::unordered_map<std::string, std::vector<posting>> postings_;
};

} // namespace karvon::actors
