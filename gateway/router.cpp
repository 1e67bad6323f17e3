#include "gateway/router.hpp"

#include <algorithm>
#include <deque>
#include <map>

namespace karvon::gateway {

namespace {

struct segment {
  std::string text;
  bool is_param = false; // "{name}": text holds the name
};

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/')
    return out;
  size_t start = 1;
  while (true) {
    auto slash = path.find('/', start);
    out.push_back(path.substr(start, slash == std::string_view::npos
                                         ? std::string_view::npos
                                         : slash - start));
    if (slash == std::string_view::npos)
      break;
    start = slash + 1;
  }
  return out;
}

} // namespace

struct router::impl {
  struct path_entry {
    std::string path; // the template, also the metrics label
    std::vector<segment> segments;
    int literals = 0;
    std::map<std::string, const route*, std::less<>> methods;
  };
  std::deque<route> storage; // stable addresses
  std::vector<path_entry> paths;
};

router::router() : impl_(std::make_unique<impl>()) {}
router::~router() = default;
router::router(router&&) noexcept = default;
router& router::operator=(router&&) noexcept = default;

void router::add(route r) {
  auto& paths = impl_->paths;
  auto entry = std::find_if(paths.begin(), paths.end(),
                            [&](auto& p) { return p.path == r.path; });
  if (entry == paths.end()) {
    impl::path_entry e;
    e.path = r.path;
    for (auto part : split_path(r.path)) {
      segment s;
      if (part.size() >= 2 && part.front() == '{' && part.back() == '}') {
        s.is_param = true;
        s.text = std::string{part.substr(1, part.size() - 2)};
      } else {
        s.text = std::string{part};
        ++e.literals;
      }
      e.segments.push_back(std::move(s));
    }
    paths.push_back(std::move(e));
    entry = std::prev(paths.end());
    // More literal segments first: "/admin/cluster" wins over "/admin/{x}".
    std::stable_sort(paths.begin(), paths.end(),
                     [](auto& a, auto& b) { return a.literals > b.literals; });
    entry = std::find_if(paths.begin(), paths.end(),
                         [&](auto& p) { return p.path == r.path; });
  }
  impl_->storage.push_back(std::move(r));
  auto& stored = impl_->storage.back();
  entry->methods[stored.method] = &stored;
}

route_match router::match(std::string_view method,
                          std::string_view path) const {
  route_match result;
  result.status = 404;
  auto parts = split_path(path);
  for (auto& entry : impl_->paths) {
    if (entry.segments.size() != parts.size())
      continue;
    header_list params;
    bool ok = true;
    for (size_t i = 0; i < parts.size() && ok; ++i) {
      auto& seg = entry.segments[i];
      if (seg.is_param) {
        auto decoded = percent_decode(parts[i], false);
        if (!decoded || decoded->empty())
          ok = false;
        else
          params.emplace_back(seg.text, std::move(*decoded));
      } else {
        ok = seg.text == parts[i];
      }
    }
    if (!ok)
      continue;
    result.route_label = entry.path;
    auto m = entry.methods.find(method);
    // HEAD is answered by the GET route without a body (RFC 9110 §9.3.2).
    if (m == entry.methods.end() && method == "HEAD")
      m = entry.methods.find("GET");
    if (m == entry.methods.end()) {
      result.status = 405;
      for (auto& [name, r] : entry.methods) {
        if (!result.allow.empty())
          result.allow += ", ";
        result.allow += name;
      }
      return result;
    }
    result.status = 200;
    result.found = m->second;
    result.params = std::move(params);
    return result;
  }
  return result;
}

std::vector<const route*> router::routes() const {
  std::vector<const route*> out;
  for (auto& r : impl_->storage)
    out.push_back(&r);
  return out;
}

} // namespace karvon::gateway
