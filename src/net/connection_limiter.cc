#include "net/connection_limiter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>

namespace swarm::net {

std::string ConnectionLimiter::canonical(std::string_view host) {
  const std::string text(host);
  in6_addr a6{};
  if (host.find(':') == std::string_view::npos || inet_pton(AF_INET6, text.c_str(), &a6) != 1)
    return text;
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char out[INET6_ADDRSTRLEN];
  if (std::equal(kMapped, kMapped + 12, a6.s6_addr))
    inet_ntop(AF_INET, a6.s6_addr + 12, out, sizeof out);
  else
    inet_ntop(AF_INET6, &a6, out, sizeof out);
  return out;
}

std::string ConnectionLimiter::bucket_of(std::string_view host) {
  const std::string c = canonical(host);
  in6_addr a6{};
  if (c.find(':') == std::string::npos || inet_pton(AF_INET6, c.c_str(), &a6) != 1) return c;
  std::fill(a6.s6_addr + 8, a6.s6_addr + 16, 0);
  char v6[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &a6, v6, sizeof v6);
  return std::string(v6) + "/64";
}

double ConnectionLimiter::level(const Bucket& b, Clock::time_point now) const {
  const double elapsed = std::chrono::duration<double>(now - b.updated).count();
  return std::min(limits_.burst, b.tokens + std::max(0.0, elapsed) * limits_.per_second);
}

void ConnectionLimiter::make_room(Clock::time_point now) {
  if (buckets_.size() < limits_.max_addresses) return;
  std::erase_if(buckets_, [&](const auto& kv) { return level(kv.second, now) >= limits_.burst; });
  while (!buckets_.empty() && buckets_.size() >= limits_.max_addresses) buckets_.erase(buckets_.begin());
}

bool ConnectionLimiter::admit(std::string_view host, Clock::time_point now) {
  if (std::find(limits_.exempt.begin(), limits_.exempt.end(), canonical(host)) != limits_.exempt.end())
    return true;
  std::string key = bucket_of(host);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    make_room(now);
    it = buckets_.emplace(std::move(key), Bucket{limits_.burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = level(b, now);
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  // Knocking while refused costs a token too (into debt, down to one burst):
  // an address that retries at once and without end stays refused, one that
  // backs off gets back in once the refill has paid its debt.
  b.tokens = std::max(-limits_.burst, b.tokens - 1);
  return false;
}

std::string ConnectionLimiter::refusal(std::string_view host) const {
  char rate[64];
  std::snprintf(rate, sizeof rate, "%g a second (bursts of %g)", limits_.per_second, limits_.burst);
  return "too many new connections from " + bucket_of(host) + ": at most " + rate +
         "; keep a connection open for many calls, or try again later";
}

}  // namespace swarm::net
