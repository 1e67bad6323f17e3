#include "actors/retrieval.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <unordered_set>

#include <utf8proc.h>

namespace karvon::actors {

namespace {

constexpr double k1 = 1.2;
constexpr double b = 0.75;
constexpr std::size_t prefix_letters = 5;
constexpr double trigram_weight = 0.35;
constexpr double title_repeat = 2; // a title's words count twice
constexpr double language_bonus = 1.25;

// Unicode case folding, composed; invalid UTF-8 gives "".
std::string utf8_map(std::string_view text, int options) {
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                        static_cast<utf8proc_ssize_t>(text.size()), &out,
                        static_cast<utf8proc_option_t>(options));
  if (n < 0)
    return {};
  std::string s{reinterpret_cast<char*>(out), static_cast<std::size_t>(n)};
  std::free(out);
  return s;
}

// Cyrillic lower-case letters (after folding) in Latin, as Uzbek writes
// them; Russian gets the same mapping, so it meets itself.
const char* latin_of(utf8proc_int32_t cp) {
  switch (cp) {
  case 0x430:
    return "a";
  case 0x431:
    return "b";
  case 0x432:
    return "v";
  case 0x433:
    return "g";
  case 0x434:
    return "d";
  case 0x435:
    return "e";
  case 0x451:
    return "yo";
  case 0x436:
    return "j";
  case 0x437:
    return "z";
  case 0x438:
    return "i";
  case 0x439:
    return "y";
  case 0x43A:
    return "k";
  case 0x43B:
    return "l";
  case 0x43C:
    return "m";
  case 0x43D:
    return "n";
  case 0x43E:
    return "o";
  case 0x43F:
    return "p";
  case 0x440:
    return "r";
  case 0x441:
    return "s";
  case 0x442:
    return "t";
  case 0x443:
    return "u";
  case 0x444:
    return "f";
  case 0x445:
    return "x";
  case 0x446:
    return "ts";
  case 0x447:
    return "ch";
  case 0x448:
    return "sh";
  case 0x449:
    return "sh";
  case 0x44A:
    return "";
  case 0x44B:
    return "i";
  case 0x44C:
    return "";
  case 0x44D:
    return "e";
  case 0x44E:
    return "yu";
  case 0x44F:
    return "ya";
  case 0x45E:
    return "o"; // ў (o')
  case 0x49B:
    return "q"; // қ
  case 0x493:
    return "g"; // ғ (g')
  case 0x4B3:
    return "h"; // ҳ
  default:
    return nullptr;
  }
}

bool is_apostrophe(utf8proc_int32_t cp) {
  return cp == '\'' || cp == '`' || cp == 0x2019 || cp == 0x2018 || cp == 0x02BB
         || cp == 0x02BC || cp == 0x00B4;
}

bool is_word_char(utf8proc_int32_t cp) {
  auto cat = utf8proc_category(cp);
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO)
         || cat == UTF8PROC_CATEGORY_ND;
}

template <class F>
void for_each_code_point(std::string_view s, F f) {
  auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  auto left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    auto n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {
      ++p;
      --left;
      continue;
    }
    f(cp);
    p += n;
    left -= n;
  }
}

std::vector<std::string> words_of(std::string_view folded) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < folded.size()) {
    auto end = folded.find(' ', start);
    if (end == std::string_view::npos)
      end = folded.size();
    if (end > start)
      out.emplace_back(folded.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The first `n` code points of a word.
std::string first_letters(const std::string& w, std::size_t n) {
  std::size_t i = 0, count = 0;
  while (i < w.size() && count < n) {
    auto c = static_cast<unsigned char>(w[i]);
    i += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    ++count;
  }
  return w.substr(0, std::min(i, w.size()));
}

} // namespace

std::string fold_text(std::string_view text) {
  auto folded = utf8_map(text, UTF8PROC_STABLE | UTF8PROC_COMPOSE
                                   | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE);
  // Transliterate before stripping marks: ў and й are marked letters.
  std::string latin;
  latin.reserve(folded.size());
  for_each_code_point(folded, [&](utf8proc_int32_t cp) {
    if (auto l = latin_of(cp)) {
      latin += l;
      return;
    }
    if (is_apostrophe(cp))
      return; // o'zbek -> ozbek, in every spelling
    utf8proc_uint8_t buf[4];
    auto n = utf8proc_encode_char(cp, buf);
    latin.append(reinterpret_cast<char*>(buf), static_cast<std::size_t>(n));
  });
  auto plain = utf8_map(latin, UTF8PROC_STABLE | UTF8PROC_COMPOSE
                                   | UTF8PROC_STRIPMARK);
  std::string out;
  out.reserve(plain.size());
  bool gap = true;
  for_each_code_point(plain, [&](utf8proc_int32_t cp) {
    if (is_word_char(cp)) {
      utf8proc_uint8_t buf[4];
      auto n = utf8proc_encode_char(cp, buf);
      out.append(reinterpret_cast<char*>(buf), static_cast<std::size_t>(n));
      gap = false;
    } else if (!gap) {
      out += ' ';
      gap = true;
    }
  });
  if (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

std::string detect_language(std::string_view text, std::string_view fallback) {
  int cyrillic = 0, latin = 0, uzbek_letters = 0, apostrophes = 0;
  for_each_code_point(text, [&](utf8proc_int32_t cp) {
    auto lower = utf8proc_tolower(cp);
    if (lower >= 0x430 && lower <= 0x45F)
      ++cyrillic;
    else if (lower == 0x49B || lower == 0x493 || lower == 0x4B3)
      ++cyrillic, ++uzbek_letters; // қ ғ ҳ
    else if ((lower >= 'a' && lower <= 'z'))
      ++latin;
    if (lower == 0x45E)
      ++uzbek_letters; // ў
    if (is_apostrophe(cp))
      ++apostrophes;
  });
  if (cyrillic == 0 && latin == 0)
    return std::string{fallback};
  // Common words of each language, folded (Cyrillic transliterated).
  static const std::set<std::string> uz_words = {
      "va",       "uchun",    "bilan",  "qanday", "qancha", "qachon", "qayerda",
      "nima",     "necha",    "mumkin", "kerak",  "bormi",  "yoki",   "menga",
      "mening",   "bu",       "qilish", "qilsam", "bolsa",  "bolad",  "qaytar",
      "buyurtma", "yetkazib", "tolov",  "kun",    "kunda",  "qilib",  "emas",
      "ham",      "men",      "siz",    "sizlar", "bor",    "yoq",    "uz"};
  static const std::set<std::string> ru_words = {
      "i",      "v",      "na", "ne",  "chto",  "kak",      "eto",    "dlya",
      "po",     "s",      "u",  "ya",  "mne",   "moy",      "kogda",  "gde",
      "skolko", "mozhno", "li", "est", "zakaz", "dostavka", "oplata", "vozvrat",
      "ili",    "ot",     "do", "za",  "kakie", "kakoy",    "nuzhno"};
  static const std::set<std::string> en_words
      = {"the",   "a",    "is",    "are",   "how",    "what",     "when",
         "where", "can",  "do",    "does",  "my",     "i",        "to",
         "of",    "and",  "for",   "in",    "it",     "you",      "your",
         "long",  "much", "pay",   "order", "return", "delivery", "with",
         "on",    "is",   "there", "get",   "will",   "which"};
  int uz = uzbek_letters * 3 + apostrophes * 2, ru = 0, en = 0;
  for (auto& w : words_of(fold_text(text))) {
    uz += uz_words.count(w) ? 2 : 0;
    ru += ru_words.count(w) ? 2 : 0;
    en += en_words.count(w) ? 2 : 0;
    if (latin > cyrillic) {
      if (w.find("sh") != std::string::npos || w.find("ch") != std::string::npos
          || w.find('q') != std::string::npos
          || w.find('x') != std::string::npos)
        uz += 1;
      // Uzbek's suffixes: -lar, -mi, -ni, -dan, -ga, -da, -im, -ingiz...
      static const char* const endings[]
          = {"lar",   "larmi", "mi",  "ni",   "dan", "ga", "da",  "im",
             "ingiz", "ladi",  "dim", "ildi", "ish", "ib", "siz", "miz"};
      if (w.size() > 4)
        for (auto* e : endings) {
          std::string_view end{e};
          if (w.size() > end.size()
              && w.compare(w.size() - end.size(), end.size(), end) == 0) {
            uz += 1;
            break;
          }
        }
    }
  }
  if (cyrillic > latin) {
    // Cyrillic: Uzbek or Russian; the letters and words decide, Russian by
    // default.
    return uz > ru ? "uz" : "ru";
  }
  if (uz == 0 && en == 0)
    return std::string{fallback};
  return uz > en ? "uz" : "en";
}

std::vector<retrieval_index::weighted_term>
retrieval_index::terms_of(std::string_view text) {
  std::vector<weighted_term> out;
  for (auto& w : words_of(fold_text(text))) {
    out.push_back({"p" + first_letters(w, prefix_letters), 1.0});
    // Trigrams of longer words carry typos and odd endings.
    std::vector<std::string> letters;
    std::string padded = "_" + w + "_";
    for (std::size_t i = 0; i < padded.size();) {
      auto c = static_cast<unsigned char>(padded[i]);
      std::size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      letters.push_back(padded.substr(i, n));
      i += n;
    }
    if (letters.size() < 6)
      continue; // words of under four letters
    for (std::size_t i = 0; i + 3 <= letters.size(); ++i)
      out.push_back(
          {"t" + letters[i] + letters[i + 1] + letters[i + 2], trigram_weight});
  }
  return out;
}

std::map<std::string, double>
retrieval_index::query_terms(std::string_view question) {
  std::map<std::string, double> query; // term -> weight, once each
  for (auto& t : terms_of(question))
    query.emplace(t.term, t.weight);
  return query;
}

void retrieval_index::add(kb_passage p) {
  auto id = static_cast<std::uint32_t>(passages_.size());
  std::map<std::string, double> tf;
  double length = 0;
  auto count = [&](std::string_view text, double times) {
    for (auto& t : terms_of(text)) {
      tf[t.term] += times;
      length += times * t.weight;
    }
  };
  count(p.title, title_repeat);
  count(p.text, 1);
  for (auto& [term, n] : tf)
    postings_[term].push_back({id, static_cast<float>(n)});
  lengths_.push_back(length);
  total_length_ += length;
  passages_.push_back(std::move(p));
}

double retrieval_index::idf(const std::string& term) const {
  auto n = static_cast<double>(passages_.size());
  auto it = postings_.find(term);
  double df
      = it == postings_.end() ? 0 : static_cast<double>(it->second.size());
  return std::log(1 + (n - df + 0.5) / (df + 0.5));
}

std::vector<retrieval_hit> retrieval_index::search(std::string_view question,
                                                   std::string_view language,
                                                   std::size_t k) const {
  if (passages_.empty() || k == 0)
    return {};
  auto query = query_terms(question);
  double avg = total_length_ / static_cast<double>(passages_.size());
  std::unordered_map<std::uint32_t, double> scores;
  for (auto& [term, weight] : query) {
    auto it = postings_.find(term);
    if (it == postings_.end())
      continue;
    auto w = weight * idf(term);
    for (auto& p : it->second) {
      auto norm = k1 * (1 - b + b * lengths_[p.passage] / avg);
      scores[p.passage] += w * p.tf * (k1 + 1) / (p.tf + norm);
    }
  }
  std::vector<retrieval_hit> hits;
  hits.reserve(scores.size());
  for (auto& [id, s] : scores) {
    auto score = passages_[id].language == language ? s * language_bonus : s;
    hits.push_back({id, score});
  }
  auto n = std::min(k, hits.size());
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(n),
                    hits.end(), [](auto& x, auto& y) {
                      return x.score != y.score ? x.score > y.score
                                                : x.passage < y.passage;
                    });
  hits.resize(n);
  return hits;
}

std::vector<retrieval_hit> retrieval_index::search_documents(
    std::string_view question, std::string_view language, std::size_t k) const {
  auto all = search(question, language, passages_.size());
  std::vector<retrieval_hit> out;
  std::unordered_set<std::int64_t> seen;
  for (auto& h : all) {
    if (out.size() == k)
      break;
    if (seen.insert(passages_[h.passage].document_id).second)
      out.push_back(h);
  }
  return out;
}

double retrieval_index::confidence(std::string_view question,
                                   const retrieval_hit& best) const {
  auto query = query_terms(question);
  double ideal = 0;
  for (auto& [term, weight] : query)
    ideal += weight * idf(term) * (k1 + 1);
  if (ideal <= 0)
    return 0;
  return std::clamp(best.score / (ideal * language_bonus), 0.0, 1.0);
}

} // namespace karvon::actors
