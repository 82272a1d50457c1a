// AVX-512 (F, BW, VL, DQ, VNNI) kernels. Same canonical sequence as every other ISA
// (matmul_internal.h); lanes hold different weight rows, 16 at a time.
//
// Quantized tiles: per step each of 16 rows produces a 512-bit vector whose lanes 0..7
// are partial sums of one exact integer (a block's dot product, or a K-quant's scale
// sum) and lanes 8..15 partial sums of another (the next block, or the mins sum).
// A transposing reduction turns 16 such vectors into two vectors with one exact
// integer per row, then one FMA per integer advances 16 accumulators.
// Signed x signed bytes go through vpdpbusd by offsetting the weights by 128 and
// starting the sum at -128 * sum(x), which the activation row shares across rows.
#if defined(__x86_64__)

// GCC 12's AVX-512 headers start masked builtins from _mm512_undefined_*(), which
// -Wmaybe-uninitialized (or -Wuninitialized) reports as uninitialized use after
// inlining (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "engine/fp16.h"
#include "engine/matmul_internal.h"
#include "engine/scratch_buffer.h"

namespace swarm::mm {
namespace {

constexpr int kR = 16;  // weight rows per quantized tile (one zmm of lanes)

// ---- The 16-row transposing reduction.

inline __m512i step1(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
inline __m512i step2(__m512i p, __m512i q) {
  return _mm512_add_epi32(_mm512_unpacklo_epi64(p, q), _mm512_unpackhi_epi64(p, q));
}
inline __m512i step3(__m512i p, __m512i q) {
  return _mm512_add_epi32(_mm512_shuffle_i32x4(p, q, 0x88), _mm512_shuffle_i32x4(p, q, 0xDD));
}

// row(i) returns row i's vector; A[i] = sum of its lanes 0..7, B[i] = sum of lanes 8..15.
template <typename RowFn>
inline void reduce16x2(RowFn row, __m512i& A, __m512i& B) {
  __m512i s2[4];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512i a = step1(row(4 * g), row(4 * g + 1));
    const __m512i b = step1(row(4 * g + 2), row(4 * g + 3));
    s2[g] = step2(a, b);
  }
  const __m512i s30 = step3(s2[0], s2[1]);
  const __m512i s31 = step3(s2[2], s2[3]);
  A = _mm512_shuffle_i32x4(s30, s31, 0x88);
  B = _mm512_shuffle_i32x4(s30, s31, 0xDD);
}

// ---- Activation quantization (bit-identical to the portable rule).

inline float hmax16(__m512 v) {
  __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Quantizes n (a multiple of 16) floats with one scale; returns d.
inline float quant_block(const float* x, int n, int8_t* q) {
  __m512 amax = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  const float d = hmax16(amax) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 vid = _mm512_set1_ps(id);
  const __m512i hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127);
  for (int i = 0; i < n; i += 16) {
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vid));
    v = _mm512_max_epi32(_mm512_min_epi32(v, hi), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(v));
  }
  return d;
}

void quant_q8_0(const float* x, int64_t cols, uint8_t* out, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(out + l.qs);
  float* d = reinterpret_cast<float*>(out + l.d);
  int32_t* sums = reinterpret_cast<int32_t*>(out + l.sums);
  for (int64_t b = 0; b < cols / 32; ++b) {
    d[b] = quant_block(x + 32 * b, 32, qs + 32 * b);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * b));
    sums[b] =
        _mm512_reduce_add_epi32(_mm512_madd_epi16(_mm512_cvtepi8_epi16(q), _mm512_set1_epi16(1)));
  }
}

void quant_q8_k(const float* x, int64_t cols, uint8_t* out, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(out + l.qs);
  float* d = reinterpret_cast<float*>(out + l.d);
  int16_t* bsums = reinterpret_cast<int16_t*>(out + l.sums);
  int16_t* sums32 = reinterpret_cast<int16_t*>(out + l.sums32);
  for (int64_t b = 0; b < cols / kQK_K; ++b) {
    d[b] = quant_block(x + kQK_K * b, kQK_K, qs + kQK_K * b);
    q8k_fill_sums(qs + kQK_K * b, bsums + 16 * b, sums32 + 8 * b);
  }
}

// ---- Float weights: the 16 canonical lanes are one zmm per output.

enum class FType { kF32, kF16, kBF16 };

template <FType T>
inline __m512 load16(const uint8_t* row, int64_t i) {
  if constexpr (T == FType::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (T == FType::kF16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
  } else {
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i))),
        16));
  }
}

template <FType T>
inline __m512 load16_tail(const uint8_t* row, int64_t i, __mmask16 m) {
  if constexpr (T == FType::kF32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  } else if constexpr (T == FType::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
  } else {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i)), 16));
  }
}

inline float tree16(__m512 a) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

// Decode for float weights, and runs of a few tokens (speculative verification, a
// few sequences): R rows x NT tokens, every row load and conversion shared by the
// tokens. Each output sees fma(w[k..k+15], x[k..k+15]) for k in order, then the
// tree, whatever NT is, so results match bit for bit. The prefill path below
// widens whole tiles to float32 first, which for 2-4 tokens cost more than the
// FMAs (4 tokens took 2.3x one token's pass, now 1.5x); from 5 tokens on it is
// faster (6 and 8 tokens measured 2.8x and 3.2x here against 2.6x and 2.7x there).
// Decode follows each of the R row streams with software prefetches 1 KiB ahead,
// into the next tile's rows as a row runs out (RowStreamPrefetcher): an F16 row of
// 2048 columns is one 4 KiB page, and the hardware prefetchers started every row
// cold. A decode step of TinyLlama F16 (2 threads, medians of 30-40 steps in five
// interleaved runs) took 38.9-41.2 ms against 45.0-47.7 without; 512 and 2048
// bytes measured no better. Prefetching the whole next tile, spread over the
// current one, had measured 12-14% slower than nothing.
constexpr size_t kF16RowPrefetch = 1024;

template <FType T, int R, int NT>
void float_few(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, float* y, int64_t ldy,
               int64_t main, int64_t cols, __mmask16 tail) {
  const size_t rb = row_size(w.type, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  for (int64_t r = r0; r < r1; r += R) {
    const uint8_t* row[R];
    for (int i = 0; i < R; ++i) row[i] = base + std::min(r + i, r1 - 1) * rb;
    const float* x[NT];
    for (int j = 0; j < NT; ++j) x[j] = a.f32(j);
    __m512 acc[R][NT];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
    // F16 rows are read a whole cache line (32 columns) per load and split into
    // two conversions: a decode pass over a model's F16 matrices, 2 threads, ran
    // at 52-55 GB/s against 50-51 with a half-line load per 16 columns (5
    // interleaved runs each). The per-lane FMA order is the same either way.
    int64_t k0 = 0;
    if constexpr (T == FType::kF16) {
      RowStreamPrefetcher<R> pf(row, rb, kF16RowPrefetch);
      for (; k0 + 32 <= main; k0 += 32) {
        if constexpr (NT == 1) pf.advance(2 * k0);
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i) {
          const __m512i raw = _mm512_loadu_si512(row[i] + 2 * k0);
          const __m512 w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(raw));
          const __m512 w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(raw, 1));
#pragma GCC unroll 4
          for (int j = 0; j < NT; ++j) {
            acc[i][j] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[j] + k0), acc[i][j]);
            acc[i][j] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[j] + k0 + 16), acc[i][j]);
          }
        }
      }
    }
    for (int64_t k = k0; k < main; k += 16) {
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const __m512 wv = load16<T>(row[i], k);
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j)
          acc[i][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[j] + k), acc[i][j]);
      }
    }
    if (main < cols) {
      for (int i = 0; i < R; ++i) {
        const __m512 wv = load16_tail<T>(row[i], main, tail);
        for (int j = 0; j < NT; ++j)
          acc[i][j] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x[j] + main), acc[i][j]);
      }
    }
    for (int i = 0; i < R && r + i < r1; ++i)
      for (int j = 0; j < NT; ++j) y[j * ldy + r + i] = tree16(acc[i][j]);
  }
}

// Prefill for float weights, blocked over k: a tile's kFR float rows and its
// outputs' partial sums stay in L1 for a block of kFK columns while the token
// groups' activations stream past, instead of every group streaming the whole rows
// (kFR rows and 4 tokens of a 2048-column matrix are 80 KB, beyond L1's 48 KB). Each output
// still sees fma(w[k..k+15], x[k..k+15]) for k in order, then the tree: the
// partial sums are only parked in memory between blocks.
constexpr int kFR = 6, kFT = 4;   // register tile: rows x tokens
constexpr int64_t kFK = 1024;     // columns per block
constexpr int64_t kFTokens = 24;  // tokens whose partial sums are parked at once
// (Block sizes measured best of 512..2048 columns and 12..48 tokens, F16 TinyLlama
// shapes, 64 tokens, one thread: 1024 and 24 gave 130-160 GFLOP/s where the unblocked
// tile gave 100-130. Then the tile: the rows stay in L1 for the block while the
// tokens' activations come from L2, so each activation load should feed as many
// FMAs as registers allow. 6 x 4 (24 accumulators, 6 rows, 1 activation) gave
// 132-135 GFLOP/s over the three shapes where 4 x 6 gave 123-124, 5 x 5 130, 7 x 3
// and 8 x 3 109-114; ffn_down's shape gained most, 111 -> 127-129.)

template <int NT>
inline void float_block(const float* const* w, const Acts& a, int64_t t0, int64_t k0, int64_t k1,
                        bool with_tail, int64_t main, __mmask16 tail, __m512* park) {
  __m512 acc[kFR][NT];
  const float* x[NT];
  for (int j = 0; j < NT; ++j) x[j] = a.f32(t0 + j);
  for (int i = 0; i < kFR; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = park[i * kFTokens + j];
  for (int64_t k = k0; k < k1; k += 16) {
    __m512 wv[kFR];
#pragma GCC unroll 8
    for (int i = 0; i < kFR; ++i) wv[i] = _mm512_load_ps(w[i] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const __m512 xv = _mm512_loadu_ps(x[j] + k);
#pragma GCC unroll 8
      for (int i = 0; i < kFR; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  if (with_tail) {
    __m512 wv[kFR];
    for (int i = 0; i < kFR; ++i) wv[i] = _mm512_maskz_loadu_ps(tail, w[i] + main);
    for (int j = 0; j < NT; ++j) {
      const __m512 xv = _mm512_maskz_loadu_ps(tail, x[j] + main);
      for (int i = 0; i < kFR; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < kFR; ++i)
    for (int j = 0; j < NT; ++j) park[i * kFTokens + j] = acc[i][j];
}

inline void float_prefill_tile(const float* const* w, const Acts& a, int64_t n, int64_t main,
                               int64_t cols, __mmask16 tail, float* y, int64_t ldy, int64_t r,
                               int valid, TilePrefetcher& pf) {
  alignas(64) __m512 park[kFR * kFTokens];
  for (int64_t c0 = 0; c0 < n; c0 += kFTokens) {
    const int64_t c1 = std::min(n, c0 + kFTokens);
    for (int i = 0; i < kFR; ++i)
      for (int64_t j = 0; j < c1 - c0; ++j) park[i * kFTokens + j] = _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < main || (k0 == main && main < cols); k0 += kFK) {
      const int64_t k1 = std::min(main, k0 + kFK);
      const bool with_tail = k1 == main && main < cols;
      int64_t t0 = c0;
      for (; t0 + kFT <= c1; t0 += kFT) {
        pf.step();
        float_block<kFT>(w, a, t0, k0, k1, with_tail, main, tail, park + (t0 - c0));
      }
      // The last group of fewer than kFT tokens.
      using BlockFn = void (*)(const float* const*, const Acts&, int64_t, int64_t, int64_t, bool,
                               int64_t, __mmask16, __m512*);
      static constexpr BlockFn kRest[kFT] = {nullptr, float_block<1>, float_block<2>,
                                             float_block<3>};
      if (t0 < c1) {
        pf.step();
        kRest[c1 - t0](w, a, t0, k0, k1, with_tail, main, tail, park + (t0 - c0));
      }
      if (with_tail) break;
    }
    for (int i = 0; i < valid; ++i)
      for (int64_t t = c0; t < c1; ++t) y[t * ldy + r + i] = tree16(park[i * kFTokens + (t - c0)]);
  }
}

template <FType T>
void kernel_float(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                  int64_t ldy) {
  const size_t rb = row_size(w.type, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t cols = w.cols, main = cols / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (cols - main)) - 1);
  // Decode: 8 rows share each x load (measured best of 2, 4, 8, 16).
  if (n == 1) return float_few<T, 8, 1>(w, r0, r1, a, y, ldy, main, cols, tail);
  if (n == 2) return float_few<T, 8, 2>(w, r0, r1, a, y, ldy, main, cols, tail);
  if (n == 3) return float_few<T, 4, 3>(w, r0, r1, a, y, ldy, main, cols, tail);
  if (n == 4) return float_few<T, 4, 4>(w, r0, r1, a, y, ldy, main, cols, tail);
  // Prefill: the R-row tile is widened to float32 once (exact), then every token
  // group reads floats; conversion is paid once per tile, not once per group.
  // The widened rows sit on 64-byte boundaries, a cache line longer than a
  // multiple of 4 KiB, as matmul_with lays out the tokens (see there).
  const int64_t stride = (cols + 15) / 16 * 16 + 16;
  thread_local ScratchBuffer wide;
  float* wf = wide.get<float>(kFR * stride);
  // Blocks of columns x groups of tokens: the calls a tile makes to float_block,
  // over which the next tile's rows are prefetched (widening waited on memory).
  const int64_t steps = (n + kFT - 1) / kFT * ((cols + kFK - 1) / kFK);
  for (int64_t r = r0; r < r1; r += kFR) {
    TilePrefetcher pf(w, r + kFR, kFR, steps);
    const float* row[kFR];
    for (int i = 0; i < kFR; ++i) {
      const uint8_t* src = base + std::min(r + i, r1 - 1) * rb;
      float* dst = wf + i * stride;
      for (int64_t k = 0; k < main; k += 16) _mm512_store_ps(dst + k, load16<T>(src, k));
      if (main < cols) _mm512_mask_storeu_ps(dst + main, tail, load16_tail<T>(src, main, tail));
      row[i] = dst;
    }
    float_prefill_tile(row, a, n, main, cols, tail, y, ldy, r,
                       static_cast<int>(std::min<int64_t>(kFR, r1 - r)), pf);
  }
}

// ---- Quantized weights: tiles of 16 rows, lane = row.

struct RowTile {
  const uint8_t* row[kR];
  __mmask16 valid;
};

inline RowTile make_tile(const WeightMatrix& w, int64_t r, int64_t r1) {
  RowTile t;
  const size_t rb = row_size(w.type, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  for (int i = 0; i < kR; ++i) t.row[i] = base + std::min(r + i, r1 - 1) * rb;
  const int64_t nv = std::min<int64_t>(kR, r1 - r);
  t.valid = static_cast<__mmask16>((1u << nv) - 1);
  return t;
}

// The 32-bit word at byte `off` of each of the tile's rows, lane i from row i.
// Sixteen scalar loads put together with inserts, not vpgatherdd. The decode
// kernels over L2-resident rows, one thread pinned to each of this Zen 5 VM's two
// cores in turn (one computes a third slower than the other): Q8_0 (two of these
// per step of two blocks) 39.4 and 45-48 GB/s against 32-33 and 40 with the
// gather, Q4_K 24 and 36 against 23 and 32, Q6_K about the same. Merging masked
// broadcasts was slower than inserts. A Q8_0 decode step, 2 threads: 22.6-23.3 ms
// against 23.6-23.9 (three interleaved runs).
inline __m512i gather32(const RowTile& t, size_t off) {
  __m128i q[4];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    int32_t u0, u1, u2, u3;
    std::memcpy(&u0, t.row[4 * g] + off, 4);
    std::memcpy(&u1, t.row[4 * g + 1] + off, 4);
    std::memcpy(&u2, t.row[4 * g + 2] + off, 4);
    std::memcpy(&u3, t.row[4 * g + 3] + off, 4);
    q[g] = _mm_insert_epi32(_mm_insert_epi32(_mm_insert_epi32(_mm_cvtsi32_si128(u0), u1, 1), u2, 2),
                            u3, 3);
  }
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(q[1], q[0])),
                            _mm256_set_m128i(q[3], q[2]), 1);
}
inline __m512 f16_lo(__m512i g) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)); }
inline __m512 f16_hi(__m512i g) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
}

inline __m512i load2x256(const void* a, const void* b) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(a))),
      _mm256_loadu_si256(static_cast<const __m256i*>(b)), 1);
}

// ---- Several tokens for Q8_0 / Q4_0: a 16-row tile is repacked into "lane = row"
// order (zmm k of block b holds bytes 4k..4k+3 of that block of all 16 rows, as
// unsigned bytes), so each token needs one broadcast dword per vpdpbusd and no
// reduction at all. Up to 8 tokens use each packed block straight from registers;
// more tokens pack the tile into a buffer once and go over it 8 at a time. The
// integer sums are the exact values the decode path computes, and the float steps
// are the same, so results match it bit for bit.

struct alignas(64) Vec {
  int32_t v[16];
};

// Dword k of 16 rows' 32-byte runs, as 8 vectors out[k] (lane i = row i): a 16 x 8
// dword transpose. Each input vector holds rows i and i + 8 in its two halves;
// two unpack stages transpose 4 x 4 dwords within every 128-bit lane, and a
// two-source permute gathers the lanes of rows 0-3, 4-7, 8-11 and 12-15. Loads
// and shuffles only: the 8 vpgatherdd this replaces cost about 7 decode passes
// per call, which made runs of 4-16 tokens slower than 8 single tokens.
inline void transpose_16x8(const uint8_t* const* row, size_t off, __m512i out[8]) {
  __m512i z[8], t[8], u[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) z[i] = load2x256(row[i] + off, row[i + 8] + off);
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {  // stage 1: pairs of rows
    t[2 * g] = _mm512_unpacklo_epi32(z[2 * g], z[2 * g + 1]);
    t[2 * g + 1] = _mm512_unpackhi_epi32(z[2 * g], z[2 * g + 1]);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {  // stage 2: rows 4h..4h+3, dword d (and d + 4) in u[4h + d]
    u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
    u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
    u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
  for (int d = 0; d < 4; ++d) {
    out[d] = _mm512_permutex2var_epi64(u[d], lo, u[4 + d]);
    out[d + 4] = _mm512_permutex2var_epi64(u[d], hi, u[4 + d]);
  }
}

// Dword k of 16 rows' 16-byte runs, as 4 vectors (lane i = row i). Input vector k
// holds rows k, k + 4, k + 8, k + 12 in its 128-bit lanes, so the two unpack
// stages alone leave every lane in row order.
inline void transpose_16x4(const uint8_t* const* row, size_t off, __m512i out[4]) {
  __m512i z[4];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m128i* p[4];
    for (int l = 0; l < 4; ++l) p[l] = reinterpret_cast<const __m128i*>(row[k + 4 * l] + off);
    const __m256i a = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(p[0])),
                                              _mm_loadu_si128(p[1]), 1);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(p[2])),
                                              _mm_loadu_si128(p[3]), 1);
    z[k] = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
  }
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Block b of a 16-row tile in lane = row order: W[k] holds bytes 4k..4k+3 of
// every row's block as unsigned bytes (Q8_0 offset by 128; Q4_0 nibbles, low
// then high), sw the 16 rows' scales.
template <bool kQ4>
inline void pack_block(const RowTile& tile, int64_t b, __m512i W[8], __m512& sw) {
  const size_t bsz = kQ4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  const size_t qs = b * bsz + 2;
  if constexpr (kQ4) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i g[4];
    transpose_16x4(tile.row, qs, g);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      W[k] = _mm512_and_si512(g[k], m4);
      W[4 + k] = _mm512_and_si512(_mm512_srli_epi32(g[k], 4), m4);
    }
  } else {
    const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
    transpose_16x8(tile.row, qs, W);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) W[k] = _mm512_xor_si512(W[k], k80);
  }
  sw = f16_lo(gather32(tile, b * bsz));
}

// NT tokens' activations, and their accumulators over one tile.
template <int NT>
struct TokenGroup {
  __m512 acc[NT];
  const int8_t* xq[NT];
  const float* xd[NT];
  const int32_t* xs[NT];
  TokenGroup(const Acts& a, int64_t t0) {
    for (int j = 0; j < NT; ++j) {
      acc[j] = _mm512_setzero_ps();
      xq[j] = a.qs(t0 + j), xd[j] = a.d(t0 + j), xs[j] = a.sums(t0 + j);
    }
  }
  // Adds block b of every token: one broadcast dword per vpdpbusd, no reduction.
  template <bool kQ4>
  inline void add_block(const __m512i W[8], __m512 sw, int64_t b) {
    constexpr int kCorr = kQ4 ? -8 : -128;  // nibble - 8, or (w + 128) - 128
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      int32_t xw[8];
      std::memcpy(xw, xq[j] + 32 * b, 32);
      __m512i s = _mm512_set1_epi32(kCorr * xs[j][b]);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) s = _mm512_dpbusd_epi32(s, W[k], _mm512_set1_epi32(xw[k]));
      acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(sw, _mm512_set1_ps(xd[j][b])), _mm512_cvtepi32_ps(s),
                               acc[j]);
    }
  }
  void store(float* y, int64_t ldy, int64_t t0, int64_t r, __mmask16 valid) const {
    for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(y + (t0 + j) * ldy + r, valid, acc[j]);
  }
};

// Up to 8 tokens: each block is packed in registers and used at once, so the
// weights are read once and nothing is stored.
template <bool kQ4, int NT>
void fused_tokens(const RowTile& tile, int64_t nb, TilePrefetcher& next, const Acts& a, float* y,
                  int64_t ldy, int64_t r) {
  TokenGroup<NT> g(a, 0);
  for (int64_t b = 0; b < nb; ++b) {
    next.step();
    __m512i W[8];
    __m512 sw;
    pack_block<kQ4>(tile, b, W, sw);
    g.template add_block<kQ4>(W, sw, b);
  }
  g.store(y, ldy, 0, r, tile.valid);
}

// More tokens: the tile is packed once into a buffer, then groups of up to 8
// tokens go over it.
template <bool kQ4, int NT>
void buffered_tokens(const Vec* wp, const Vec* sp, int64_t nb, const Acts& a, int64_t t0, float* y,
                     int64_t ldy, int64_t r, __mmask16 valid) {
  TokenGroup<NT> g(a, t0);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i W[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) W[k] = _mm512_load_si512(wp[8 * b + k].v);
    g.template add_block<kQ4>(W, _mm512_load_ps(sp[b].v), b);
  }
  g.store(y, ldy, t0, r, valid);
}

template <bool kQ4>
void packed_kernel(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n,
                   float* y, int64_t ldy) {
  constexpr int NT = 8;
  using Fused =
      void (*)(const RowTile&, int64_t, TilePrefetcher&, const Acts&, float*, int64_t, int64_t);
  using Buffered = void (*)(const Vec*, const Vec*, int64_t, const Acts&, int64_t, float*, int64_t,
                            int64_t, __mmask16);
  static constexpr Fused kFused[NT + 1] = {nullptr,
                                           fused_tokens<kQ4, 1>,
                                           fused_tokens<kQ4, 2>,
                                           fused_tokens<kQ4, 3>,
                                           fused_tokens<kQ4, 4>,
                                           fused_tokens<kQ4, 5>,
                                           fused_tokens<kQ4, 6>,
                                           fused_tokens<kQ4, 7>,
                                           fused_tokens<kQ4, 8>};
  static constexpr Buffered kBuffered[NT + 1] = {nullptr,
                                                 buffered_tokens<kQ4, 1>,
                                                 buffered_tokens<kQ4, 2>,
                                                 buffered_tokens<kQ4, 3>,
                                                 buffered_tokens<kQ4, 4>,
                                                 buffered_tokens<kQ4, 5>,
                                                 buffered_tokens<kQ4, 6>,
                                                 buffered_tokens<kQ4, 7>,
                                                 buffered_tokens<kQ4, 8>};
  const int64_t nb = w.cols / 32;
  if (n <= NT) {
    for (int64_t r = r0; r < r1; r += kR) {
      const RowTile tile = make_tile(w, r, r1);
      TilePrefetcher pf(w, r + kR, kR, nb);
      kFused[n](tile, nb, pf, a, y, ldy, r);
    }
    return;
  }
  thread_local std::vector<Vec> buf;
  if (buf.size() < static_cast<size_t>(nb * 9)) buf.resize(nb * 9);
  Vec* wp = buf.data();
  Vec* sp = wp + nb * 8;
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t b = 0; b < nb; ++b) {
      pf.step();
      __m512i W[8];
      __m512 sw;
      pack_block<kQ4>(tile, b, W, sw);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm512_store_si512(wp[8 * b + k].v, W[k]);
      _mm512_store_ps(sp[b].v, sw);
    }
    for (int64_t t0 = 0; t0 < n; t0 += NT)
      kBuffered[std::min<int64_t>(NT, n - t0)](wp, sp, nb, a, t0, y, ldy, r, tile.valid);
  }
}

// Batches at least this large take the packed path. One Zen 5 thread over
// TinyLlama's Q8_0 matrices, as a multiple of one token's pass (bench/matmul_bench
// --small-batches): 2 tokens 1.25x (1.58x with the decode kernel), 3 1.4x, 4 1.5x,
// 8 2.0x, 16 3.2x. One token packed costs 1.25x the decode kernel.
constexpr int64_t kPackMinTokens = 2;

// Q8_0 decode follows each of the tile's 16 row streams 1 KiB ahead, on into the
// next tile (RowStreamPrefetcher). A decode step of TinyLlama Q8_0 (2 threads,
// medians of 60 steps in five interleaved runs) took 2-11% less than with the next
// tile prefetched over the current one (TilePrefetcher): 20.7-25.1 ms against
// 21.4-27.7. The same for Q4_K measured 4-7% slower, so the other types keep
// TilePrefetcher.
constexpr size_t kQ8RowPrefetch = 1024;

void kernel_q8_0(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  if (n >= kPackMinTokens) return packed_kernel<false>(w, r0, r1, a, n, y, ldy);
  const int64_t nb = w.cols / kQK8_0;
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    RowStreamPrefetcher<kR> pf(tile.row, nb * sizeof(BlockQ8_0), kQ8RowPrefetch);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      __m512 acc = _mm512_setzero_ps();
      int64_t b = 0;
      for (; b + 2 <= nb; b += 2) {
        if (t == 0) pf.advance(b * sizeof(BlockQ8_0));
        const __m512i xv = _mm512_load_si512(xq + 32 * b);
        // (w + 128) . x - 128 * sum(x) = w . x
        const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, xv));
        __m512i A, B;
        reduce16x2(
            [&](int i) {
              const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(tile.row[i]) + b;
              const __m512i wv = load2x256(blk[0].qs, blk[1].qs);
              return _mm512_dpbusd_epi32(corr, _mm512_xor_si512(wv, k80), xv);
            },
            A, B);
        const __m512 s0 =
            _mm512_mul_ps(f16_lo(gather32(tile, b * sizeof(BlockQ8_0))), _mm512_set1_ps(xd[b]));
        const __m512 s1 = _mm512_mul_ps(f16_lo(gather32(tile, (b + 1) * sizeof(BlockQ8_0))),
                                        _mm512_set1_ps(xd[b + 1]));
        acc = _mm512_fmadd_ps(s0, _mm512_cvtepi32_ps(A), acc);
        acc = _mm512_fmadd_ps(s1, _mm512_cvtepi32_ps(B), acc);
      }
      if (b < nb) {  // odd block count: the last block alone, upper half zero
        const __m512i xv = _mm512_zextsi256_si512(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(xq + 32 * b)));
        const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, xv));
        __m512i A, B;
        reduce16x2(
            [&](int i) {
              const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(tile.row[i]) + b;
              const __m512i wv = _mm512_zextsi256_si512(
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs)));
              return _mm512_dpbusd_epi32(corr, _mm512_xor_si512(wv, k80), xv);
            },
            A, B);
        const __m512 s0 =
            _mm512_mul_ps(f16_lo(gather32(tile, b * sizeof(BlockQ8_0))), _mm512_set1_ps(xd[b]));
        acc = _mm512_fmadd_ps(s0, _mm512_cvtepi32_ps(A), acc);
      }
      _mm512_mask_storeu_ps(y + t * ldy + r, tile.valid, acc);
    }
  }
}

void kernel_q4_0(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  if (n >= kPackMinTokens) return packed_kernel<true>(w, r0, r1, a, n, y, ldy);
  const int64_t nb = w.cols / kQK4_0;
  const __m512i k8 = _mm512_set1_epi8(8);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, (nb + 1) / 2);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; b += 2) {
        if (t == 0) pf.step();
        const bool pair = b + 1 < nb;
        const __m512i xv = pair ? _mm512_load_si512(xq + 32 * b)
                                : _mm512_zextsi256_si512(_mm256_load_si256(
                                      reinterpret_cast<const __m256i*>(xq + 32 * b)));
        // nibble . x - 8 * sum(x) = (nibble - 8) . x
        const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), k8, xv));
        __m512i A, B;
        reduce16x2(
            [&](int i) {
              const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(tile.row[i]) + b;
              const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs));
              const __m128i q1 = pair ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs))
                                      : _mm_setzero_si128();
              const __m512i z = _mm512_castsi256_si512(_mm256_set_m128i(q1, q0));
              __m512i q = _mm512_shuffle_i64x2(z, z, 0x50);  // lanes q0 q0 q1 q1
              q = _mm512_and_si512(_mm512_srlv_epi64(q, shifts), m4);
              return _mm512_dpbusd_epi32(corr, q, xv);
            },
            A, B);
        const __m512 s0 =
            _mm512_mul_ps(f16_lo(gather32(tile, b * sizeof(BlockQ4_0))), _mm512_set1_ps(xd[b]));
        acc = _mm512_fmadd_ps(s0, _mm512_cvtepi32_ps(A), acc);
        if (pair) {
          const __m512 s1 = _mm512_mul_ps(f16_lo(gather32(tile, (b + 1) * sizeof(BlockQ4_0))),
                                          _mm512_set1_ps(xd[b + 1]));
          acc = _mm512_fmadd_ps(s1, _mm512_cvtepi32_ps(B), acc);
        }
      }
      _mm512_mask_storeu_ps(y + t * ldy + r, tile.valid, acc);
    }
  }
}

// Word indices for vpermw: lanes 0..15 take word j, lanes 16..31 word k.
inline __m512i perm2(int j, int k) {
  alignas(64) int16_t idx[32];
  for (int i = 0; i < 16; ++i)
    idx[i] = static_cast<int16_t>(j), idx[16 + i] = static_cast<int16_t>(k);
  return _mm512_load_si512(idx);
}

// Q4_K / Q5_K: one row's block -> lanes 0..7 partial isum1, lanes 8..11 partial isum2.
template <bool kFive>
inline __m512i row_k45(const uint8_t* blkp, const uint8_t* sm, const __m512i X[4], __m128i s32,
                       const __m512i P[4]) {
  const uint8_t *qs, *qh = nullptr;
  if constexpr (kFive) {
    const BlockQ5_K* blk = reinterpret_cast<const BlockQ5_K*>(blkp);
    qs = blk->qs, qh = blk->qh;
  } else {
    qs = reinterpret_cast<const BlockQ4_K*>(blkp)->qs;
  }
  const __m256i s16 = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(sm)));
  const __m128i mins = _mm_madd_epi16(_mm256_extracti128_si256(s16, 1), s32);
  const __m512i sz = _mm512_castsi256_si512(s16);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i q0 = _mm512_loadu_si512(qs), q1 = _mm512_loadu_si512(qs + 64);
  __m512i v[4] = {_mm512_and_si512(q0, m4), _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4),
                  _mm512_and_si512(q1, m4), _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4)};
  if constexpr (kFive) {
    const __m512i h =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)));
    const __m512i k16 = _mm512_set1_epi8(16);
    // v[0] = sub-blocks 0|2 (qh bits 0|2), v[1] = 1|3, v[2] = 4|6, v[3] = 5|7.
    const uint8_t bits[4][2] = {{0x01, 0x04}, {0x02, 0x08}, {0x10, 0x40}, {0x20, 0x80}};
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(bits[k][0])),
                                             _mm256_set1_epi8(static_cast<char>(bits[k][1])), 1);
      v[k] = _mm512_mask_add_epi8(v[k], _mm512_test_epi8_mask(h, sel), v[k], k16);
    }
  }
  __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k)
    acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(v[k], X[k]),
                              _mm512_permutexvar_epi16(P[k], sz));
  const __m256i a8 =
      _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
  return _mm512_inserti64x4(_mm512_castsi256_si512(a8), _mm256_zextsi128_si256(mins), 1);
}

// k4_unpack16 for the blocks at byte `off` of all 16 rows, four rows per zmm: each
// 128-bit lane holds a block's first 16 bytes, dwords [d|dmin, u0, u1, u2], and becomes
// [sc0..3, sc4..7, m0..3, m4..7].
inline void unpack_k4_scales(const RowTile& t, size_t off, uint8_t sm[kR][16]) {
  const __m512i shift = _mm512_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
  const __m512i mask_p =
      _mm512_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f,
                        0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f,
                        0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f);
  const __m512i mask_q =
      _mm512_setr_epi32(0, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030,
                        0, 0x30303030, 0, 0x30303030, 0, 0x30303030);
  auto ld = [&](int i) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.row[i] + off));
  };
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    __m512i v = _mm512_castsi128_si512(ld(4 * g));
    v = _mm512_inserti32x4(v, ld(4 * g + 1), 1);
    v = _mm512_inserti32x4(v, ld(4 * g + 2), 2);
    v = _mm512_inserti32x4(v, ld(4 * g + 3), 3);
    // out0 = u0 & m1, out1 = (u2 & m2) | ((u0 >> 6) & 3) << 4,
    // out2 = u1 & m1, out3 = ((u2 >> 4) & m2) | ((u1 >> 6) & 3) << 4
    const __m512i p = _mm512_and_si512(
        _mm512_srlv_epi32(_mm512_shuffle_epi32(v, static_cast<_MM_PERM_ENUM>(0xED)), shift),
        mask_p);
    const __m512i q = _mm512_and_si512(
        _mm512_srli_epi32(_mm512_shuffle_epi32(v, static_cast<_MM_PERM_ENUM>(0x84)), 2), mask_q);
    _mm512_store_si512(sm[4 * g], _mm512_or_si512(p, q));
  }
}

// ---- Several tokens for Q4_K and Q5_K: block b of a 16-row tile in "lane = row"
// order, one 32-byte group of quants (two sub-blocks) at a time, each group used
// by every token at once from registers, as for Q8_0. Q5_K adds its fifth bits
// (qh bit j for sub-block j), transposed once per block. Per token and sub-block j:
// s = q_j . x_j by vpdpbusd with no reduction, A += sc_j x s, B += m_j x sum(x_j);
// A and B are the exact integers the decode path's reduction gives, and the float
// steps are the same, so results match it bit for bit.
template <bool kFive, int NT>
void k45_tokens(const RowTile& tile, int64_t nb, TilePrefetcher& next, const Acts& a, int64_t t0,
                float* y, int64_t ldy, int64_t r) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const size_t bsz = sizeof(Block);
  const __m512i bit0 = _mm512_set1_epi8(0x01);
  const __m512i m4 = _mm512_set1_epi8(0x0F), mbyte = _mm512_set1_epi32(0xFF);
  const __m512i m6 = _mm512_set1_epi32(0x3f3f3f3f), m2 = _mm512_set1_epi32(0x03030303);
  const __m512i hi_word = _mm512_set1_epi32(0x00FF0000);
  __m512 acc[NT];
  for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    next.step();
    // Every row's first 16 bytes, lane = row: d | dmin, then the packed scales u0,
    // u1, u2, unpacked as k4_unpack16 does: S[0] = sc0..3, S[1] = sc4..7,
    // S[2] = m0..3, S[3] = m4..7 (a byte each).
    __m512i R[4];
    transpose_16x4(tile.row, b * bsz, R);
    const __m512i S0 = _mm512_and_si512(R[1], m6);
    const __m512i S1 =
        _mm512_or_si512(_mm512_and_si512(R[3], m4),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(R[1], 6), m2), 4));
    const __m512i S2 = _mm512_and_si512(R[2], m6);
    const __m512i S3 =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(R[3], 4), m4),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(R[2], 6), m2), 4));
    const __m512i S[2] = {S0, S1};
    // Mins as word pairs for vpdpwssd against two sub-block sums: m0|m1, m2|m3, ...
    auto pairs = [&](__m512i v, int shift) {
      const __m512i x = _mm512_srli_epi32(v, shift);
      return _mm512_or_si512(_mm512_and_si512(x, mbyte),
                             _mm512_and_si512(_mm512_slli_epi32(x, 8), hi_word));
    };
    const __m512i MP[4] = {pairs(S2, 0), pairs(S2, 16), pairs(S3, 0), pairs(S3, 16)};
    alignas(64) Vec qh[kFive ? 8 : 1];  // Q5_K: qh bytes 4k..4k+3 of every row
    if constexpr (kFive) {
      __m512i t[8];
      transpose_16x8(tile.row, b * bsz + offsetof(BlockQ5_K, qh), t);
      for (int k = 0; k < 8; ++k) _mm512_store_si512(qh[k].v, t[k]);
    }
    __m512i A[NT];
    for (int j = 0; j < NT; ++j) A[j] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      __m512i L[8], H[8];
      transpose_16x8(tile.row, b * bsz + offsetof(Block, qs) + 32 * g, L);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        H[k] = _mm512_and_si512(_mm512_srli_epi32(L[k], 4), m4);
        L[k] = _mm512_and_si512(L[k], m4);
        if constexpr (kFive) {  // + 16 where the sub-block's bit is set
          const __m512i h = _mm512_load_si512(qh[k].v);
          L[k] = _mm512_or_si512(
              L[k], _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h, 2 * g), bit0), 4));
          H[k] = _mm512_or_si512(
              H[k], _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h, 2 * g + 1), bit0), 4));
        }
      }
      // Scales of sub-blocks 2g and 2g + 1.
      const __m512i sc_lo = _mm512_and_si512(_mm512_srli_epi32(S[g / 2], 16 * (g % 2)), mbyte);
      const __m512i sc_hi = _mm512_and_si512(_mm512_srli_epi32(S[g / 2], 16 * (g % 2) + 8), mbyte);
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const int8_t* xb = a.qs(t0 + j) + kQK_K * b + 64 * g;  // sub-blocks 2g, 2g + 1
        int32_t xl[8], xh[8];
        std::memcpy(xl, xb, 32);
        std::memcpy(xh, xb + 32, 32);
        __m512i sl = _mm512_setzero_si512(), sh = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          sl = _mm512_dpbusd_epi32(sl, L[k], _mm512_set1_epi32(xl[k]));
          sh = _mm512_dpbusd_epi32(sh, H[k], _mm512_set1_epi32(xh[k]));
        }
        A[j] = _mm512_add_epi32(
            A[j], _mm512_add_epi32(_mm512_mullo_epi32(sl, sc_lo), _mm512_mullo_epi32(sh, sc_hi)));
      }
    }
    const __m512 d = f16_lo(R[0]), dmin = f16_hi(R[0]);
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      int32_t s32[4];  // the 8 sub-block sums, two words a dword
      std::memcpy(s32, a.sums32(t0 + j) + 8 * b, 16);
      __m512i B = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p) B = _mm512_dpwssd_epi32(B, MP[p], _mm512_set1_epi32(s32[p]));
      const __m512 dx = _mm512_set1_ps(a.d(t0 + j)[b]);
      acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(dx, d), _mm512_cvtepi32_ps(A[j]), acc[j]);
      acc[j] = _mm512_fnmadd_ps(_mm512_mul_ps(dx, dmin), _mm512_cvtepi32_ps(B), acc[j]);
    }
  }
  for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(y + (t0 + j) * ldy + r, tile.valid, acc[j]);
}

// Q4_K / Q5_K runs of at least this many tokens take k45_tokens: groups of up to 4 tokens
// per pass over a tile, the tile staying in cache between groups (groups of 8 ran
// out of registers: 8 tokens took 4.4x one token's pass against 3.6x).
constexpr int64_t kK45PackMinTokens = 2;

// A K-quant token-group pass (k45_tokens, k6_tokens) over one tile for tokens
// t0..t0 + NT - 1.
using TokenGroupFn = void (*)(const RowTile&, int64_t, TilePrefetcher&, const Acts&, int64_t,
                              float*, int64_t, int64_t);

// Rows [r0, r1) a tile at a time, each tile's tokens in groups of up to
// `max_group` (group[k] handles k tokens); the tile stays in cache between groups,
// and the next tile is fetched during the first group only.
void by_token_groups(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n,
                     float* y, int64_t ldy, const TokenGroupFn* group, int max_group) {
  const int64_t nb = w.cols / kQK_K;
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    for (int64_t t0 = 0; t0 < n; t0 += max_group) {
      TilePrefetcher pf(w, t0 == 0 ? r + kR : w.rows, kR, nb);
      group[std::min<int64_t>(max_group, n - t0)](tile, nb, pf, a, t0, y, ldy, r);
    }
  }
}

template <bool kFive>
void k45_packed_kernel(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n,
                       float* y, int64_t ldy) {
  static constexpr TokenGroupFn kGroup[] = {nullptr, k45_tokens<kFive, 1>, k45_tokens<kFive, 2>,
                                            k45_tokens<kFive, 3>, k45_tokens<kFive, 4>};
  by_token_groups(w, r0, r1, a, n, y, ldy, kGroup, 4);
}

template <bool kFive>
void kernel_k45(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                int64_t ldy) {
  if (n >= kK45PackMinTokens) return k45_packed_kernel<kFive>(w, r0, r1, a, n, y, ldy);
  const int64_t nb = w.cols / kQK_K;
  const size_t bsz = kFive ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  const __m512i P[4] = {perm2(0, 2), perm2(1, 3), perm2(4, 6), perm2(5, 7)};
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int16_t* s32 = a.sums32(t);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        if (t == 0) pf.step();
        const int8_t* xb = xq + kQK_K * b;
        // Sub-blocks in the order the nibbles come out: 0|2, 1|3, 4|6, 5|7.
        const __m512i X[4] = {load2x256(xb, xb + 64), load2x256(xb + 32, xb + 96),
                              load2x256(xb + 128, xb + 192), load2x256(xb + 160, xb + 224)};
        const __m128i sv = _mm_load_si128(reinterpret_cast<const __m128i*>(s32 + 8 * b));
        alignas(64) uint8_t sm[kR][16];
        unpack_k4_scales(tile, b * bsz, sm);
        __m512i A, B;
        reduce16x2([&](int i) { return row_k45<kFive>(tile.row[i] + b * bsz, sm[i], X, sv, P); }, A,
                   B);
        const __m512i g = gather32(tile, b * bsz);
        const __m512 dx = _mm512_set1_ps(xd[b]);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dx, f16_lo(g)), _mm512_cvtepi32_ps(A), acc);
        acc = _mm512_fnmadd_ps(_mm512_mul_ps(dx, f16_hi(g)), _mm512_cvtepi32_ps(B), acc);
      }
      _mm512_mask_storeu_ps(y + t * ldy + r, tile.valid, acc);
    }
  }
}

// Q6_K: one row's block -> 8 partial sums of isum, for NT tokens at once (the block
// is unpacked and its scales permuted once).
template <int NT>
inline void row_q6_k_tokens(const BlockQ6_K* blk, const int8_t* const* xb, const __m256i* bsums,
                            const __m512i P[4], __m256i* out) {
  const __m256i sc =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales)));
  const __m512i sz = _mm512_castsi256_si512(sc);
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i sh_a = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
  const __m512i sh_b = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
  __m512i acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m512i l = _mm512_loadu_si512(blk->ql + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qh + 32 * h)));
    const __m512i qa = _mm512_or_si512(_mm512_and_si512(l, m4),
                                       _mm512_and_si512(_mm512_sllv_epi64(qh, sh_a), m30));
    const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                       _mm512_and_si512(_mm512_srlv_epi64(qh, sh_b), m30));
    const __m512i sa = _mm512_permutexvar_epi16(P[2 * h], sz);
    const __m512i sb = _mm512_permutexvar_epi16(P[2 * h + 1], sz);
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      const __m512i pa = _mm512_maddubs_epi16(qa, _mm512_load_si512(xb[t] + 128 * h));
      const __m512i pb = _mm512_maddubs_epi16(qb, _mm512_load_si512(xb[t] + 128 * h + 64));
      acc[t] = _mm512_dpwssd_epi32(acc[t], pa, sa);
      acc[t] = _mm512_dpwssd_epi32(acc[t], pb, sb);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; ++t) {
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc, bsums[t]), 5);
    out[t] = _mm256_sub_epi32(
        _mm256_add_epi32(_mm512_castsi512_si256(acc[t]), _mm512_extracti64x4_epi64(acc[t], 1)),
        corr);
  }
}

inline __m256i row_q6_k(const BlockQ6_K* blk, const int8_t* xb, __m256i bsums, const __m512i P[4]) {
  __m256i out;
  row_q6_k_tokens<1>(blk, &xb, &bsums, P, &out);
  return out;
}

// Word indices: int16 lane i of a 64-element chunk c belongs to group 4c + i / 8.
inline __m512i perm_q6(int c) {
  alignas(64) int16_t idx[32];
  for (int i = 0; i < 32; ++i) idx[i] = static_cast<int16_t>(4 * c + i / 8);
  return _mm512_load_si512(idx);
}

// Blocks b (and b + 1 when `kPair`) of the tile's 16 rows: A = block b's isums, B =
// block b + 1's. The pair test is a template argument, not a run-time flag in the
// loop: with the flag, a copy of this kernel took 3.9 instead of 3.7 ns a block (in L2).
// The next tile's prefetches are spread over the rows (`pf`, one step per row): a
// step here is 32 row-blocks, and the ~100 prefetches a step needs, issued at once,
// filled the miss queue and stalled the loads behind them. Spread, one thread reads
// from memory at 38-39 GB/s instead of 25-27 (2048 x 32768, 3 runs each); the
// kernels with short steps (Q8_0, Q4_0, Q4_K) measured no gain from it.
template <bool kPair>
inline void q6_k_step(const RowTile& tile, int64_t b, const int8_t* xq, const int16_t* bs,
                      const __m512i P[4], __m512i& A, __m512i& B, TilePrefetcher& pf) {
  const __m256i bs0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs + 16 * b));
  const __m256i bs1 =
      kPair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs + 16 * b + 16)) : bs0;
  reduce16x2(
      [&](int i) {
        pf.step();
        const BlockQ6_K* blk = reinterpret_cast<const BlockQ6_K*>(tile.row[i]) + b;
        const __m256i v0 = row_q6_k(blk, xq + kQK_K * b, bs0, P);
        const __m256i v1 =
            kPair ? row_q6_k(blk + 1, xq + kQK_K * (b + 1), bs1, P) : _mm256_setzero_si256();
        return _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1);
      },
      A, B);
}

// ---- Several tokens for Q6_K, as k45_tokens does for Q4_K: block b of the tile's
// 16 rows is unpacked once into "lane = row" order (6-bit values as unsigned bytes,
// dword k = values 4k..4k+3 of a 32-value group), into a buffer that stays in L1,
// and each token goes over it with vpdpbusd: per 16-value group s = u . x, then
// A += sc x s, less 32 x sum(sc x bsum). These are the decode path's exact
// integers (row_q6_k), and the float step is the same, so results match bit for bit.
template <int NT>
void k6_tokens(const RowTile& tile, int64_t nb, TilePrefetcher& next, const Acts& a, int64_t t0,
               float* y, int64_t ldy, int64_t r) {
  const size_t bsz = sizeof(BlockQ6_K);
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i low_word = _mm512_set1_epi32(0xFFFF);
  alignas(64) Vec V[2][4][8];  // [half][32-value group][dword]
  alignas(64) Vec sc[16];      // the 16 scales, sign-extended
  alignas(64) Vec sc_pair[8];  // scales 2p | 2p + 1 as words, for vpdpwssd
  __m512 acc[NT];
  for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    next.step();
    const size_t at = b * bsz;
    for (int h = 0; h < 2; ++h) {
      __m512i qh[8], ql[8];
      transpose_16x8(tile.row, at + offsetof(BlockQ6_K, qh) + 32 * h, qh);
      for (int half_ql = 0; half_ql < 2; ++half_ql) {  // ql bytes 0-31 and 32-63 of this half
        transpose_16x8(tile.row, at + offsetof(BlockQ6_K, ql) + 64 * h + 32 * half_ql, ql);
        // Groups half_ql (low nibbles) and 2 + half_ql (high nibbles); their two
        // high bits are qh bits 2 half_ql and 4 + 2 half_ql.
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          const __m512i hl = half_ql ? _mm512_slli_epi32(qh[k], 2) : _mm512_slli_epi32(qh[k], 4);
          const __m512i hh = half_ql ? _mm512_srli_epi32(qh[k], 2) : qh[k];
          _mm512_store_si512(V[h][half_ql][k].v, _mm512_or_si512(_mm512_and_si512(ql[k], m4),
                                                                 _mm512_and_si512(hl, m30)));
          _mm512_store_si512(V[h][2 + half_ql][k].v,
                             _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(ql[k], 4), m4),
                                             _mm512_and_si512(hh, m30)));
        }
      }
    }
    __m512i S[4];
    transpose_16x4(tile.row, at + offsetof(BlockQ6_K, scales), S);
#pragma GCC unroll 16
    for (int q = 0; q < 16; ++q)
      _mm512_store_si512(sc[q].v,
                         _mm512_srai_epi32(_mm512_slli_epi32(S[q / 4], 24 - 8 * (q % 4)), 24));
#pragma GCC unroll 8
    for (int p = 0; p < 8; ++p) {
      const __m512i lo = _mm512_load_si512(sc[2 * p].v), hi = _mm512_load_si512(sc[2 * p + 1].v);
      _mm512_store_si512(
          sc_pair[p].v, _mm512_or_si512(_mm512_and_si512(lo, low_word), _mm512_slli_epi32(hi, 16)));
    }
    const __m512 d = f16_hi(gather32(tile, at + offsetof(BlockQ6_K, d) - 2));
    for (int j = 0; j < NT; ++j) {
      const int8_t* xb = a.qs(t0 + j) + kQK_K * b;
      __m512i A = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q) {
        // Values 16q..16q+15: half q / 8, group (q % 8) / 2, dwords 4 (q % 2) ...
        const Vec* v = V[q / 8][(q % 8) / 2] + 4 * (q % 2);
        int32_t xw[4];
        std::memcpy(xw, xb + 16 * q, 16);
        __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k)
          s = _mm512_dpbusd_epi32(s, _mm512_load_si512(v[k].v), _mm512_set1_epi32(xw[k]));
        A = _mm512_add_epi32(A, _mm512_mullo_epi32(s, _mm512_load_si512(sc[q].v)));
      }
      int32_t bs[8];  // the 16 bsums, two words a dword
      std::memcpy(bs, a.bsums(t0 + j) + 16 * b, 32);
      __m512i corr = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p)
        corr = _mm512_dpwssd_epi32(corr, _mm512_load_si512(sc_pair[p].v), _mm512_set1_epi32(bs[p]));
      A = _mm512_sub_epi32(A, _mm512_slli_epi32(corr, 5));
      acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(a.d(t0 + j)[b]), d),
                               _mm512_cvtepi32_ps(A), acc[j]);
    }
  }
  for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(y + (t0 + j) * ldy + r, tile.valid, acc[j]);
}

// Q6_K runs of at least this many tokens take k6_tokens, 8 tokens per pass over a
// tile. Unpacking a block into the buffer costs about a pass of its own: one thread
// over TinyLlama's Q6_K matrices, 8 tokens took 3.9x one token against 5.1x with
// the one-token kernel, 64 tokens 26x against 38x, 2 tokens 2.3x against 1.6x.
// Fewer tokens take q6_k_few_tokens (below), which unpacks in registers for all of
// them: 2 tokens 1.0-1.25x, 3 1.2-1.3x, 4 1.5-1.8x (the one-token kernel: 1.54-1.56,
// 2.09, 2.6-2.7), 6 3.2x (k6_tokens 3.4-3.9x); at 8 it took 5.0-5.2x.
constexpr int64_t kK6PackMinTokens = 7;

void k6_packed_kernel(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n,
                      float* y, int64_t ldy) {
  static constexpr TokenGroupFn kGroup[] = {nullptr,      k6_tokens<1>, k6_tokens<2>,
                                            k6_tokens<3>, k6_tokens<4>, k6_tokens<5>,
                                            k6_tokens<6>, k6_tokens<7>, k6_tokens<8>};
  by_token_groups(w, r0, r1, a, n, y, ldy, kGroup, 8);
}

// 2 to 4 tokens: each row block is unpacked once for all of them
// (row_q6_k_tokens), and each token's 16 rows then go through their own
// reduction, as the one-token loop below does for one. Bit for bit its results.
template <int NT>
void q6_k_few_tokens(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, float* y,
                     int64_t ldy, const __m512i P[4]) {
  const int64_t nb = w.cols / kQK_K;
  const int8_t* xq[NT];
  const float* xd[NT];
  const int16_t* bs[NT];
  for (int t = 0; t < NT; ++t) xq[t] = a.qs(t), xd[t] = a.d(t), bs[t] = a.bsums(t);
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, (nb + 1) / 2 * kR);
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
      const bool pair = b + 1 < nb;
      const int8_t* x0[NT];
      const int8_t* x1[NT];
      __m256i s0[NT], s1[NT];
      for (int t = 0; t < NT; ++t) {
        x0[t] = xq[t] + kQK_K * b;
        x1[t] = xq[t] + kQK_K * (b + 1);
        s0[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs[t] + 16 * b));
        s1[t] = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs[t] + 16 * b + 16))
                     : s0[t];
      }
      alignas(64) __m512i rows[NT][kR];
      for (int i = 0; i < kR; ++i) {
        pf.step();
        const BlockQ6_K* blk = reinterpret_cast<const BlockQ6_K*>(tile.row[i]) + b;
        __m256i v0[NT], v1[NT];
        row_q6_k_tokens<NT>(blk, x0, s0, P, v0);
        if (pair) {
          row_q6_k_tokens<NT>(blk + 1, x1, s1, P, v1);
        } else {
          for (int t = 0; t < NT; ++t) v1[t] = _mm256_setzero_si256();
        }
        for (int t = 0; t < NT; ++t)
          rows[t][i] = _mm512_inserti64x4(_mm512_castsi256_si512(v0[t]), v1[t], 1);
      }
      const __m512 g0 = f16_hi(gather32(tile, b * sizeof(BlockQ6_K) + 206));
      const __m512 g1 = pair ? f16_hi(gather32(tile, (b + 1) * sizeof(BlockQ6_K) + 206)) : g0;
      for (int t = 0; t < NT; ++t) {
        __m512i A, B;
        reduce16x2([&](int i) { return rows[t][i]; }, A, B);
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(xd[t][b]), g0), _mm512_cvtepi32_ps(A),
                                 acc[t]);
        if (pair)
          acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(xd[t][b + 1]), g1),
                                   _mm512_cvtepi32_ps(B), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ldy + r, tile.valid, acc[t]);
  }
}

void kernel_q6_k(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  if (n >= kK6PackMinTokens) return k6_packed_kernel(w, r0, r1, a, n, y, ldy);
  const int64_t nb = w.cols / kQK_K;
  const __m512i P[4] = {perm_q6(0), perm_q6(1), perm_q6(2), perm_q6(3)};
  if (n == 2) return q6_k_few_tokens<2>(w, r0, r1, a, y, ldy, P);
  if (n == 3) return q6_k_few_tokens<3>(w, r0, r1, a, y, ldy, P);
  if (n == 4) return q6_k_few_tokens<4>(w, r0, r1, a, y, ldy, P);
  if (n == 5) return q6_k_few_tokens<5>(w, r0, r1, a, y, ldy, P);
  if (n == 6) return q6_k_few_tokens<6>(w, r0, r1, a, y, ldy, P);
  auto scale = [](const RowTile& tile, int64_t b, float xd) {
    return _mm512_mul_ps(_mm512_set1_ps(xd), f16_hi(gather32(tile, b * sizeof(BlockQ6_K) + 206)));
  };
  // One token (decode): every other count took a path above.
  const int8_t* xq = a.qs(0);
  const float* xd = a.d(0);
  const int16_t* bs = a.bsums(0);
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, (nb + 1) / 2 * kR);
    __m512 acc = _mm512_setzero_ps();
    __m512i A, B;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      q6_k_step<true>(tile, b, xq, bs, P, A, B, pf);
      acc = _mm512_fmadd_ps(scale(tile, b, xd[b]), _mm512_cvtepi32_ps(A), acc);
      acc = _mm512_fmadd_ps(scale(tile, b + 1, xd[b + 1]), _mm512_cvtepi32_ps(B), acc);
    }
    if (b < nb) {  // odd block count: the last block alone
      q6_k_step<false>(tile, b, xq, bs, P, A, B, pf);
      acc = _mm512_fmadd_ps(scale(tile, b, xd[b]), _mm512_cvtepi32_ps(A), acc);
    }
    _mm512_mask_storeu_ps(y + r, tile.valid, acc);
  }
}

// ---- exp_canonical (matmul_internal.h) on 16 lanes, and what uses it.

inline __m512 exp16(__m512 x) {
  using namespace exp_consts;
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kLo)), _mm512_set1_ps(kHi));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kC1), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(kC2), r);
  __m512 p = _mm512_set1_ps(kP0);
  for (float c : {kP1, kP2, kP3, kP4, kP5}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
}

inline __mmask16 first_lanes(int64_t left) {
  return static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
}

void silu_mul(const float* gate, const float* up, int64_t count, float* out) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 m = first_lanes(count - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = exp16(_mm512_xor_ps(g, _mm512_set1_ps(-0.0f)));  // -g
    const __m512 v =
        _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, up + i));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}

// softmax_in_place with the exponentials in vectors.
inline float softmax16(float* scores, int len, float mx) {
  const __m512 m = _mm512_set1_ps(mx);
  for (int p = 0; p < len; p += 16) {
    const __mmask16 k = first_lanes(len - p);
    _mm512_mask_storeu_ps(scores + p, k,
                          exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, scores + p), m)));
  }
  return 1.0f / sum_in_order(scores, len);
}

// ---- Attention of one query head (the sequence attend_head spells out).

void attend(const float* q, const float* k, const float* v, int64_t stride, int len, int head_dim,
            float scale, float* scores, float* out) {
  const int nc = (head_dim + 15) / 16;
  auto mask = [head_dim](int c) { return first_lanes(head_dim - 16 * c); };
  // Scores, four positions at a time: each position's lanes form one dependent
  // chain of head_dim / 16 FMAs, so independent positions keep the unit busy.
  float mx = -INFINITY;
  int p = 0;
  for (; p + 4 <= len; p += 4) {
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
    for (int c = 0; c < nc; ++c) {
      const __mmask16 m = mask(c);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + 16 * c);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        a[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + (p + j) * stride + 16 * c), a[j]);
    }
    for (int j = 0; j < 4; ++j) {
      scores[p + j] = tree16(a[j]) * scale;
      mx = std::max(mx, scores[p + j]);
    }
  }
  for (; p < len; ++p) {
    __m512 a = _mm512_setzero_ps();
    for (int c = 0; c < nc; ++c) {
      const __mmask16 m = mask(c);
      a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + 16 * c),
                          _mm512_maskz_loadu_ps(m, k + p * stride + 16 * c), a);
    }
    scores[p] = tree16(a) * scale;
    mx = std::max(mx, scores[p]);
  }
  const float inv = softmax16(scores, len, mx);
  // Values: up to eight vectors of the output at a time stay in registers.
  for (int c0 = 0; c0 < nc; c0 += 8) {
    const int c1 = std::min(nc, c0 + 8);
    __m512 o[8];
    for (int c = c0; c < c1; ++c) o[c - c0] = _mm512_setzero_ps();
    for (p = 0; p < len; ++p) {
      const __m512 w = _mm512_set1_ps(scores[p] * inv);
      const float* vp = v + p * stride;
      for (int c = c0; c < c1; ++c)
        o[c - c0] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mask(c), vp + 16 * c), o[c - c0]);
    }
    for (int c = c0; c < c1; ++c) _mm512_mask_storeu_ps(out + 16 * c, mask(c), o[c - c0]);
  }
}

}  // namespace

const IsaKernels& avx512_kernels() {
  static const IsaKernels k = {"avx512",
                               kernel_float<FType::kF32>,
                               kernel_float<FType::kF16>,
                               kernel_float<FType::kBF16>,
                               kernel_q8_0,
                               kernel_q4_0,
                               kernel_k45<false>,
                               kernel_k45<true>,
                               kernel_q6_k,
                               quant_q8_0,
                               quant_q8_k,
                               attend,
                               silu_mul};
  return k;
}

}  // namespace swarm::mm

#endif  // __x86_64__
