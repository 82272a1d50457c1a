// Internals of matmul(): the activation formats, the per-ISA kernel table, and the
// one sequence of floating-point operations every kernel must follow.
//
// The canonical sequence (what "deterministic" means here). Every output element
// y[t][r] is computed as follows, on every ISA, for every batch size and thread count:
//
// Float weights (F32, F16, BF16). Weights are widened to float32 (exact); x stays
// float32. Sixteen accumulators a[0..15] start at +0; element i does
//   a[i % 16] = fma(w[i], x[i], a[i % 16])
// for i in [0, round_up(cols, 16)), with w = x = 0 past cols. Then a tree:
//   for s in 8, 4, 2, 1: a[j] = a[j] + a[j + s] for j < s;  y = a[0].
//
// Quantized weights. Activations are quantized per block (Q8_0 blocks of 32 for
// Q8_0/Q4_0 weights, Q8_K blocks of 256 for K-quants): amax = max|x|, d = amax / 127,
// id = d != 0 ? 1 / d : 0, q = clamp(round_half_even(x * id), -127, 127), d kept as
// float32. Each block's integer dot product is exact (int32), so SIMD kernels may
// sum it in any order. One accumulator acc = +0, then for each block b in order:
//   Q8_0, Q4_0: acc = fma(dw_b * dx_b, float(isum_b), acc)
//     isum_b = sum (w_i) x_i, w_i = qs_i (Q8_0) or nibble_i - 8 (Q4_0)
//   Q4_K, Q5_K: acc = fma(dx_b * d_b, float(isum1_b), acc);
//               acc = fma(-(dx_b * dmin_b), float(isum2_b), acc)
//     isum1_b = sum_j sc_j * sum_{i in sub-block j} q_i x_i, isum2_b = sum_j m_j * sum_{i in j} x_i
//   Q6_K:       acc = fma(dx_b * d_b, float(isum_b), acc)
//     isum_b = sum_g sc_g * sum_{i in group g} (q_i - 32) x_i
// y = acc. dw, d, dmin are the fp16 fields widened to float32; products are float32.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/matmul.h"

namespace swarm::mm {

// Which activation format a weight type pairs with.
enum class ActKind { kF32, kQ8_0, kQ8_K };
ActKind act_kind(TensorType t);

// Byte layout of one quantized activation row (one token). Offsets are from the
// row start; every array is 64-byte aligned, and `stride` is a multiple of 64.
//   kQ8_0: int8 qs[cols]; float d[nb]; int32 sum[nb]                (nb = cols / 32)
//   kQ8_K: int8 qs[cols]; float d[nb]; int16 bsums[nb * 16];
//          int16 sums32[nb * 8] (sum of each 32-group, for the K-quant mins) (nb = cols / 256)
struct ActLayout {
  size_t qs = 0, d = 0, sums = 0, sums32 = 0, stride = 0;
};
ActLayout act_layout(ActKind kind, int64_t cols);

// A batch of activation rows ready for a kernel. For kF32, `base` is x itself
// and `stride` is cols * 4.
struct Acts {
  ActKind kind = ActKind::kF32;
  ActLayout layout;
  const uint8_t* base = nullptr;
  size_t stride = 0;
  int64_t cols = 0;

  const int8_t* qs(int64_t t) const {
    return reinterpret_cast<const int8_t*>(base + t * stride + layout.qs);
  }
  const float* d(int64_t t) const {
    return reinterpret_cast<const float*>(base + t * stride + layout.d);
  }
  const int32_t* sums(int64_t t) const {
    return reinterpret_cast<const int32_t*>(base + t * stride + layout.sums);
  }
  const int16_t* bsums(int64_t t) const {
    return reinterpret_cast<const int16_t*>(base + t * stride + layout.sums);
  }
  const int16_t* sums32(int64_t t) const {
    return reinterpret_cast<const int16_t*>(base + t * stride + layout.sums32);
  }
  const float* f32(int64_t t) const { return reinterpret_cast<const float*>(base + t * stride); }
};

// Computes y[t * ldy + r] for r in [r0, r1), t in [0, n_tokens). Rows are split
// between threads by the caller; a kernel never splits the reduction over cols.
using KernelFn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a,
                          int64_t n_tokens, float* y, int64_t ldy);
// One query head's attention over `len` cached positions (see attend_head in
// matmul.h for the canonical sequence). `scores` has room for `len` floats.
using AttendFn = void (*)(const float* q, const float* k, const float* v, int64_t stride, int len,
                          int head_dim, float scale, float* scores, float* out);
void attend_portable(const float* q, const float* k, const float* v, int64_t stride, int len,
                     int head_dim, float scale, float* scores, float* out);

// Quantizes one activation row of `cols` floats into `out` (layout act_layout(kind)).
using QuantFn = void (*)(const float* x, int64_t cols, uint8_t* out, const ActLayout& layout);

// out[i] = silu_mul_canonical(gate[i], up[i]) for i < count (out may be gate).
using SiluMulFn = void (*)(const float* gate, const float* up, int64_t count, float* out);
void silu_mul_portable(const float* gate, const float* up, int64_t count, float* out);

struct IsaKernels {
  const char* name;
  KernelFn f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k;
  QuantFn quant_q8_0, quant_q8_k;
  AttendFn attend;
  SiluMulFn silu_mul;
};

const IsaKernels& portable_kernels();
#if defined(__x86_64__)
const IsaKernels& avx2_kernels();
const IsaKernels& avx512_kernels();
#endif

// The kernels for `isa` ("portable", "avx2", "avx512"), or nullptr when this CPU
// or build cannot run them.
const IsaKernels* kernels_for(const char* isa);

// matmul() with an explicit kernel set (tests compare ISAs in one process).
void matmul_with(const IsaKernels& k, const WeightMatrix& w, const float* x, int64_t n_tokens,
                 float* y, ThreadPool& pool);

// matmul_group() and swiglu() with an explicit kernel set.
void matmul_group_with(const IsaKernels& k, const WeightMatrix* const* ws, float* const* ys,
                       int count, const float* x, int64_t n_tokens, ThreadPool& pool);
void swiglu_with(const IsaKernels& k, const WeightMatrix& gate, const WeightMatrix& up,
                 const float* x, int64_t n_tokens, float* g, float* u, ThreadPool& pool);

// Rows per work unit handed to a thread; every kernel's row tile divides it, so no
// tile is cut short at a unit's end. Quantized tiles are 16 rows and float decode's
// 8; the AVX-512 float prefill tile is 6 rows, so float prefill hands out 48.
constexpr int64_t kRowChunk = 16;
constexpr int64_t kFloatPrefillRowChunk = 48;
inline int64_t row_chunk(ActKind kind, int64_t n_tokens) {
  return kind == ActKind::kF32 && n_tokens > 1 ? kFloatPrefillRowChunk : kRowChunk;
}

// Scalar building blocks shared by the portable kernels and the SIMD tails.
inline void k4_scale_min(const uint8_t* q, uint8_t sc[8], uint8_t m[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
  }
  for (int j = 4; j < 8; ++j) {
    sc[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The 12 packed scale bytes of a Q4_K/Q5_K block as 16 bytes: the 8 scales, then
// the 8 mins (ggml's get_scale_min_k4 for all j at once).
inline void k4_unpack16(const uint8_t* q, uint8_t out[16]) {
  uint32_t u[4];
  __builtin_memcpy(u, q, 12);
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  u[3] = ((u[2] >> 4) & kMask2) | (((u[1] >> 6) & kMask3) << 4);
  const uint32_t aux = u[1] & kMask1;
  u[1] = (u[2] & kMask2) | (((u[0] >> 6) & kMask3) << 4);
  u[2] = aux;
  u[0] &= kMask1;
  __builtin_memcpy(out, u, 16);
}

// Software prefetch of the next row tile while a tile is computed: rows are
// contiguous, so the next tile is one contiguous range, and spreading it over the
// steps of the current tile keeps memory busy even where rows start new pages
// (hardware prefetchers stop at page boundaries). Into L1 (T0): decoding a model's
// matrices in layer order ran 7% (Q8_0) and 13% (Q4_K_M) faster on 2 Zen 5 threads
// than with T1, the hint this first used (8 and 5 interleaved runs, every T0 run
// above every T1 run); NTA measured the same as T0. Q8_0 and F16 decode have since
// moved to RowStreamPrefetcher (below), which measured faster for them.
class TilePrefetcher {
 public:
  TilePrefetcher(const WeightMatrix& w, int64_t next_row, int64_t rows, int64_t steps) {
    const size_t rb = row_size(w.type, w.cols);
    const int64_t end_row = next_row + rows < w.rows ? next_row + rows : w.rows;
    const uint8_t* base = static_cast<const uint8_t*>(w.data);
    p_ = base + next_row * rb;
    end_ = next_row < end_row ? base + end_row * rb : p_;
    const size_t bytes = static_cast<size_t>(end_ - p_);
    chunk_ = steps > 0 ? (bytes / static_cast<size_t>(steps) + 64) & ~size_t{63} : bytes;
  }
  void step() {
    const uint8_t* stop = p_ + chunk_ < end_ ? p_ + chunk_ : end_;
    for (; p_ < stop; p_ += 64) __builtin_prefetch(p_, 0, 3);
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  size_t chunk_;
};

// Software prefetch for decode that follows each of a tile's R row streams a
// fixed distance ahead of the reads, and past a row's end into the same row of
// the next tile (R rows further on), so that a thread's reads never wait on a row
// start. Call advance(n) once the kernel has read n bytes into each row.
// The tile after the last is prefetched too: a prefetch never faults, and those
// lines are usually the next piece's or the next tensor's.
template <int R>
class RowStreamPrefetcher {
 public:
  RowStreamPrefetcher(const uint8_t* const* rows, size_t row_bytes, size_t distance)
      : rows_(rows), row_bytes_(row_bytes), distance_(distance), next_(distance) {}
  void advance(size_t read) {
    for (const size_t target = read + distance_; next_ < target; next_ += 64) {
      const size_t at = next_ < row_bytes_ ? next_ : next_ + (R - 1) * row_bytes_;
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) __builtin_prefetch(rows_[i] + at, 0, 3);
    }
  }

 private:
  const uint8_t* const* rows_;
  size_t row_bytes_;
  size_t distance_;
  size_t next_;  // offset in each row up to which prefetches have gone out
};

// e^x as every ISA computes it, lane by lane, so softmax and SiLU give the same
// bits on all of them (libm's expf is scalar, and was a third of attention's time
// and most of SiLU's). Cephes' expf sequence, float32, round to nearest:
//   x = min(max(x, -87.3), 88.3)   (as max_ps / min_ps: a NaN becomes -87.3)
//   n = nearbyint(x * log2(e))     (ties to even)
//   r = fma(-n, 0.693359375, x); r = fma(n, 2.12194440e-4, r)
//   p = 1.9875691500e-4, then p = fma(p, r, c) for c = 1.3981999507e-3,
//       8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1
//   y = fma(p, r * r, r) + 1;  e^x = y * 2^n (2^n built from exponent bits)
// Within 2 ulp of the exact value over the clamped range (ExpTest); below -87.3 it
// gives about 1.2e-38 instead of smaller numbers or 0, which softmax and SiLU do
// not notice.
namespace exp_consts {
constexpr float kLo = -87.3f, kHi = 88.3f, kLog2e = 1.44269504088896341f;
constexpr float kC1 = 0.693359375f, kC2 = 2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
}  // namespace exp_consts

inline float exp_canonical(float x) {
  using namespace exp_consts;
  x = x > kLo ? x : kLo;
  x = x < kHi ? x : kHi;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kC1, x);
  r = std::fma(n, kC2, r);
  float p = kP0;
  for (float c : {kP1, kP2, kP3, kP4, kP5}) p = std::fma(p, r, c);
  const float y = std::fma(p, r * r, r) + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return y * scale;
}

// attend_head's middle step: scores become e_p = exp_canonical(s_p - mx), summed in
// order; returns 1 / sum. The ISAs compute the e_p in vectors (the same bits) and
// share this sum.
inline float sum_in_order(const float* e, int len) {
  float sum = 0;
  for (int p = 0; p < len; ++p) sum += e[p];
  return sum;
}
inline float softmax_in_place(float* scores, int len, float mx) {
  for (int p = 0; p < len; ++p) scores[p] = exp_canonical(scores[p] - mx);
  return 1.0f / sum_in_order(scores, len);
}

// out[i] = gate[i] / (1 + exp_canonical(-gate[i])) * up[i], in that order.
inline float silu_mul_canonical(float g, float u) { return g / (1.0f + exp_canonical(-g)) * u; }

// Fills the Q8_K bsums/sums32 of block `b` from its quants.
inline void q8k_fill_sums(const int8_t* q, int16_t* bsums, int16_t* sums32) {
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += q[g * 16 + i];
    bsums[g] = static_cast<int16_t>(s);
  }
  for (int g = 0; g < 8; ++g) sums32[g] = static_cast<int16_t>(bsums[2 * g] + bsums[2 * g + 1]);
}

}  // namespace swarm::mm
