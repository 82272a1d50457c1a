// Scalar reference (de)quantization. Every routine reproduces the arithmetic of
// ggml's reference code (ggml-quants.c: dequantize_row_*, quantize_row_*_ref)
// operation for operation, in the same order and in float32, so that the bytes
// we write and the floats we read are the bytes and floats llama.cpp would.
// Blocks are copied in and out with memcpy, so `src` and `dst` need no alignment.
#include "engine/quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/fp16.h"

// Fused multiply-adds round once instead of twice and would change results;
// GCC does not fuse in ISO C++ mode, clang needs to be told.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace swarm {
namespace {

// All-zero groups below this are treated as exactly zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Rounds to the nearest integer, ties to even, as ggml's nearest_int does: adding
// 1.5 * 2^23 leaves round(f) in the low mantissa bits. Exact for |f| <= 2^22; for
// larger or non-finite f the result is meaningless but defined (ggml asserts).
int nearest_int(float f) {
  const float biased = f + 12582912.f;
  return static_cast<int>(bits_from_f32(biased) & 0x007fffffu) - 0x00400000;
}

// C's float-to-int truncation, made defined for NaN and huge values (ggml's casts
// would be undefined there; finite weights never get near the limit).
int truncate_to_int(float v) {
  if (!(std::fabs(v) < 1e9f)) return 0;
  return static_cast<int>(v);
}

template <typename Block>
Block load_block(const void* base, int64_t i) {
  Block b;
  std::memcpy(&b, static_cast<const uint8_t*>(base) + i * static_cast<int64_t>(sizeof(Block)),
              sizeof(Block));
  return b;
}

template <typename Block>
void store_block(void* base, int64_t i, const Block& b) {
  std::memcpy(static_cast<uint8_t*>(base) + i * static_cast<int64_t>(sizeof(Block)), &b,
              sizeof(Block));
}

// ---------------------------------------------------------------------------
// The 6-bit scale/min packing shared by Q4_K and Q5_K. Sub-blocks 0-3 keep their
// scale and min in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep their
// low 4 bits in the nibbles of bytes 8-11 and their top 2 bits in the spare top
// bits of bytes 0-3 (scales) and 4-7 (mins).

void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Inverse of get_scale_min_k4 for all eight sub-blocks; each value must be < 64.
void pack_scales_mins_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
  }
}

// ---------------------------------------------------------------------------
// Dequantization.

void dequantize_q4_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ4_0 b = load_block<BlockQ4_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int x0 = (b.qs[j] & 0x0F) - 8;
      const int x1 = (b.qs[j] >> 4) - 8;
      y[j] = x0 * d;
      y[j + kQK4_0 / 2] = x1 * d;
    }
    y += kQK4_0;
  }
}

void dequantize_q8_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ8_0 b = load_block<BlockQ8_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = b.qs[j] * d;
    y += kQK8_0;
  }
}

// 256 values in four chunks of 64: a chunk's 32 bytes hold sub-block 2c in their
// low nibbles and sub-block 2c+1 in their high nibbles. y = d*sc*q - dmin*m.
void dequantize_q4_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ4_K b = load_block<BlockQ4_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    const float dmin = fp16_to_fp32(b.dmin);
    const uint8_t* q = b.qs;
    for (int is = 0; is < kQK_K / 32; is += 2) {
      uint8_t sc, m;
      get_scale_min_k4(is, b.scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = dmin * m;
      get_scale_min_k4(is + 1, b.scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
    }
  }
}

// As Q4_K, plus a fifth bit: element l of chunk c takes bit 2c (low nibble) or
// bit 2c+1 (high nibble) of qh[l].
void dequantize_q5_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ5_K b = load_block<BlockQ5_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    const float dmin = fp16_to_fp32(b.dmin);
    const uint8_t* ql = b.qs;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < kQK_K / 32; is += 2) {
      uint8_t sc, m;
      get_scale_min_k4(is, b.scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = dmin * m;
      get_scale_min_k4(is + 1, b.scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + ((b.qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((b.qh[l] & u2) ? 16 : 0)) - m2;
      ql += 32;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

// Two halves of 128. In a half, ql[l] holds elements l (low nibble) and l+64 (high),
// ql[l+32] holds l+32 and l+96, and qh[l] their top two bits in bit pairs 0,2,4,6.
// Each group of 16 has an int8 scale; q is stored with a bias of 32.
void dequantize_q6_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ6_K b = load_block<BlockQ6_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    const uint8_t* ql = b.ql;
    const uint8_t* qh = b.qh;
    const int8_t* sc = b.scales;
    for (int half = 0; half < 2; ++half) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void dequantize_q8_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const BlockQ8_K b = load_block<BlockQ8_K>(src, i);
    for (int j = 0; j < kQK_K; ++j) y[j] = b.d * b.qs[j];
    y += kQK_K;
  }
}

// ---------------------------------------------------------------------------
// Scale search helpers of the K-quants (ggml's make_qx_quants, make_qkx2_quants).

// Symmetric quantization of n values to [-nmax, nmax-1], weighted by x^2: tries the
// scale that maps the largest |x| to -nmax and 18 nearby ones, keeps the one with
// the best weighted least-squares fit. Writes L in [0, 2*nmax), returns the scale.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  auto level = [nmax](float v) { return std::max(-nmax, std::min(nmax - 1, nearest_int(v))); };
  float iscale = -nmax / max;
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = level(iscale * x[i]);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = level(iscale * x[i]);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale * x[i]));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Asymmetric quantization x ~ scale*L - the_min with L in [0, nmax] and the_min >= 0:
// starts from the (min, max) range, then tries nstep+1 scales around it, fitting
// scale and min by weighted least squares for each and keeping the lowest weighted
// squared error. Writes L, returns the scale, stores the (positive) min.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  auto level = [nmax](float v) {
    return static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int(v))));
  };
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = level(iscale * (x[i] - min));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const uint8_t l = level(iscale * (x[i] - min));
      Laux[i] = l;
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * (diff * diff);
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// ---------------------------------------------------------------------------
// Quantization.

void quantize_q8_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    BlockQ8_0 b;
    b.d = fp32_to_fp16(d);
    // Quants come from the float32 scale, not the fp16 one stored (as in ggml).
    for (int j = 0; j < kQK8_0; ++j)
      b.qs[j] = static_cast<int8_t>(truncate_to_int(std::round(x[j] * id)));
    store_block(dst, i, b);
    x += kQK8_0;
  }
}

void quantize_q4_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    // The value of largest magnitude, with its sign, maps to level 0 (-8); the
    // opposite extreme then lands on 16 and is clamped to 15.
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int q0 = std::min(15, truncate_to_int(x[j] * id + 8.5f));
      const int q1 = std::min(15, truncate_to_int(x[j + kQK4_0 / 2] * id + 8.5f));
      b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
    store_block(dst, i, b);
    x += kQK4_0;
  }
}

// Q4_K and Q5_K share everything but the number of levels and the bit packing:
// fit each sub-block of 32 with make_qkx2_quants, quantize the eight scales and
// eight mins to 6 bits against the block maxima, then requantize the values
// against the scales actually stored. Writes L in [0, nmax].
void quantize_k_scale_min_block(const float* x, int nmax, float rmin, float rdelta, int nstep,
                                uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales_out,
                                uint8_t* L) {
  constexpr int kSub = kQK_K / 32;
  float scales[kSub];
  float mins[kSub];
  float weights[32];
  uint8_t Laux[32];
  float max_scale = 0;  // scales are positive since the min is subtracted
  float max_min = 0;
  for (int j = 0; j < kSub; ++j) {
    const float* xs = x + 32 * j;
    // Weight each value by the sub-block's rms plus its own magnitude.
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] =
        make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }

  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[kSub];
  uint8_t lm[kSub];
  for (int j = 0; j < kSub; ++j) {
    // ggml stores nearest_int into a uint8_t before clamping; keep that wrap.
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
  pack_scales_mins_k4(ls, lm, scales_out);
  *d_out = fp32_to_fp16(max_scale / 63.f);
  *dmin_out = fp32_to_fp16(max_min / 63.f);

  const float d_all = fp16_to_fp32(*d_out);
  const float dmin_all = fp16_to_fp32(*dmin_out);
  for (int j = 0; j < kSub; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, scales_out, &sc, &m);
    const float d = d_all * sc;
    if (!d) continue;  // keeps the levels from the fit, as ggml does
    const float dm = dmin_all * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

void quantize_q4_k(const float* x, void* dst, int64_t nb) {
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < nb; ++i) {
    BlockQ4_K b;
    quantize_k_scale_min_block(x, 15, -1.f, 0.1f, 20, &b.d, &b.dmin, b.scales, L);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + l + 32] << 4));
    store_block(dst, i, b);
    x += kQK_K;
  }
}

void quantize_q5_k(const float* x, void* dst, int64_t nb) {
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < nb; ++i) {
    BlockQ5_K b;
    quantize_k_scale_min_block(x, 31, -0.5f, 0.1f, 15, &b.d, &b.dmin, b.scales, L);
    std::memset(b.qh, 0, sizeof(b.qh));
    for (int c = 0; c < 4; ++c) {
      const uint8_t m1 = static_cast<uint8_t>(1 << (2 * c));
      const uint8_t m2 = static_cast<uint8_t>(2 << (2 * c));
      for (int l = 0; l < 32; ++l) {
        int l1 = L[64 * c + l];
        int l2 = L[64 * c + l + 32];
        if (l1 > 15) {
          l1 -= 16;
          b.qh[l] |= m1;
        }
        if (l2 > 15) {
          l2 -= 16;
          b.qh[l] |= m2;
        }
        b.qs[32 * c + l] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
    store_block(dst, i, b);
    x += kQK_K;
  }
}

void quantize_q6_k(const float* x, void* dst, int64_t nb) {
  constexpr int kSub = kQK_K / 16;
  int8_t L[kQK_K];
  float scales[kSub];
  for (int64_t i = 0; i < nb; ++i) {
    BlockQ6_K b;
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kSub; ++ib) {
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
      const float abs_scale = std::fabs(scales[ib]);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&b, 0, sizeof(b));
      store_block(dst, i, b);
      x += kQK_K;
      continue;
    }

    // The sub-block scale of largest magnitude becomes -128 (signs follow the fit).
    const float iscale = -128.f / max_scale;
    b.d = fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < kSub; ++ib)
      b.scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));

    const float d_all = fp16_to_fp32(b.d);
    for (int j = 0; j < kSub; ++j) {
      const float d = d_all * b.scales[j];
      if (!d) continue;  // keeps the levels from the fit, as ggml does
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }

    for (int half = 0; half < 2; ++half) {
      const int8_t* Lh = L + 128 * half;
      uint8_t* ql = b.ql + 64 * half;
      uint8_t* qh = b.qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                     ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
    store_block(dst, i, b);
    x += kQK_K;
  }
}

// Activations for K-quant dot products: one float scale per 256 (the largest
// magnitude maps to -127) and sums of each 16 quants, which the dot products use
// to apply the weights' mins.
void quantize_q8_k(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    BlockQ8_K b;
    float max = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (!amax) {
      // ggml leaves bsums unwritten here; zero is what they would sum to.
      std::memset(&b, 0, sizeof(b));
    } else {
      const float iscale = -127.f / max;
      for (int j = 0; j < kQK_K; ++j)
        b.qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
      for (int j = 0; j < kQK_K / 16; ++j) {
        int sum = 0;
        for (int ii = 0; ii < 16; ++ii) sum += b.qs[16 * j + ii];
        b.bsums[j] = static_cast<int16_t>(sum);
      }
      b.d = 1 / iscale;
    }
    store_block(dst, i, b);
    x += kQK_K;
  }
}

// Number of blocks in n elements of t, or -1 if t is not one we convert or n is
// not a whole number of blocks.
int64_t block_count(TensorType t, int64_t n) {
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q8_0:
    case TensorType::Q4_0:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
    case TensorType::Q8_K:
      break;
    default:
      return -1;
  }
  const int bs = type_traits(t).block_size;
  if (bs <= 0 || n < 0 || n % bs != 0) return -1;
  return n / bs;
}

}  // namespace

bool dequantize_row(TensorType t, const void* src, float* dst, int64_t n) {
  const int64_t nb = block_count(t, n);
  if (nb < 0 || (nb > 0 && (src == nullptr || dst == nullptr))) return false;
  switch (t) {
    case TensorType::F32:
      if (nb > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return true;
    case TensorType::F16:
    case TensorType::BF16: {
      const bool half = t == TensorType::F16;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, static_cast<const uint8_t*>(src) + 2 * i, 2);
        dst[i] = half ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      return true;
    }
    case TensorType::Q8_0:
      dequantize_q8_0(src, dst, nb);
      return true;
    case TensorType::Q4_0:
      dequantize_q4_0(src, dst, nb);
      return true;
    case TensorType::Q4_K:
      dequantize_q4_k(src, dst, nb);
      return true;
    case TensorType::Q5_K:
      dequantize_q5_k(src, dst, nb);
      return true;
    case TensorType::Q6_K:
      dequantize_q6_k(src, dst, nb);
      return true;
    case TensorType::Q8_K:
      dequantize_q8_k(src, dst, nb);
      return true;
    default:
      return false;
  }
}

bool quantize_row(TensorType t, const float* src, void* dst, int64_t n) {
  const int64_t nb = block_count(t, n);
  if (nb < 0 || (nb > 0 && (src == nullptr || dst == nullptr))) return false;
  switch (t) {
    case TensorType::F32:
      if (nb > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return true;
    case TensorType::F16:
    case TensorType::BF16: {
      const bool half = t == TensorType::F16;
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = half ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
        std::memcpy(static_cast<uint8_t*>(dst) + 2 * i, &h, 2);
      }
      return true;
    }
    case TensorType::Q8_0:
      quantize_q8_0(src, dst, nb);
      return true;
    case TensorType::Q4_0:
      quantize_q4_0(src, dst, nb);
      return true;
    case TensorType::Q4_K:
      quantize_q4_k(src, dst, nb);
      return true;
    case TensorType::Q5_K:
      quantize_q5_k(src, dst, nb);
      return true;
    case TensorType::Q6_K:
      quantize_q6_k(src, dst, nb);
      return true;
    case TensorType::Q8_K:
      quantize_q8_k(src, dst, nb);
      return true;
    default:
      return false;
  }
}

}  // namespace swarm
