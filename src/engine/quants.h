// Scalar reference conversions between float32 and every weight type the engine
// computes with. These define what a type *means*; the SIMD kernels in matmul.cc
// must agree with them, and the tests hold them to it.
#pragma once

#include <cstdint>

#include "engine/tensor_types.h"

namespace swarm {

// Expands `n` elements (a multiple of the type's block size) of type `t` at `src`
// into float32 at `dst`. Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
// Returns false (writing nothing) for other types.
bool dequantize_row(TensorType t, const void* src, float* dst, int64_t n);

// Packs `n` floats (a multiple of the block size) into `row_size(t, n)` bytes at
// `dst`, choosing scales the way llama.cpp's reference quantizers do, so files we
// write hold what other GGUF tools would have written. Same types as above, plus
// Q8_K (activations). Returns false for other types.
bool quantize_row(TensorType t, const float* src, void* dst, int64_t n);

}  // namespace swarm
