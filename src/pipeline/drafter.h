// Where speculative tokens come from. A drafter guesses the tokens that follow
// a context; the last stage verifies the guesses (engine/spec_verify.h), so a
// bad guess costs stage time, never correctness. Two sources:
// NgramDrafter (prompt lookup, no model) and ModelDrafter (a small model with
// the target's vocabulary, run by the gateway).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/spec_verify.h"
#include "engine/status.h"

namespace swarm {

struct DraftProposal {
  std::vector<int32_t> tokens;
  // For each token, the distribution it was drawn from, for speculative
  // sampling. Empty (or an empty entry): chosen deterministically (q one-hot).
  std::vector<SparseProbs> probs;
};

// One drafter per generation: it may keep state about the context (a draft
// model's KV cache). Not thread-safe.
class Drafter {
 public:
  virtual ~Drafter() = default;
  // Up to `n` tokens guessed to follow `context` (every token so far: the
  // prompt, the accepted tokens and the drafts already in flight). Fewer, or
  // none, when the drafter has no guess.
  virtual Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) = 0;
  virtual std::string name() const = 0;
};

}  // namespace swarm
