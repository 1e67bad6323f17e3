// docs/openapi.yaml must list every route the server serves.
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/server/node_fixture.hpp"

namespace karvon::testing {
namespace {

// Paths and their methods from the `paths:` section: a path is a line of two
// spaces then "/...:", a method four spaces then "get:" and so on. Enough
// for the file as we write it, without a YAML library.
std::map<std::string, std::set<std::string>> documented_routes() {
  std::ifstream in{std::string{KARVON_SOURCE_DIR} + "/docs/openapi.yaml"};
  std::map<std::string, std::set<std::string>> out;
  std::string line;
  bool in_paths = false;
  std::string current;
  while (std::getline(in, line)) {
    if (line == "paths:") {
      in_paths = true;
      continue;
    }
    if (!in_paths)
      continue;
    if (!line.empty() && line[0] != ' ')
      break; // the next top-level section
    if (line.rfind("  /", 0) == 0 && line.back() == ':') {
      current = line.substr(2, line.size() - 3);
      out[current];
    } else if (line.rfind("    ", 0) == 0 && line[4] != ' '
               && line.back() == ':') {
      auto method = line.substr(4, line.size() - 5);
      for (auto& c : method)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      out[current].insert(method);
    }
  }
  return out;
}

using OpenApi = NodeTest;

TEST_F(OpenApi, documents_every_route_the_server_serves) {
  auto documented = documented_routes();
  ASSERT_FALSE(documented.empty()) << "could not read docs/openapi.yaml";
  auto served = node_->routes();
  ASSERT_FALSE(served.empty());
  for (auto& [method, path] : served)
    EXPECT_TRUE(documented[path].count(method))
        << method << " " << path << " is served but not in docs/openapi.yaml";
}

TEST_F(OpenApi, documents_no_route_the_server_does_not_serve) {
  std::set<std::pair<std::string, std::string>> served;
  for (auto& r : node_->routes())
    served.insert(r);
  for (auto& [path, methods] : documented_routes())
    for (auto& method : methods)
      EXPECT_TRUE(served.count({method, path}))
          << method << " " << path << " is documented but not served";
}

} // namespace
} // namespace karvon::testing
