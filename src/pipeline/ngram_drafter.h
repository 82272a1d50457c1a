// Prompt lookup decoding: the drafts are what followed the last occurrence of
// the context's final n-gram earlier in the context. Free (no model), and
// right surprisingly often where the output repeats its input: code editing,
// summaries quoting their source, structured text.
#pragma once

#include "pipeline/drafter.h"

namespace swarm {

class NgramDrafter : public Drafter {
 public:
  // Tries the longest suffix first, from max_ngram down to min_ngram tokens.
  explicit NgramDrafter(int max_ngram = 4, int min_ngram = 1);

  // Deterministic (probs empty): one token at a time, each the one that
  // followed the latest earlier occurrence of the longest matching suffix of
  // the context extended by the tokens already proposed.
  Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) override;
  std::string name() const override { return "ngram"; }

 private:
  int max_ngram_, min_ngram_;
};

// The token that followed the latest earlier occurrence of `seq`'s last g
// tokens (g from max_ngram down to min_ngram), or -1. Pure, for tests.
int32_t ngram_lookup(const std::vector<int32_t>& seq, int max_ngram, int min_ngram);

}  // namespace swarm
