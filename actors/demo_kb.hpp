// The demo knowledge base (`karvon serve --demo`, and the retrieval quality
// test): a small online shop's policies, each topic in Uzbek (Latin), Russian
// and English.
#pragma once

#include <string>
#include <vector>

namespace karvon::actors {

struct demo_document {
  std::string topic; //!< "delivery", "payment", ...: the same in every language
  std::string language;
  std::string title;
  std::string content;
};

/// Every demo document, by topic and language.
const std::vector<demo_document>& demo_documents();

} // namespace karvon::actors
