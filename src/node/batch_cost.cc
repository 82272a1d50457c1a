#include "node/batch_cost.h"

#include <algorithm>
#include <limits>

namespace swarm::node {

void BatchCost::Average::add(int t, double s) {
  if (!seen) {
    tokens = t, seconds = s, seen = true;
    return;
  }
  tokens = 0.8 * tokens + 0.2 * t;
  seconds = 0.8 * seconds + 0.2 * s;
}

void BatchCost::ran(int tokens, double seconds) {
  if (tokens <= 0 || !(seconds > 0)) return;
  if (tokens <= kDecodeSized) decode_.add(tokens, seconds);
  if (tokens >= kPromptSized) prompt_.add(tokens, seconds);
}

int BatchCost::chunk_beside_others() const {
  if (!prompt_.seen) return 0;
  double per_token = prompt_.seconds / prompt_.tokens;
  double allowance = kAddedSeconds;
  if (decode_.seen) {
    per_token = (prompt_.seconds - decode_.seconds) / (prompt_.tokens - decode_.tokens);
    allowance = std::max(kAddedSeconds, kAddedShare * decode_.seconds);
  }
  // A flat (or noisy, falling) t(b): any chunk costs about nothing more.
  if (!(per_token > 0)) return std::numeric_limits<int>::max();
  const double chunk = allowance / per_token;
  if (chunk >= std::numeric_limits<int>::max()) return std::numeric_limits<int>::max();
  return std::max(kMinChunk, static_cast<int>(chunk));
}

}  // namespace swarm::node
