#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace swarm {

TokenLogprob token_logprob(const float* logits, int n_vocab, int32_t token, int top) {
  TokenLogprob out;
  out.token = token;
  if (n_vocab <= 0) return out;
  // log softmax: x - (max + log sum exp(x - max)), in double so that the sum
  // over a large vocabulary loses nothing that shows in a float.
  const float max = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  const double log_z = static_cast<double>(max) + std::log(sum);
  auto lp = [&](int32_t id) { return static_cast<float>(static_cast<double>(logits[id]) - log_z); };
  if (token >= 0 && token < n_vocab) out.logprob = lp(token);
  top = std::clamp(top, 0, std::min(kMaxTopLogprobs, n_vocab));
  if (top == 0) return out;
  std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + top, ids.end(), [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < top; ++i) out.top.emplace_back(ids[i], lp(ids[i]));
  return out;
}

}  // namespace swarm
