#include "actors/passages.hpp"

#include <utility>

namespace karvon::actors {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
         || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

// Paragraphs: runs of text separated by a line that is blank.
std::vector<std::string_view> paragraphs(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0, pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos)
      break;
    // A blank line follows this one?
    auto next = nl + 1;
    auto probe = next;
    while (
        probe < text.size()
        && (text[probe] == ' ' || text[probe] == '\t' || text[probe] == '\r'))
      ++probe;
    if (probe < text.size() && text[probe] == '\n') {
      if (auto p = trim(text.substr(start, nl - start)); !p.empty())
        out.push_back(p);
      start = probe + 1;
      pos = start;
    } else {
      pos = next;
    }
  }
  if (start < text.size())
    if (auto p = trim(text.substr(start)); !p.empty())
      out.push_back(p);
  return out;
}

// Sentences: cut after ". ", "! ", "? ", "…" and line breaks.
std::vector<std::string_view> sentences(std::string_view p) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    std::size_t end = std::string_view::npos;
    char c = p[i];
    if ((c == '.' || c == '!' || c == '?') && i + 1 < p.size()
        && is_space(p[i + 1]))
      end = i + 1;
    else if (c == '\n')
      end = i + 1;
    else if (p.substr(i, 3) == "\xE2\x80\xA6") // …
      end = i + 3;
    if (end != std::string_view::npos) {
      if (auto s = trim(p.substr(start, end - start)); !s.empty())
        out.push_back(s);
      start = end;
      i = end - 1;
    }
  }
  if (auto s = trim(p.substr(start)); !s.empty())
    out.push_back(s);
  return out;
}

// A piece of at most `limit` bytes ending at a space (or at a character
// boundary when there is none).
std::vector<std::string_view> at_spaces(std::string_view s, std::size_t limit) {
  std::vector<std::string_view> out;
  while (s.size() > limit) {
    auto cut = s.rfind(' ', limit);
    if (cut == std::string_view::npos || cut == 0) {
      cut = limit;
      // Back off continuation bytes (10xxxxxx) so no character is split.
      while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
        --cut;
      if (cut == 0)
        cut = limit;
    }
    if (auto piece = trim(s.substr(0, cut)); !piece.empty())
      out.push_back(piece);
    s = trim(s.substr(cut));
  }
  if (!s.empty())
    out.push_back(s);
  return out;
}

} // namespace

std::vector<std::string> split_passages(std::string_view text,
                                        std::size_t target) {
  if (target == 0)
    target = 1;
  // Units no longer than 2 x target, in order, each marked when it starts
  // a paragraph.
  std::vector<std::pair<std::string_view, bool>> units;
  for (auto p : paragraphs(text)) {
    if (p.size() <= target) {
      units.emplace_back(p, true);
      continue;
    }
    bool first = true;
    for (auto s : sentences(p))
      for (auto piece : at_spaces(s, 2 * target)) {
        units.emplace_back(piece, first);
        first = false;
      }
  }
  // Packed into passages up to target; a unit is never split across two.
  // Paragraphs stay on lines of their own, sentences join with a space.
  std::vector<std::string> out;
  std::string current;
  for (auto& [u, starts_paragraph] : units) {
    if (!current.empty() && current.size() + 1 + u.size() > target) {
      out.push_back(std::move(current));
      current.clear();
    }
    if (!current.empty())
      current += starts_paragraph ? '\n' : ' ';
    current.append(u);
  }
  if (!current.empty())
    out.push_back(std::move(current));
  return out;
}

} // namespace karvon::actors
