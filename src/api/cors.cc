#include "api/cors.h"

#include <algorithm>
#include <cctype>

namespace swarm {
namespace {

constexpr const char* kApiHeaders = "Content-Type, Authorization";
constexpr size_t kMaxRequestedHeaders = 4096;

// An HTTP token character (RFC 9110's tchar).
bool token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

}  // namespace

bool cors_allowed(const std::vector<std::string>& allowed, const std::string& origin) {
  if (allowed.empty()) return true;
  return std::any_of(allowed.begin(), allowed.end(),
                     [&](const std::string& a) { return a == "*" || a == origin; });
}

std::string preflight_allowed_headers(const std::string& requested) {
  if (requested.empty() || requested.size() > kMaxRequestedHeaders) return kApiHeaders;
  for (char c : requested)
    if (!token_char(c) && c != ',' && c != ' ' && c != '\t') return kApiHeaders;
  return requested;
}

std::vector<std::string> split_origins(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    std::string o = trim(list.substr(start, comma - start));
    if (!o.empty()) out.push_back(std::move(o));
    start = comma + 1;
  }
  return out;
}

}  // namespace swarm
