// Scalar reference conversions between float32 and every weight type the engine
// computes with. These define what a type *means*; the SIMD kernels in matmul.cc
// must agree with them, and the tests hold them to it.
#pragma once

#include <cstdint>

#include "engine/tensor_types.h"

namespace swarm {

// Expands `n` elements (a multiple of the type's block size) of type `t` at `src`
// into float32 at `dst`. Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K,
// and Q8_K. Returns false (writing nothing) for other types, for `n` that is not a
// whole number of blocks, and for null pointers with `n > 0`.
bool dequantize_row(TensorType t, const void* src, float* dst, int64_t n);

// Packs `n` floats (a multiple of the block size) into `row_size(t, n)` bytes at
// `dst`, choosing scales the way llama.cpp's reference quantizers do, so files we
// write hold what other GGUF tools would have written. Same types as above (Q8_K
// is for activations). Returns false in the same cases as dequantize_row. Only
// the imatrix-free path exists: importance weights are not taken.
bool quantize_row(TensorType t, const float* src, void* dst, int64_t n);

}  // namespace swarm
