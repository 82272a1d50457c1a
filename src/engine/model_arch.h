// What each supported architecture requires of a model's tensors: which exist,
// their shapes, and their types. Checked once at load, for every layer, so a bad
// file fails with the tensor's name before any math runs.
#pragma once

#include "engine/model_source.h"
#include "engine/status.h"

namespace swarm {

// Checks hyper-parameters for consistency and every tensor the architecture
// needs for presence, shape and a usable type. Errors name the file and tensor.
Status check_model_tensors(const ModelSource& src);

// Per-dimension RoPE inverse frequencies (rope_dim / 2 of them) for configs whose
// scaling is computed rather than stored (none, linear, llama3 from parameters).
std::vector<double> rope_inv_freq(const ModelConfig& c);

}  // namespace swarm
