#include "trust/credits.h"

#include <cmath>
#include <cstdio>

namespace swarm::trust {

Result<int64_t> to_micro(double credits, const std::string& what) {
  if (!std::isfinite(credits) || credits < 0 || credits > kMaxCredits) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", kMaxCredits);
    return Status::InvalidArgument(what + " must be a finite number of credits in [0, " + limit + "]");
  }
  return static_cast<int64_t>(std::llround(credits * static_cast<double>(kMicroPerCredit)));
}

double to_credits(int64_t micro) { return static_cast<double>(micro) / kMicroPerCredit; }

std::string format_credits(int64_t micro) {
  const bool negative = micro < 0;
  const uint64_t m = negative ? 0 - static_cast<uint64_t>(micro) : static_cast<uint64_t>(micro);
  std::string s = std::to_string(m / kMicroPerCredit);
  uint64_t frac = m % kMicroPerCredit;
  if (frac != 0) {
    char digits[8];
    std::snprintf(digits, sizeof digits, "%06llu", static_cast<unsigned long long>(frac));
    std::string f = digits;
    while (f.back() == '0') f.pop_back();
    s += "." + f;
  }
  return negative ? "-" + s : s;
}

namespace {

Status check_tokens(int64_t tokens) {
  if (tokens < 0 || tokens > kMaxChargedTokens)
    return Status::InvalidArgument("tokens " + std::to_string(tokens) + " out of [0, " +
                                   std::to_string(kMaxChargedTokens) + "]");
  return Status::Ok();
}

}  // namespace

Result<int64_t> work_credits(const NodeWork& work) {
  auto price = to_micro(work.price_per_1k, "price_per_1k of node " + work.node_id);
  if (!price.ok()) return price.status();
  SWARM_RETURN_IF_ERROR(check_tokens(work.tokens));
  const __int128 product = static_cast<__int128>(*price) * work.tokens;  // < 2^50 * 2^32
  return static_cast<int64_t>(product / 1000);
}

Result<int64_t> max_cost(double price_per_1k, int64_t tokens) {
  auto price = to_micro(price_per_1k, "the route's price_per_1k");
  if (!price.ok()) return price.status();
  SWARM_RETURN_IF_ERROR(check_tokens(tokens));
  const __int128 product = static_cast<__int128>(*price) * tokens;
  return static_cast<int64_t>((product + 999) / 1000);
}

}  // namespace swarm::trust
