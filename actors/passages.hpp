// Splitting a knowledge-base document into passages: the units retrieval
// ranks and the prompt quotes. Plain functions, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace karvon::actors {

/// Splits `text` (valid UTF-8) into passages of about `target` bytes:
/// paragraphs (blank-line separated) are packed together up to `target`; a
/// longer paragraph is cut at sentence ends (". ", "! ", "? ", "…", line
/// breaks), and a sentence longer than 2 x `target` at spaces, never inside
/// a character. Whitespace is trimmed; empty text gives no passage.
std::vector<std::string> split_passages(std::string_view text,
                                        std::size_t target = 700);

} // namespace karvon::actors
