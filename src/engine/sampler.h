// Choosing the next token from a row of logits, and knowing when to stop.
//
// One Sampler serves `swarm generate` and, later, the last pipeline stage on behalf
// of the gateway. It is a pure function of the logits, the tokens it was told about
// (accept) and its own seeded RNG: no clocks, no I/O, no global state. Two samplers
// built from the same parameters and fed the same logits and tokens choose the same
// tokens on any machine (the RNG and the draw are specified here, not left to the
// standard library's distributions).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/spec_verify.h"
#include "engine/status.h"

namespace swarm {

// Defaults are llama.cpp's (common_params_sampling), so `swarm generate` behaves like
// llama-cli given the same flags.
struct SamplingParams {
  float temperature = 0.8f;        // <= 0: greedy (argmax after bias and penalties)
  int top_k = 40;                  // keep the k most likely; <= 0: off
  float top_p = 0.95f;             // keep the smallest set whose probability reaches p; >= 1: off
  float min_p = 0.05f;             // drop tokens below min_p x the top probability; <= 0: off
  float repeat_penalty = 1.0f;     // llama.cpp's: positive logits / r, negative x r; 1: off
  int repeat_last_n = 64;          // tokens of history the penalties look at; 0: off, -1: all
  float presence_penalty = 0.0f;   // OpenAI's: minus this once if the token occurred
  float frequency_penalty = 0.0f;  // OpenAI's: minus this times its count
  // Added to a token's logit before anything else; -INFINITY bans the token.
  std::vector<std::pair<int32_t, float>> logit_bias;
  // The sampler never seeds itself from a clock: a caller offering llama.cpp's
  // `--seed -1` (random) draws a seed and passes it, and reports it for replay.
  uint64_t seed = 0;
  std::vector<std::string> stop;     // stop strings, matched on the decoded text (StopMatcher)
  std::vector<int32_t> stop_tokens;  // e.g. the model's EOS/EOT, put here by the caller
  int max_tokens = -1;               // tokens to generate at most; -1: no limit

  // Checks every field against its range and every token id against n_vocab; the
  // gateway turns a failure into a 400 naming the field.
  Status validate(int n_vocab) const;
};

class Sampler {
 public:
  // `params` should have passed validate(n_vocab); out-of-range bias entries are
  // ignored otherwise.
  Sampler(SamplingParams params, int n_vocab);

  // A copy is a fork: same history, same RNG state, so it chooses what the original
  // would (speculative decoding and replay can rely on that).
  Sampler(const Sampler&) = default;
  Sampler& operator=(const Sampler&) = default;

  const SamplingParams& params() const { return params_; }
  int n_vocab() const { return n_vocab_; }

  // Chooses a token from `logits` (n_vocab of them), in llama.cpp's order: logit
  // bias, penalties, then argmax if temperature <= 0, else top-k, top-p, min-p,
  // temperature, softmax and one draw. Greedy consumes no randomness; any other
  // choice consumes exactly one 64-bit draw, so replaying the same calls replays
  // the same tokens. Does not record the token: call accept() for that.
  int32_t sample(const float* logits);

  // The distribution sample() draws from, over the whole vocabulary (zeros for
  // filtered tokens; one-hot at the argmax when greedy). Consumes no randomness.
  std::vector<float> probabilities(const float* logits) const;

  // `logits` after logit bias and penalties: what greedy takes the argmax of and
  // the filters start from.
  std::vector<float> adjusted_logits(const float* logits) const;

  // Judges a drafted token at a position whose target logits are `logits`
  // (engine/spec_verify.h). Greedy: accepted iff it is what sample() would
  // choose, else that token; consumes no randomness, so greedy speculation
  // yields exactly what plain decoding does. Otherwise speculative sampling
  // against probabilities(logits), consuming two draws. Does not record the
  // token: call accept() for that.
  Judgement judge(const float* logits, int32_t draft, const SparseProbs& q);

  // Records a token (prompt or generated) in the history the penalties look at.
  void accept(int32_t token);
  // Forgets the history and restarts the RNG from the seed.
  void reset();

  bool is_stop_token(int32_t token) const;
  // True once `n_generated` reaches max_tokens (never when max_tokens < 0).
  bool reached_max_tokens(int n_generated) const {
    return params_.max_tokens >= 0 && n_generated >= params_.max_tokens;
  }

 private:
  struct Candidate {
    float logit;
    int32_t id;
    double p;  // probability after the last softmax
  };
  // The final candidates with their probabilities (summing to 1), most likely first;
  // empty when greedy.
  std::vector<Candidate> distribution(const std::vector<float>& adjusted) const;
  static int32_t argmax(const std::vector<float>& v);
  double uniform();  // one 64-bit draw as a double in [0, 1)

  SamplingParams params_;
  int n_vocab_;
  std::vector<int32_t> history_;  // the last repeat_last_n accepted tokens (all if -1)
  std::mt19937_64 rng_;
};

// Stop strings over a stream of decoded text. Text is pushed as it is produced; what
// comes back is safe to show now. A suffix that could be the start of a stop string
// is held back until the next pieces settle it, as is the unfinished tail of a UTF-8
// character. When a stop string completes, the text before it is released, the stop
// string and anything after it are dropped, and stopped() turns true.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);  // empty strings are ignored

  // Appends `piece` and returns the text that can be emitted now ("" after a stop).
  std::string push(std::string_view piece);
  // The end of generation (stop token, max tokens): returns whatever was held back.
  std::string flush();

  bool stopped() const { return stopped_; }
  // The stop string that matched ("" if none).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace swarm
