// AVX2 + FMA + F16C kernels. Each output follows the canonical sequence of
// matmul_internal.h exactly; the vector lanes hold different outputs (weight rows),
// never different parts of one output's float sum, except for float weights whose
// canonical sequence is itself 16 lanes wide.
//
// Quantized kernels take 8 weight rows at a time: per block, each row's exact integer
// dot product comes out of maddubs/madd as 8 partial sums, a transposing reduction
// turns 8 rows' partials into one vector of 8 block sums (lane = row), and one FMA per
// block advances the 8 accumulators. Tokens are walked inside a row tile so a tile's
// weights stay in cache across a prefill batch.
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/fp16.h"
#include "engine/matmul_internal.h"
#include "engine/scratch_buffer.h"

namespace swarm::mm {
namespace {

constexpr int kR = 8;  // weight rows per quantized tile

// lane i of the result = sum of the 8 lanes of v[i].
inline __m256i reduce8(const __m256i v[8]) {
  const __m256i a = _mm256_hadd_epi32(v[0], v[1]);
  const __m256i b = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i c = _mm256_hadd_epi32(v[4], v[5]);
  const __m256i d = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i ab = _mm256_hadd_epi32(a, b);
  const __m256i cd = _mm256_hadd_epi32(c, d);
  return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20),
                          _mm256_permute2x128_si256(ab, cd, 0x31));
}

inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline int hsum8_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Quantizes 32 floats with the canonical rule; returns the sum of the quants.
inline int quant32(const float* x, int8_t* q, float* d_out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
  }
  const float d = hmax8(amax) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m256 vid = _mm256_set1_ps(id);
  const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
  __m256i qi[4];
  __m256i sum = _mm256_setzero_si256();
  for (int i = 0; i < 4; ++i) {
    qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
    qi[i] = _mm256_max_epi32(_mm256_min_epi32(qi[i], hi), lo);
    sum = _mm256_add_epi32(sum, qi[i]);
  }
  const __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]);
  const __m256i p23 = _mm256_packs_epi32(qi[2], qi[3]);
  __m256i p = _mm256_packs_epi16(p01, p23);
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
  *d_out = d;
  return hsum8_epi32(sum);
}

void quant_q8_0(const float* x, int64_t cols, uint8_t* out, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(out + l.qs);
  float* d = reinterpret_cast<float*>(out + l.d);
  int32_t* sums = reinterpret_cast<int32_t*>(out + l.sums);
  for (int64_t b = 0; b < cols / 32; ++b) sums[b] = quant32(x + 32 * b, qs + 32 * b, d + b);
}

void quant_q8_k(const float* x, int64_t cols, uint8_t* out, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(out + l.qs);
  float* d = reinterpret_cast<float*>(out + l.d);
  int16_t* bsums = reinterpret_cast<int16_t*>(out + l.sums);
  int16_t* sums32 = reinterpret_cast<int16_t*>(out + l.sums32);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < cols / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < kQK_K; i += 8)
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
    const float db = hmax8(amax) / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
    int8_t* q = qs + b * kQK_K;
    for (int i = 0; i < kQK_K; i += 32) {
      __m256i qi[4];
      for (int k = 0; k < 4; ++k) {
        qi[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8 * k), vid));
        qi[k] = _mm256_max_epi32(_mm256_min_epi32(qi[k], hi), lo);
      }
      __m256i p =
          _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
      p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), p);
    }
    d[b] = db;
    q8k_fill_sums(q, bsums + 16 * b, sums32 + 8 * b);
  }
}

// ---- Float weights: 16 canonical lanes as two ymm accumulators per output.

enum class FType { kF32, kF16, kBF16 };

template <FType T>
inline void load16(const uint8_t* row, int64_t i, __m256& lo, __m256& hi) {
  if constexpr (T == FType::kF32) {
    const float* p = reinterpret_cast<const float*>(row) + i;
    lo = _mm256_loadu_ps(p);
    hi = _mm256_loadu_ps(p + 8);
  } else if constexpr (T == FType::kF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + i;
    lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  } else {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + i;
    lo = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
    hi = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8))), 16));
  }
}

template <FType T>
inline float widen(const uint8_t* row, int64_t i) {
  if constexpr (T == FType::kF32) return reinterpret_cast<const float*>(row)[i];
  if constexpr (T == FType::kF16) return fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
  return bf16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
}

// The canonical tree over 16 lanes held as lo (0..7) and hi (8..15).
inline float tree16(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

template <FType T>
void kernel_float(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                  int64_t ldy) {
  constexpr int R = 4;
  const size_t rb = row_size(w.type, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t cols = w.cols, main = cols / 16 * 16;
  alignas(32) float wt[R][16];
  alignas(32) float xt[16];
  for (int64_t r = r0; r < r1; r += R) {
    const uint8_t* row[R];
    for (int i = 0; i < R; ++i) row[i] = base + std::min(r + i, r1 - 1) * rb;
    if (main < cols) {
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < 16; ++j) wt[i][j] = main + j < cols ? widen<T>(row[i], main + j) : 0.0f;
    }
    TilePrefetcher pf(w, r + R, R, main / 16);
    for (int64_t t = 0; t < n; ++t) {
      const float* x = a.f32(t);
      __m256 acc[R][2];
      for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
      for (int64_t k = 0; k < main; k += 16) {
        if (t == 0) pf.step();
        const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
        for (int i = 0; i < R; ++i) {
          __m256 w0, w1;
          load16<T>(row[i], k, w0, w1);
          acc[i][0] = _mm256_fmadd_ps(w0, x0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(w1, x1, acc[i][1]);
        }
      }
      if (main < cols) {
        for (int j = 0; j < 16; ++j) xt[j] = main + j < cols ? x[main + j] : 0.0f;
        const __m256 x0 = _mm256_load_ps(xt), x1 = _mm256_load_ps(xt + 8);
        for (int i = 0; i < R; ++i) {
          acc[i][0] = _mm256_fmadd_ps(_mm256_load_ps(wt[i]), x0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(_mm256_load_ps(wt[i] + 8), x1, acc[i][1]);
        }
      }
      for (int i = 0; i < R && r + i < r1; ++i) y[t * ldy + r + i] = tree16(acc[i][0], acc[i][1]);
    }
  }
}

// ---- Quantized weights: tiles of 8 rows, lane = row.

struct RowTile {
  const uint8_t* row[kR];
  int valid;
};

inline RowTile make_tile(const WeightMatrix& w, int64_t r, int64_t r1) {
  RowTile t;
  const size_t rb = row_size(w.type, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  for (int i = 0; i < kR; ++i) t.row[i] = base + std::min(r + i, r1 - 1) * rb;
  t.valid = static_cast<int>(std::min<int64_t>(kR, r1 - r));
  return t;
}

inline void store_tile(const RowTile& tile, __m256 acc, float* y) {
  if (tile.valid == kR) {
    _mm256_storeu_ps(y, acc);
  } else {
    alignas(32) float tmp[kR];
    _mm256_store_ps(tmp, acc);
    for (int i = 0; i < tile.valid; ++i) y[i] = tmp[i];
  }
}

// fp16 field at byte offset `off` of each row, widened: lane i = row i. Put
// together with inserts: eight 2-byte stores read back as one 16-byte load cannot
// be forwarded, and that stall sat on every block's path to its FMA. Over
// L2-resident rows, one thread pinned to one of this VM's cores: Q8_0 18.3-18.8
// -> 22.9-23.0 GB/s, Q4_0 9.6-9.8 -> 12.3-12.4, Q4_K 18.8-18.9 -> 20.5-20.6 (the
// other core, in a slow spell, measured the same either way).
inline __m256 gather_f16(const RowTile& tile, size_t off) {
  uint16_t h[kR];
  for (int i = 0; i < kR; ++i) std::memcpy(&h[i], tile.row[i] + off, 2);
  __m128i v = _mm_cvtsi32_si128(h[0]);
  v = _mm_insert_epi16(v, h[1], 1);
  v = _mm_insert_epi16(v, h[2], 2);
  v = _mm_insert_epi16(v, h[3], 3);
  v = _mm_insert_epi16(v, h[4], 4);
  v = _mm_insert_epi16(v, h[5], 5);
  v = _mm_insert_epi16(v, h[6], 6);
  v = _mm_insert_epi16(v, h[7], 7);
  return _mm256_cvtph_ps(v);
}

// Runs of several tokens (speculative verification, a few sequences decoded
// together) go over each tile once per token, from L1. What depends on the weights
// alone is worked out once per tile into a buffer the tokens share: each row's
// quants made unsigned for maddubs (Q8_0: |w|; Q4_0: the nibbles spread to bytes)
// and the block scales widened (lane = row). The integers and floats are the
// same ones, so results match the one-token path bit for bit. Whole passes over
// TinyLlama's matrices on one thread, as a multiple of one token's pass
// (matmul_bench --small-batches, SWARM_ISA=avx2, two runs each): Q8_0 4 tokens
// 2.8-3.0 (3.5-3.7 before), 8 4.7-5.0 (7.0-7.1), 16 8.5-9.6 (10.6-14.1); Q4_0 2
// tokens 1.5-1.8 (1.9-2.0), 4 2.2-2.6 (3.8), 8 3.6-4.6 (7.4-7.6), 16 6.1-9.0 (15).
struct TileScratch {
  ScratchBuffer quants, scales;
};

// The driver of those runs: per row tile (rows r..r+kR), prepare(tile, b, rows,
// scales) fills block b's kR prepared rows and kScales widened scale vectors
// once, then token(tile, r, t, prepared, scales) computes and stores token t's
// outputs.
template <typename Prepared, int kScales, typename PrepareFn, typename TokenFn>
void prepared_tiles(const WeightMatrix& w, int64_t r0, int64_t r1, int64_t n, int64_t nb,
                    PrepareFn prepare, TokenFn token) {
  thread_local TileScratch scratch;
  Prepared* prep = scratch.quants.get<Prepared>(static_cast<size_t>(nb) * kR);
  __m256* sc = scratch.scales.get<__m256>(static_cast<size_t>(nb) * kScales);
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t b = 0; b < nb; ++b) {
      pf.step();
      prepare(tile, b, prep + b * kR, sc + b * kScales);
    }
    for (int64_t t = 0; t < n; ++t) token(tile, r, t, prep, sc);
  }
}

// Q8_0 saves less per token than Q4_0 (one sign against three unpacking steps),
// and for 2 tokens the extra pass over the tile measured no faster.
constexpr int64_t kQ8PrecomputeMinTokens = 3;

void kernel_q8_0(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  const int64_t nb = w.cols / kQK8_0;
  const __m256i ones = _mm256_set1_epi16(1);
  if (n >= kQ8PrecomputeMinTokens) {
    auto prepare = [](const RowTile& tile, int64_t b, __m256i* aw, __m256* sc) {
      for (int i = 0; i < kR; ++i) {
        const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(tile.row[i]) + b;
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
        aw[i] = _mm256_sign_epi8(wv, wv);
      }
      sc[0] = gather_f16(tile, b * sizeof(BlockQ8_0));
    };
    auto token = [&](const RowTile& tile, int64_t r, int64_t t, const __m256i* aw,
                     const __m256* sc) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
        __m256i p[kR];
        for (int i = 0; i < kR; ++i) {
          const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(tile.row[i]) + b;
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
          p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[b * kR + i], _mm256_sign_epi8(xv, wv)),
                                   ones);
        }
        const __m256 isum = _mm256_cvtepi32_ps(reduce8(p));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(sc[b], _mm256_set1_ps(xd[b])), isum, acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    };
    return prepared_tiles<__m256i, 1>(w, r0, r1, n, nb, prepare, token);
  }
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        if (t == 0) pf.step();
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
        __m256i p[kR];
        for (int i = 0; i < kR; ++i) {
          const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(tile.row[i]) + b;
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
          p[i] = _mm256_madd_epi16(
              _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
        }
        const __m256 isum = _mm256_cvtepi32_ps(reduce8(p));
        const __m256 scale =
            _mm256_mul_ps(gather_f16(tile, b * sizeof(BlockQ8_0)), _mm256_set1_ps(xd[b]));
        acc = _mm256_fmadd_ps(scale, isum, acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    }
  }
}

void kernel_q4_0(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  const int64_t nb = w.cols / kQK4_0;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  if (n > 1) {  // see kernel_q8_0
    auto prepare = [&](const RowTile& tile, int64_t b, __m256i* qs, __m256* sc) {
      for (int i = 0; i < kR; ++i) {
        const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(tile.row[i]) + b;
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
        qs[i] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
      }
      sc[0] = gather_f16(tile, b * sizeof(BlockQ4_0));
    };
    auto token = [&](const RowTile& tile, int64_t r, int64_t t, const __m256i* qs,
                     const __m256* sc) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int32_t* xs = a.sums(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
        __m256i p[kR];
        for (int i = 0; i < kR; ++i)
          p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(qs[b * kR + i], xv), ones);
        const __m256i isum = _mm256_sub_epi32(reduce8(p), _mm256_set1_epi32(8 * xs[b]));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(sc[b], _mm256_set1_ps(xd[b])), _mm256_cvtepi32_ps(isum),
                              acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    };
    return prepared_tiles<__m256i, 1>(w, r0, r1, n, nb, prepare, token);
  }
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int32_t* xs = a.sums(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        if (t == 0) pf.step();
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
        __m256i p[kR];
        for (int i = 0; i < kR; ++i) {
          const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(tile.row[i]) + b;
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
          const __m256i qv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
          p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(qv, xv), ones);
        }
        const __m256i isum = _mm256_sub_epi32(reduce8(p), _mm256_set1_epi32(8 * xs[b]));
        const __m256 scale =
            _mm256_mul_ps(gather_f16(tile, b * sizeof(BlockQ4_0)), _mm256_set1_ps(xd[b]));
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    }
  }
}

// Byte-shuffle controls that broadcast int16 lane j of a 128-bit lane.
inline __m256i word_bcast_ctrl(int j) {
  return _mm256_set1_epi16(static_cast<int16_t>(0x0100 * (2 * j + 1) + 2 * j));
}

// What row_k45 below derives from a row block's weights alone, kept for the tokens
// of a run (see TileScratch): the unsigned quants for c = 0..3 (low, high), the scales
// as words in both halves, the mins as words. As a multiple of one token's pass
// (as for Q8_0 there): Q4_K 2 tokens 1.8 (1.9 before), 4 2.8 (3.7), 8 4.8 (7.3),
// 16 8.8 (14.4); Q5_K 4 tokens 2.5 (4.0), 16 7.3 (14.6).
struct K45Prepared {
  __m256i q[8];
  __m256i sc;
  __m128i mins;
};

template <bool kFive>
inline void prepare_k45(const uint8_t* blkp, K45Prepared& out) {
  const uint8_t *scales, *qs, *qh = nullptr;
  if constexpr (kFive) {
    const BlockQ5_K* blk = reinterpret_cast<const BlockQ5_K*>(blkp);
    scales = blk->scales, qs = blk->qs, qh = blk->qh;
  } else {
    const BlockQ4_K* blk = reinterpret_cast<const BlockQ4_K*>(blkp);
    scales = blk->scales, qs = blk->qs;
  }
  alignas(16) uint8_t sm[16];
  k4_unpack16(scales, sm);
  const __m128i smv = _mm_load_si128(reinterpret_cast<const __m128i*>(sm));
  out.mins = _mm_cvtepu8_epi16(_mm_srli_si128(smv, 8));
  out.sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(smv));
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256i hv = _mm256_setzero_si256();
  if constexpr (kFive) hv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
    __m256i lo = _mm256_and_si256(q, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    if constexpr (kFive) {
      // Bit 2c of qh is bit 4 of the low-nibble quant, bit 2c+1 of the high one.
      const __m256i b16 = _mm256_set1_epi8(0x10);
      auto bit_to_4 = [&](int k) {
        return k <= 4 ? _mm256_sll_epi16(hv, _mm_cvtsi32_si128(4 - k))
                      : _mm256_srl_epi16(hv, _mm_cvtsi32_si128(k - 4));
      };
      lo = _mm256_or_si256(lo, _mm256_and_si256(bit_to_4(2 * c), b16));
      hi = _mm256_or_si256(hi, _mm256_and_si256(bit_to_4(2 * c + 1), b16));
    }
    out.q[2 * c] = lo;
    out.q[2 * c + 1] = hi;
  }
}

// One prepared row block against one token's activations: p1 = partial sums of
// isum1, p2 = partial sums of isum2.
inline void row_k45_prepared(const K45Prepared& pr, const int8_t* xb, __m128i s32, __m256i& p1,
                             __m256i& p2) {
  p2 = _mm256_zextsi128_si256(_mm_madd_epi16(pr.mins, s32));
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m256i pl = _mm256_maddubs_epi16(
        pr.q[2 * c], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64 * c)));
    const __m256i ph = _mm256_maddubs_epi16(
        pr.q[2 * c + 1], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64 * c + 32)));
    acc = _mm256_add_epi32(
        acc, _mm256_madd_epi16(pl, _mm256_shuffle_epi8(pr.sc, word_bcast_ctrl(2 * c))));
    acc = _mm256_add_epi32(
        acc, _mm256_madd_epi16(ph, _mm256_shuffle_epi8(pr.sc, word_bcast_ctrl(2 * c + 1))));
  }
  p1 = acc;
}

// Q4_K / Q5_K, one row block against one token (the decode path).
template <bool kFive>
inline void row_k45(const uint8_t* blkp, const int8_t* xb, __m128i s32, __m256i& p1, __m256i& p2) {
  K45Prepared pr;
  prepare_k45<kFive>(blkp, pr);
  row_k45_prepared(pr, xb, s32, p1, p2);
}

template <bool kFive>
void kernel_k45(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                int64_t ldy) {
  const int64_t nb = w.cols / kQK_K;
  const size_t bsz = kFive ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  if (n > 1) {
    auto prepare = [&](const RowTile& tile, int64_t b, K45Prepared* rows, __m256* sc) {
      for (int i = 0; i < kR; ++i) prepare_k45<kFive>(tile.row[i] + b * bsz, rows[i]);
      sc[0] = gather_f16(tile, b * bsz);
      sc[1] = gather_f16(tile, b * bsz + 2);
    };
    auto token = [&](const RowTile& tile, int64_t r, int64_t t, const K45Prepared* prep,
                     const __m256* sc) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int16_t* s32 = a.sums32(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const __m128i sv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s32 + 8 * b));
        __m256i p1[kR], p2[kR];
        for (int i = 0; i < kR; ++i)
          row_k45_prepared(prep[b * kR + i], xq + kQK_K * b, sv, p1[i], p2[i]);
        const __m256 i1 = _mm256_cvtepi32_ps(reduce8(p1));
        const __m256 i2 = _mm256_cvtepi32_ps(reduce8(p2));
        const __m256 dx = _mm256_set1_ps(xd[b]);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dx, sc[2 * b]), i1, acc);
        acc = _mm256_fnmadd_ps(_mm256_mul_ps(dx, sc[2 * b + 1]), i2, acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    };
    return prepared_tiles<K45Prepared, 2>(w, r0, r1, n, nb, prepare, token);
  }
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int16_t* s32 = a.sums32(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        if (t == 0) pf.step();
        const __m128i sv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s32 + 8 * b));
        __m256i p1[kR], p2[kR];
        for (int i = 0; i < kR; ++i)
          row_k45<kFive>(tile.row[i] + b * bsz, xq + kQK_K * b, sv, p1[i], p2[i]);
        const __m256 i1 = _mm256_cvtepi32_ps(reduce8(p1));
        const __m256 i2 = _mm256_cvtepi32_ps(reduce8(p2));
        const __m256 dx = _mm256_set1_ps(xd[b]);
        const __m256 s1 = _mm256_mul_ps(dx, gather_f16(tile, b * bsz));
        const __m256 s2 = _mm256_mul_ps(dx, gather_f16(tile, b * bsz + 2));
        acc = _mm256_fmadd_ps(s1, i1, acc);
        acc = _mm256_fnmadd_ps(s2, i2, acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    }
  }
}

// The 6-bit quants of half h of a Q6_K block as unsigned bytes: q[k] holds groups
// 2k and 2k + 1 of that half (low 128 bits, high).
inline void q6_unpack_half(const BlockQ6_K* blk, int h, __m256i q[4]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qh + 32 * h));
  const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->ql + 64 * h));
  const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->ql + 64 * h + 32));
  q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
  q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
  q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
  q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                         _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
}

// The pshufb control that spreads the scales of groups 2k, 2k + 1 of a half (held
// as words in both 128-bit lanes) as madd wants them.
inline __m256i q6_scale_ctrl(int k) {
  return _mm256_setr_epi8(4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                          4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                          4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
                          4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
                          4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3);
}

// One row block against one token's activations (the decode path). The loops are
// unrolled (pragmas): left rolled, GCC built each shuffle control from the loop
// counter at run time, and a decode pass over TinyLlama's Q6_K matrices on one
// thread took 64.6 ms instead of 33.7. (Built from prepare_q6_k below, it kept 16
// vectors live and ran a fifth slower over L2-resident rows.)
inline __m256i row_q6_k(const BlockQ6_K* blk, const int8_t* xb, __m256i bsums) {
  const __m256i sc =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales)));
  // isum = sum_g sc_g * dot_g - 32 * sum_g sc_g * bsum_g
  __m256i acc =
      _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc, bsums), 5));
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    __m256i q[4];
    q6_unpack_half(blk, h, q);
    // Scales of this half (groups 8h..8h+7) in both 128-bit lanes.
    const __m256i sch =
        h == 0 ? _mm256_permute2x128_si256(sc, sc, 0x00) : _mm256_permute2x128_si256(sc, sc, 0x11);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i p = _mm256_maddubs_epi16(
          q[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 128 * h + 32 * k)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sch, q6_scale_ctrl(k))));
    }
  }
  return acc;
}

// What row_q6_k derives from a row block's weights alone (see K45Prepared): the
// 6-bit quants of each half, k = 0..3, the scales as words, and each pair of
// groups' scales spread as madd wants them. Q6_K runs of 4 tokens take 1.6-1.8x
// one token's pass (3.8 before), 16 tokens 4.7-4.8 (14.3).
struct Q6Prepared {
  __m256i q[8];
  __m256i sc;
  __m256i sck[8];  // half h, k: the scales of groups 2k, 2k + 1 spread as madd wants them
};

inline void prepare_q6_k(const BlockQ6_K* blk, Q6Prepared& out) {
  out.sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales)));
  const __m256i sch[2] = {_mm256_permute2x128_si256(out.sc, out.sc, 0x00),
                          _mm256_permute2x128_si256(out.sc, out.sc, 0x11)};
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    q6_unpack_half(blk, h, out.q + 4 * h);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) out.sck[4 * h + k] = _mm256_shuffle_epi8(sch[h], q6_scale_ctrl(k));
  }
}

// row_q6_k's integers from a prepared block, in the same order.
inline __m256i row_q6_k_prepared(const Q6Prepared& pr, const int8_t* xb, __m256i bsums) {
  __m256i acc = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_slli_epi32(_mm256_madd_epi16(pr.sc, bsums), 5));
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i p = _mm256_maddubs_epi16(
          pr.q[4 * h + k],
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 128 * h + 32 * k)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, pr.sck[4 * h + k]));
    }
  }
  return acc;
}

void kernel_q6_k(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  const int64_t nb = w.cols / kQK_K;
  if (n > 1) {
    auto prepare = [](const RowTile& tile, int64_t b, Q6Prepared* rows, __m256* sc) {
      for (int i = 0; i < kR; ++i)
        prepare_q6_k(reinterpret_cast<const BlockQ6_K*>(tile.row[i]) + b, rows[i]);
      sc[0] = gather_f16(tile, b * sizeof(BlockQ6_K) + 208);
    };
    auto token = [&](const RowTile& tile, int64_t r, int64_t t, const Q6Prepared* prep,
                     const __m256* sc) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int16_t* bs = a.bsums(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i bsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs + 16 * b));
        __m256i p[kR];
        for (int i = 0; i < kR; ++i)
          p[i] = row_q6_k_prepared(prep[b * kR + i], xq + kQK_K * b, bsv);
        const __m256 isum = _mm256_cvtepi32_ps(reduce8(p));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(xd[b]), sc[b]), isum, acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    };
    return prepared_tiles<Q6Prepared, 1>(w, r0, r1, n, nb, prepare, token);
  }
  for (int64_t r = r0; r < r1; r += kR) {
    const RowTile tile = make_tile(w, r, r1);
    TilePrefetcher pf(w, r + kR, kR, nb);
    for (int64_t t = 0; t < n; ++t) {
      const int8_t* xq = a.qs(t);
      const float* xd = a.d(t);
      const int16_t* bs = a.bsums(t);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        if (t == 0) pf.step();
        const __m256i bsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs + 16 * b));
        __m256i p[kR];
        for (int i = 0; i < kR; ++i)
          p[i] = row_q6_k(reinterpret_cast<const BlockQ6_K*>(tile.row[i]) + b, xq + kQK_K * b, bsv);
        const __m256 isum = _mm256_cvtepi32_ps(reduce8(p));
        const __m256 scale =
            _mm256_mul_ps(_mm256_set1_ps(xd[b]), gather_f16(tile, b * sizeof(BlockQ6_K) + 208));
        acc = _mm256_fmadd_ps(scale, isum, acc);
      }
      store_tile(tile, acc, y + t * ldy + r);
    }
  }
}

// ---- exp_canonical (matmul_internal.h) on 8 lanes, and what uses it.

inline __m256 exp8(__m256 x) {
  using namespace exp_consts;
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kLo)), _mm256_set1_ps(kHi));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kC1), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(kC2), r);
  __m256 p = _mm256_set1_ps(kP0);
  for (float c : {kP1, kP2, kP3, kP4, kP5}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

void silu_mul(const float* gate, const float* up, int64_t count, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp8(_mm256_xor_ps(g, sign));  // e^-g
    _mm256_storeu_ps(
        out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  for (; i < count; ++i) out[i] = silu_mul_canonical(gate[i], up[i]);
}

// softmax_in_place with the exponentials in vectors.
inline float softmax8(float* scores, int len, float mx) {
  const __m256 m = _mm256_set1_ps(mx);
  int p = 0;
  for (; p + 8 <= len; p += 8)
    _mm256_storeu_ps(scores + p, exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), m)));
  for (; p < len; ++p) scores[p] = exp_canonical(scores[p] - mx);
  return 1.0f / sum_in_order(scores, len);
}

// ---- Attention of one query head (the sequence attend_head spells out); the 16
// canonical lanes are two ymm, lo (0..7) and hi (8..15).

inline __m256i lane_mask(int left) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

void attend(const float* q, const float* k, const float* v, int64_t stride, int len, int head_dim,
            float scale, float* scores, float* out) {
  const int nc = (head_dim + 15) / 16;
  float mx = -INFINITY;
  for (int p = 0; p < len; ++p) {
    const float* kp = k + p * stride;
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int c = 0; c < nc; ++c) {
      const int left = head_dim - 16 * c;
      if (left >= 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(q + 16 * c), _mm256_loadu_ps(kp + 16 * c), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(q + 16 * c + 8), _mm256_loadu_ps(kp + 16 * c + 8), hi);
      } else {
        const __m256i m0 = lane_mask(left), m1 = lane_mask(left - 8);
        lo = _mm256_fmadd_ps(_mm256_maskload_ps(q + 16 * c, m0), _mm256_maskload_ps(kp + 16 * c, m0), lo);
        hi = _mm256_fmadd_ps(_mm256_maskload_ps(q + 16 * c + 8, m1), _mm256_maskload_ps(kp + 16 * c + 8, m1), hi);
      }
    }
    scores[p] = tree16(lo, hi) * scale;
    mx = std::max(mx, scores[p]);
  }
  const float inv = softmax8(scores, len, mx);
  const int n8 = (head_dim + 7) / 8;
  for (int c0 = 0; c0 < n8; c0 += 8) {
    const int c1 = std::min(n8, c0 + 8);
    __m256 o[8];
    for (int c = c0; c < c1; ++c) o[c - c0] = _mm256_setzero_ps();
    for (int p = 0; p < len; ++p) {
      const __m256 w = _mm256_set1_ps(scores[p] * inv);
      const float* vp = v + p * stride;
      for (int c = c0; c < c1; ++c)
        o[c - c0] = _mm256_fmadd_ps(w, _mm256_maskload_ps(vp + 8 * c, lane_mask(head_dim - 8 * c)), o[c - c0]);
    }
    for (int c = c0; c < c1; ++c) _mm256_maskstore_ps(out + 8 * c, lane_mask(head_dim - 8 * c), o[c - c0]);
  }
}

}  // namespace

const IsaKernels& avx2_kernels() {
  static const IsaKernels k = {"avx2",
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
