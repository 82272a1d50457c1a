// Choosing the next token from a row of logits, and knowing when to stop.
//
// One Sampler serves `swarm generate`, `swarm serve` and the last pipeline stage on
// behalf of the gateway. It is a pure function of the logits, the tokens it was told
// about (accept), the seed and the position of the token it chooses: no clocks, no
// I/O, no global state, and no RNG state either. Its randomness is counter-based
// (sampling_uniform): the draws for position p are a hash of (seed, p, draw), so a
// choice does not depend on how many draws came before it. Two samplers built from
// the same parameters and fed the same logits and tokens choose the same tokens on
// any machine, and a run that was drawn from and then cancelled (speculation) leaves
// no trace: an auditor replays any position's choice from the seed alone
// (doc/trust.md, "Audits").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/grammar.h"
#include "engine/grammar_matcher.h"
#include "engine/grammar_vocab.h"
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
  // Structured output: a GBNF grammar (engine/grammar.h) the generated text must
  // match; "" for none. Tokens it rejects are masked before the filters, as if
  // their logits were -inf; a stop token is allowed only once the text is a
  // complete match, and once nothing more can follow, only stop tokens are.
  std::string grammar;
  // The grammar constrains the tokens after the first grammar_start accepted
  // ones (the prompt's): the sampler counts accept() calls.
  int grammar_start = 0;

  // Checks every field against its range and every token id against n_vocab; the
  // gateway turns a failure into a 400 naming the field.
  Status validate(int n_vocab) const;
};

// The draws of a sampler: a uniform double in [0, 1) that is a pure function of
// (seed, position, draw), the same on every platform. sample() uses draw 0 of the
// position it chooses; judge() uses draws 1 (accept) and 2 (resample).
double sampling_uniform(uint64_t seed, int position, int draw);

class Sampler {
 public:
  // `params` should have passed validate(n_vocab); out-of-range bias entries are
  // ignored otherwise. A grammar needs `vocab` (the model's token bytes);
  // grammar_status() says whether it compiled.
  Sampler(SamplingParams params, int n_vocab, std::shared_ptr<const GrammarVocab> vocab = nullptr);

  // A copy is a fork: same history, so it chooses what the original would
  // (speculative decoding and replay can rely on that).
  Sampler(const Sampler&) = default;
  Sampler& operator=(const Sampler&) = default;

  const SamplingParams& params() const { return params_; }
  int n_vocab() const { return n_vocab_; }

  // Chooses the token at sequence position `position` (0-based: the prompt's
  // first token is at 0) from `logits` (n_vocab of them, the row of the position
  // before), in llama.cpp's order: logit bias, penalties, then argmax if
  // temperature <= 0, else top-k, top-p, min-p, temperature, softmax and one
  // draw, sampling_uniform(seed, position, 0). The same history, logits and
  // position give the same token however often it is asked. Does not record
  // the token: call accept() for that.
  int32_t sample(const float* logits, int position);

  // The distribution sample() draws from, over the whole vocabulary (zeros for
  // filtered tokens; one-hot at the argmax when greedy). Consumes no randomness.
  std::vector<float> probabilities(const float* logits) const;

  // `logits` after logit bias and penalties: what greedy takes the argmax of and
  // the filters start from.
  std::vector<float> adjusted_logits(const float* logits) const;

  // Judges a drafted token for sequence position `position` whose target
  // logits are `logits` (engine/spec_verify.h). Greedy: accepted iff it is
  // what sample() would choose, else that token, so greedy speculation yields
  // exactly what plain decoding does. Otherwise speculative sampling against
  // probabilities(logits) with draws 1 and 2 of the position. Does not record
  // the token: call accept() for that.
  Judgement judge(const float* logits, int32_t draft, const SparseProbs& q, int position);

  // Records a token (prompt or generated) in the history the penalties look at.
  void accept(int32_t token);
  // Forgets the history.
  void reset();

  bool is_stop_token(int32_t token) const;

  // Ok without a grammar or with one that compiled against a vocabulary.
  const Status& grammar_status() const { return grammar_status_; }
  // Whether the grammar now constrains the next choice.
  bool constrained() const;
  // Constrained, and the text so far admits nothing more (a finished match, or
  // a forced token it rejected): only stop tokens can follow.
  bool grammar_finished() const;
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
  // The greedy choice: the argmax, among the tokens the grammar allows.
  int32_t greedy(const std::vector<float>& adjusted) const;
  // Whether the grammar lets `token` come next (constrained() assumed).
  bool grammar_allows(int32_t token) const;
  // `c`'s tokens the grammar allows, most likely first, only as many as the
  // filters can keep: checked in order of probability, so the usual case
  // (the likeliest tokens fit) costs a few checks, not the whole vocabulary.
  std::vector<Candidate> allowed_in_order(std::vector<Candidate> c) const;
  // What to choose when the grammar allows nothing: a stop token if there is one.
  int32_t no_allowed_token(const std::vector<float>& adjusted) const;

  SamplingParams params_;
  int n_vocab_;
  std::vector<int32_t> history_;  // the last repeat_last_n accepted tokens (all if -1)

  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const GrammarVocab> vocab_;
  Status grammar_status_;
  GrammarState grammar_state_;
  bool grammar_dead_ = false;  // a token the grammar rejects was accepted
  int accepted_ = 0;           // accept() calls since construction or reset()
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
