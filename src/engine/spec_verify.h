// Judging drafted tokens against the target model, losslessly (speculative
// sampling, Leviathan et al. 2023 / Chen et al. 2023).
//
// A draft x at some position was drawn from the drafter's distribution q; the
// target's distribution there is p. Accepting x with probability
// min(1, p[x] / q[x]) and otherwise drawing from norm(max(0, p - q)) yields a
// token distributed exactly as p, whatever q was. A deterministic drafter (an
// n-gram lookup, a greedy draft model) has q one-hot at x: x is then accepted
// with probability p[x]. Greedy decoding needs none of this: a draft is
// accepted iff it is the argmax (Sampler::judge).
//
// Pure: the two uniform numbers come in as arguments, so tests can drive the
// function with any RNG and the sampler with its own seeded one.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/status.h"

namespace swarm {

// A sparse distribution over token ids: what the drafter drew a draft from.
// Entries need not sum to exactly 1 (they are renormalised); ids absent have
// probability 0. Empty: one-hot at the draft itself.
struct SparseProbs {
  std::vector<int32_t> ids;
  std::vector<float> probs;
};

struct Judgement {
  bool accepted = false;
  int32_t token = 0;  // the draft if accepted, else the replacement drawn from the residual
};

// `p`: the target's distribution over the whole vocabulary (sums to 1).
// `u_accept`, `u_resample`: independent uniforms in [0, 1).
Judgement judge_draft(const std::vector<float>& p, int32_t draft, const SparseProbs& q,
                      double u_accept, double u_resample);

// Checks a peer's q: ids within [0, n_vocab), one probability per id, each
// finite and >= 0, and a positive sum. InvalidArgument naming what is wrong.
Status validate_sparse_probs(const SparseProbs& q, int n_vocab);

}  // namespace swarm
