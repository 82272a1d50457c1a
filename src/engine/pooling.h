// Sentence embeddings from a model's final hidden states: the mean of a
// sequence's rows (after the final norm), scaled to unit L2 norm, as
// OpenAI-style embedding endpoints return them (cosine similarity is then a
// dot product).
#pragma once

#include <cstdint>
#include <vector>

namespace swarm {

// rows[n, d] -> their mean, L2-normalised (summed in double, in row order, so
// the same rows always give the same vector). n >= 1; an all-zero mean stays
// zero.
std::vector<float> mean_pool_normalized(const float* rows, int64_t n, int d);

}  // namespace swarm
