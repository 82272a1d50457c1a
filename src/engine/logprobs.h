// Log-probabilities of tokens, as OpenAI's `logprobs` and llama-server's
// `n_probs` report them. Always the log-softmax of the model's raw logits:
// before logit bias, penalties, temperature and the top-k/top-p/min-p filters,
// as vLLM reports them by default. So a token's logprob is a property of the
// model and the text, the same whatever the request's sampling settings, and
// evaluation harnesses can score text with it (doc/http-api.md, "Logprobs").
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace swarm {

// The most alternatives a request may ask for at each position (OpenAI's
// top_logprobs limit).
inline constexpr int kMaxTopLogprobs = 20;

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
  // The `top` most likely tokens at the position, most likely first (ties:
  // the lower id first), with their logprobs.
  std::vector<std::pair<int32_t, float>> top;
};

// `token`'s logprob in the row `logits` (n_vocab of them) and the `top` most
// likely (0 to kMaxTopLogprobs; clamped). Sums in double; deterministic.
TokenLogprob token_logprob(const float* logits, int n_vocab, int32_t token, int top);

}  // namespace swarm
