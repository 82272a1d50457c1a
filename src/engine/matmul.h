// Matrix x quantized matrix, the engine's hot loop.
//
// Contract (the engine's determinism rests on it): every output element is
// computed by one fixed sequence of operations that depends only on its weight row
// and its activation row. So y[t] is bit-for-bit the same whether x[t] arrives
// alone (decode), in a batch with other rows (prefill, several sequences), or in
// chunks of any size; and whatever the number of threads. The sequence is the same
// on every instruction set (portable, AVX2, AVX-512), so results are bit-identical
// across machines too; matmul_internal.h spells it out.
#pragma once

#include <cstdint>

#include "engine/tensor_types.h"
#include "engine/thread_pool.h"

namespace swarm {

// A weight matrix as the file stores it: `rows` rows of `cols` elements of `type`,
// each row `row_size(type, cols)` bytes, rows contiguous.
struct WeightMatrix {
  TensorType type = TensorType::F32;
  int64_t cols = 0;  // input features (GGUF ne[0])
  int64_t rows = 0;  // output features (GGUF ne[1])
  const void* data = nullptr;
};

// y[t * rows + r] = sum_k W[r][k] * x[t * cols + k], for t < n_tokens, r < W.rows.
// `x` is float32 [n_tokens, cols]; `y` is float32 [n_tokens, rows] and must not alias x.
// Activations are converted to the type the weight type pairs with (Q8_0 blocks for
// Q8_0/Q4_0, Q8_K for K-quants, F16 for F16) as fast engines do.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

// Several matrices applied to the same x (a layer's q, k and v) in one parallel
// section: ys[i] = ws[i] x, each value exactly what matmul() gives. Matrices whose
// activations differ (columns, or a type that pairs with another format) take one
// matmul() each.
void matmul_group(const WeightMatrix* const* ws, float* const* ys, int count, const float* x,
                  int64_t n_tokens, ThreadPool& pool);

// The feed-forward block's first half: g = silu(gate x) * (up x), with `u` left
// holding up x. Gate and up go through x in one parallel section (one hand-off
// between threads instead of three, and x quantized once); each row's value is
// exactly what two matmul() calls and silu_mul() give. Matrices of different
// types or shapes take those three calls.
void swiglu(const WeightMatrix& gate, const WeightMatrix& up, const float* x, int64_t n_tokens,
            float* g, float* u, ThreadPool& pool);

// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i], element-wise
// (out may be gate), with the exponential every ISA computes the same way
// (exp_canonical in matmul_internal.h).
void silu_mul(const float* gate, const float* up, int64_t count, float* out);

// Attention of one query head over `len` cached positions: key p at k + p * stride,
// value p at v + p * stride, `head_dim` floats each. Canonical on every ISA:
//   s_p = scale * tree16(lanes), lane l: a_l = fma(q[i], k_p[i], a_l) for i = l mod 16
//         in order (zero past head_dim; the tree as matmul's float kernels);
//   m = max_p s_p; e_p = exp_canonical(s_p - m); sum = e_0 + e_1 + ... in order;
//   w_p = e_p * (1 / sum); out[d] = fma(w_p, v_p[d], out[d]) for p in order, from 0.
// `scores` is scratch for `len` floats.
void attend_head(const float* q, const float* k, const float* v, int64_t stride, int len,
                 int head_dim, float scale, float* scores, float* out);

// Which instruction set the kernels dispatched to ("avx2", "avx512", "portable").
const char* matmul_isa();

}  // namespace swarm
