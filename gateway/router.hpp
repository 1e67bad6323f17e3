// The route table: templates with {name} segments, matched segment by
// segment. One table serves every route, so 404, 405 and the Allow header
// are decided in one place.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/http.hpp"

namespace karvon::gateway {

struct route_match {
  const route* found = nullptr; //!< null: see status
  int status = 200;             //!< 404 no such path, 405 wrong method
  std::string allow;            //!< for 405: "GET, POST"
  header_list params;           //!< decoded {name} values
  /// The template of the path when the path is known (also for 405), for
  /// metrics labels; "unmatched" when it is not.
  std::string_view route_label = "unmatched";
};

class router {
public:
  router();
  ~router();
  router(router&&) noexcept;
  router& operator=(router&&) noexcept;

  /// Adds a route. A second route with the same method and template
  /// replaces the first. Call before the server starts; not thread-safe.
  void add(route r);

  /// Finds the route for a decoded-later path ("/api/v1/kb/documents/7").
  /// Thread-safe once the table is built.
  route_match match(std::string_view method, std::string_view path) const;

  /// Every route, in the order added.
  std::vector<const route*> routes() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace karvon::gateway
