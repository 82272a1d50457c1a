// Credits as integers: the ledger counts micro-credits (1 credit = 1,000,000)
// in int64, so sums and the conservation check are exact. Prices arrive as
// numbers (credits per 1,000 tokens, as nodes announce them) and become integers
// here, once, with the rounding stated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/status.h"
#include "trust/node_work.h"

namespace swarm::trust {

inline constexpr int64_t kMicroPerCredit = 1'000'000;
// No balance, grant or price goes above this many credits: sums of many stay
// far from int64's end.
inline constexpr double kMaxCredits = 1e12;
// Tokens one request may be charged for, at most (a bound, not a policy).
inline constexpr int64_t kMaxChargedTokens = int64_t{1} << 32;

// `credits` (finite, in [0, kMaxCredits]) in micro-credits, rounded to nearest;
// InvalidArgument naming `what` otherwise.
Result<int64_t> to_micro(double credits, const std::string& what);
// Micro-credits as credits, for JSON and display.
double to_credits(int64_t micro);
// "12.5", "0.000001": exact decimal text of a micro-credit amount.
std::string format_credits(int64_t micro);

// What one node earns for `work`: price * tokens / 1000, rounded down to the
// micro-credit (the requester never pays a fraction the node did not earn).
Result<int64_t> work_credits(const NodeWork& work);
// The most a request of `tokens` token positions may cost on a route whose
// stages' prices add up to `price_per_1k`: rounded up, so the per-node credits
// of any split of the same tokens over the same stages never exceed it.
Result<int64_t> max_cost(double price_per_1k, int64_t tokens);

}  // namespace swarm::trust
