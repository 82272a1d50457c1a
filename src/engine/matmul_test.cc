// matmul(): accuracy against a float64 reference, bit-exact agreement between ISAs,
// and batch invariance (a token's output does not depend on its batch, its position
// in the batch, or the thread count).
#include "engine/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/fp16.h"
#include "engine/matmul_internal.h"
#include "engine/ops.h"

namespace swarm {
namespace {

// ---- Test-only weight generation and dequantization (independent of quants.cc).

struct Weights {
  TensorType type;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  std::vector<double> deq;  // rows * cols, the values the bytes stand for
  WeightMatrix view() const { return {type, cols, rows, bytes.data()}; }
};

uint16_t rand_fp16(std::mt19937& rng, float lo, float hi) {
  return fp32_to_fp16(std::uniform_real_distribution<float>(lo, hi)(rng));
}

void rand_bytes(std::mt19937& rng, uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(rng());
}

// ggml's get_scale_min_k4, written out independently of the engine's copy.
void scale_min(int j, const uint8_t* q, int* d, int* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

void dequant_row(TensorType t, const uint8_t* src, double* y, int64_t n) {
  switch (t) {
    case TensorType::F32:
      for (int64_t i = 0; i < n; ++i) y[i] = reinterpret_cast<const float*>(src)[i];
      return;
    case TensorType::F16:
      for (int64_t i = 0; i < n; ++i)
        y[i] = fp16_to_fp32(reinterpret_cast<const uint16_t*>(src)[i]);
      return;
    case TensorType::BF16:
      for (int64_t i = 0; i < n; ++i)
        y[i] = bf16_to_fp32(reinterpret_cast<const uint16_t*>(src)[i]);
      return;
    case TensorType::Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(src)[b];
        for (int i = 0; i < 32; ++i) y[32 * b + i] = double(fp16_to_fp32(blk.d)) * blk.qs[i];
      }
      return;
    case TensorType::Q4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const BlockQ4_0& blk = reinterpret_cast<const BlockQ4_0*>(src)[b];
        const double d = fp16_to_fp32(blk.d);
        for (int i = 0; i < 16; ++i) {
          y[32 * b + i] = d * ((blk.qs[i] & 0xF) - 8);
          y[32 * b + i + 16] = d * ((blk.qs[i] >> 4) - 8);
        }
      }
      return;
    case TensorType::Q4_K:
    case TensorType::Q5_K: {
      const bool five = t == TensorType::Q5_K;
      for (int64_t b = 0; b < n / 256; ++b) {
        const uint8_t *scales, *qs, *qh = nullptr;
        double d, dmin;
        if (five) {
          const BlockQ5_K& blk = reinterpret_cast<const BlockQ5_K*>(src)[b];
          d = fp16_to_fp32(blk.d), dmin = fp16_to_fp32(blk.dmin);
          scales = blk.scales, qs = blk.qs, qh = blk.qh;
        } else {
          const BlockQ4_K& blk = reinterpret_cast<const BlockQ4_K*>(src)[b];
          d = fp16_to_fp32(blk.d), dmin = fp16_to_fp32(blk.dmin);
          scales = blk.scales, qs = blk.qs;
        }
        double* out = y + 256 * b;
        int is = 0, u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64) {
          int sc, m;
          scale_min(is + 0, scales, &sc, &m);
          const double d1 = d * sc, m1 = dmin * m;
          scale_min(is + 1, scales, &sc, &m);
          const double d2 = d * sc, m2 = dmin * m;
          for (int l = 0; l < 32; ++l)
            *out++ = d1 * ((qs[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
          for (int l = 0; l < 32; ++l)
            *out++ = d2 * ((qs[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
          qs += 32, is += 2, u1 <<= 2, u2 <<= 2;
        }
      }
      return;
    }
    case TensorType::Q6_K:
      for (int64_t b = 0; b < n / 256; ++b) {
        const BlockQ6_K& blk = reinterpret_cast<const BlockQ6_K*>(src)[b];
        const double d = fp16_to_fp32(blk.d);
        const uint8_t* ql = blk.ql;
        const uint8_t* qh = blk.qh;
        const int8_t* sc = blk.scales;
        double* out = y + 256 * b;
        for (int h = 0; h < 256; h += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[l] = d * sc[is + 0] * q1;
            out[l + 32] = d * sc[is + 2] * q2;
            out[l + 64] = d * sc[is + 4] * q3;
            out[l + 96] = d * sc[is + 6] * q4;
          }
          out += 128, ql += 64, qh += 32, sc += 8;
        }
      }
      return;
    default:
      FAIL() << "no test dequantizer for " << type_name(t);
  }
}

Weights make_weights(TensorType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  Weights w{t, rows, cols, std::vector<uint8_t>(row_size(t, cols) * rows), {}};
  const size_t rb = row_size(t, cols);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.bytes.data() + r * rb;
    switch (t) {
      case TensorType::F32:
        for (int64_t i = 0; i < cols; ++i) reinterpret_cast<float*>(row)[i] = nd(rng);
        break;
      case TensorType::F16:
        for (int64_t i = 0; i < cols; ++i)
          reinterpret_cast<uint16_t*>(row)[i] = fp32_to_fp16(nd(rng));
        break;
      case TensorType::BF16:
        for (int64_t i = 0; i < cols; ++i)
          reinterpret_cast<uint16_t*>(row)[i] = fp32_to_bf16(nd(rng));
        break;
      case TensorType::Q8_0:
        for (int64_t b = 0; b < cols / 32; ++b) {
          BlockQ8_0& blk = reinterpret_cast<BlockQ8_0*>(row)[b];
          rand_bytes(rng, reinterpret_cast<uint8_t*>(blk.qs), 32);  // includes -128
          blk.d = rand_fp16(rng, 1e-4f, 2e-3f);
        }
        break;
      case TensorType::Q4_0:
        for (int64_t b = 0; b < cols / 32; ++b) {
          BlockQ4_0& blk = reinterpret_cast<BlockQ4_0*>(row)[b];
          rand_bytes(rng, blk.qs, 16);
          blk.d = rand_fp16(rng, 1e-3f, 2e-2f);
        }
        break;
      case TensorType::Q4_K:
        for (int64_t b = 0; b < cols / 256; ++b) {
          BlockQ4_K& blk = reinterpret_cast<BlockQ4_K*>(row)[b];
          rand_bytes(rng, blk.scales, sizeof blk.scales);
          rand_bytes(rng, blk.qs, sizeof blk.qs);
          blk.d = rand_fp16(rng, 1e-4f, 1e-3f);
          blk.dmin = rand_fp16(rng, 1e-4f, 1e-3f);
        }
        break;
      case TensorType::Q5_K:
        for (int64_t b = 0; b < cols / 256; ++b) {
          BlockQ5_K& blk = reinterpret_cast<BlockQ5_K*>(row)[b];
          rand_bytes(rng, blk.scales, sizeof blk.scales);
          rand_bytes(rng, blk.qs, sizeof blk.qs);
          rand_bytes(rng, blk.qh, sizeof blk.qh);
          blk.d = rand_fp16(rng, 1e-4f, 1e-3f);
          blk.dmin = rand_fp16(rng, 1e-4f, 1e-3f);
        }
        break;
      case TensorType::Q6_K:
        for (int64_t b = 0; b < cols / 256; ++b) {
          BlockQ6_K& blk = reinterpret_cast<BlockQ6_K*>(row)[b];
          rand_bytes(rng, blk.ql, sizeof blk.ql);
          rand_bytes(rng, blk.qh, sizeof blk.qh);
          rand_bytes(rng, reinterpret_cast<uint8_t*>(blk.scales), sizeof blk.scales);
          blk.d = rand_fp16(rng, 1e-5f, 1e-4f);
        }
        break;
      default:
        ADD_FAILURE() << "no generator for " << type_name(t);
    }
  }
  w.deq.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    dequant_row(t, w.bytes.data() + r * rb, &w.deq[r * cols], cols);
  return w;
}

// Activations with the features that stress quantization: outliers, a block of
// zeros, a constant block, and a few rows that are all zero.
std::vector<float> make_x(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n * cols);
  for (auto& v : x) v = nd(rng);
  for (int64_t t = 0; t < n; ++t) {
    float* row = &x[t * cols];
    row[rng() % cols] *= 40.0f;
    if (cols >= 64) {
      for (int i = 0; i < 32; ++i) row[i] = 0.0f;
      for (int i = 32; i < 64; ++i) row[i] = 0.75f;
    }
    if (t % 11 == 5)
      for (int64_t i = 0; i < cols; ++i) row[i] = 0.0f;
  }
  return x;
}

std::vector<float> run(const mm::IsaKernels& k, const Weights& w, const float* x, int64_t n,
                       ThreadPool& pool) {
  std::vector<float> y(n * w.rows, -1.0f);
  mm::matmul_with(k, w.view(), x, n, y.data(), pool);
  return y;
}

std::vector<const mm::IsaKernels*> all_isas() {
  std::vector<const mm::IsaKernels*> v;
  for (const char* name : {"portable", "avx2", "avx512"})
    if (const mm::IsaKernels* k = mm::kernels_for(name)) v.push_back(k);
  return v;
}

struct Case {
  TensorType type;
  int64_t cols;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return std::string(type_name(info.param.type)) + "_" + std::to_string(info.param.cols);
}

class MatmulTest : public testing::TestWithParam<Case> {};

// Error bound: activation quantization moves each x_i by at most half a step of its
// block (amax / 254), float32 accumulation adds a relative error well below 1e-5.
TEST_P(MatmulTest, MatchesFloat64Reference) {
  const Case c = GetParam();
  const int64_t rows = 37, n = 5;
  const Weights w = make_weights(c.type, rows, c.cols, 1);
  const std::vector<float> x = make_x(n, c.cols, 2);
  const mm::ActKind kind = mm::act_kind(c.type);
  const int64_t qblock = kind == mm::ActKind::kQ8_0 ? 32 : kind == mm::ActKind::kQ8_K ? 256 : 0;
  ThreadPool pool(1);
  for (const mm::IsaKernels* k : all_isas()) {
    const std::vector<float> y = run(*k, w, x.data(), n, pool);
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = &x[t * c.cols];
      for (int64_t r = 0; r < rows; ++r) {
        const double* wr = &w.deq[r * c.cols];
        double ref = 0, mag = 0, qerr = 0;
        for (int64_t i = 0; i < c.cols; ++i) {
          ref += wr[i] * xt[i];
          mag += std::fabs(wr[i] * xt[i]);
          if (qblock) {
            double amax = 0;
            const int64_t b0 = i / qblock * qblock;
            for (int64_t j = b0; j < b0 + qblock; ++j)
              amax = std::max(amax, double(std::fabs(xt[j])));
            qerr += std::fabs(wr[i]) * amax / 254.0 * 1.0001;
          }
        }
        const double tol = qerr + 2e-5 * mag + 1e-30;
        ASSERT_NEAR(y[t * rows + r], ref, tol)
            << k->name << " t=" << t << " r=" << r << " mag=" << mag;
      }
    }
  }
}

// Every ISA follows the same operation sequence, so results are identical bits.
TEST_P(MatmulTest, IsasAgreeBitForBit) {
  const Case c = GetParam();
  const int64_t rows = 53, n = 9;
  const Weights w = make_weights(c.type, rows, c.cols, 3);
  const std::vector<float> x = make_x(n, c.cols, 4);
  ThreadPool pool(1);
  const std::vector<float> ref = run(mm::portable_kernels(), w, x.data(), n, pool);
  for (const mm::IsaKernels* k : all_isas()) {
    const std::vector<float> y = run(*k, w, x.data(), n, pool);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_EQ(std::memcmp(&y[i], &ref[i], 4), 0)
          << k->name << " vs portable at t=" << i / rows << " r=" << i % rows << ": " << y[i]
          << " vs " << ref[i];
  }
}

// y[t] computed alone equals row t of any batch holding x[t], at any position,
// with 1 or 2 threads, on every ISA.
TEST_P(MatmulTest, BatchInvariant) {
  const Case c = GetParam();
  const int64_t rows = 45;
  const int64_t max_n = 64;
  const Weights w = make_weights(c.type, rows, c.cols, 5);
  const std::vector<float> x = make_x(max_n, c.cols, 6);
  ThreadPool pool1(1), pool2(2);
  for (const mm::IsaKernels* k : all_isas()) {
    // Each token alone, one thread: the reference.
    std::vector<float> alone(max_n * rows);
    for (int64_t t = 0; t < max_n; ++t) {
      const std::vector<float> y = run(*k, w, &x[t * c.cols], 1, pool1);
      std::memcpy(&alone[t * rows], y.data(), rows * 4);
    }
    for (ThreadPool* pool : {&pool1, &pool2}) {
      for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 64}) {
        for (int64_t off : {int64_t{0}, max_n - n, (max_n - n) / 2}) {
          const std::vector<float> y = run(*k, w, &x[off * c.cols], n, *pool);
          ASSERT_EQ(std::memcmp(y.data(), &alone[off * rows], n * rows * 4), 0)
              << k->name << " threads=" << pool->size() << " n=" << n << " offset=" << off;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulTest,
                         testing::Values(Case{TensorType::F32, 100}, Case{TensorType::F32, 256},
                                         Case{TensorType::F16, 72}, Case{TensorType::F16, 90},
                                         Case{TensorType::F16, 512}, Case{TensorType::BF16, 40},
                                         Case{TensorType::BF16, 512}, Case{TensorType::Q8_0, 96},
                                         Case{TensorType::Q8_0, 512}, Case{TensorType::Q4_0, 96},
                                         Case{TensorType::Q4_0, 512}, Case{TensorType::Q4_K, 256},
                                         Case{TensorType::Q4_K, 768}, Case{TensorType::Q5_K, 256},
                                         Case{TensorType::Q5_K, 768}, Case{TensorType::Q6_K, 256},
                                         Case{TensorType::Q6_K, 768}),
                         case_name);

TEST(MatmulIsa, ReportsAKnownIsa) {
  const std::string isa = matmul_isa();
  EXPECT_TRUE(isa == "portable" || isa == "avx2" || isa == "avx512") << isa;
  EXPECT_NE(mm::kernels_for(isa.c_str()), nullptr);
}

// A weight row of all-equal values against x and -x gives exactly opposite results:
// a cheap check that rounding of activations is symmetric.
TEST(MatmulIsa, SignSymmetric) {
  const Weights w = make_weights(TensorType::Q8_0, 16, 256, 9);
  std::vector<float> x = make_x(2, 256, 10);
  for (int i = 0; i < 256; ++i) x[256 + i] = -x[i];
  ThreadPool pool(1);
  for (const mm::IsaKernels* k : all_isas()) {
    const std::vector<float> y = run(*k, w, x.data(), 2, pool);
    for (int r = 0; r < 16; ++r) EXPECT_EQ(y[r], -y[16 + r]) << k->name;
  }
}

// matmul_group gives each matrix exactly what matmul gives, with row counts that
// do not fill the last chunk and types that share one activation format (Q4_K and
// Q6_K, as a Q4_K_M layer's q, k and v), and falls back where formats differ.
TEST(MatmulGroupTest, EqualsOneMatmulPerMatrix) {
  const int64_t cols = 256;
  struct Set {
    TensorType a, b, c;
  };
  for (Set set : {Set{TensorType::Q4_K, TensorType::Q4_K, TensorType::Q6_K},
                  Set{TensorType::Q8_0, TensorType::Q8_0, TensorType::Q8_0},
                  Set{TensorType::F16, TensorType::F16, TensorType::F16},
                  Set{TensorType::Q8_0, TensorType::F16, TensorType::Q4_K}}) {
    const Weights w[3] = {make_weights(set.a, 70, cols, 11), make_weights(set.b, 19, cols, 12),
                          make_weights(set.c, 33, cols, 13)};
    const WeightMatrix views[3] = {w[0].view(), w[1].view(), w[2].view()};
    const WeightMatrix* ws[3] = {&views[0], &views[1], &views[2]};
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      for (int64_t n : {1, 6}) {
        const std::vector<float> x = make_x(n, cols, 14);
        for (const mm::IsaKernels* k : all_isas()) {
          std::vector<float> y[3];
          float* ys[3];
          for (int i = 0; i < 3; ++i) {
            y[i].assign(n * views[i].rows, -1.0f);
            ys[i] = y[i].data();
          }
          mm::matmul_group_with(*k, ws, ys, 3, x.data(), n, pool);
          for (int i = 0; i < 3; ++i)
            ASSERT_EQ(y[i], run(*k, w[i], x.data(), n, pool))
                << type_name(views[i].type) << " matrix " << i << " " << k->name << " n " << n;
        }
      }
    }
  }
}

// swiglu gives exactly what two matmuls and silu_mul give, on every ISA, for
// decode and prefill, one thread or two; and falls back for unequal matrices.
TEST(SwigluTest, EqualsTwoMatmulsAndSiluMul) {
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_K, TensorType::F16}) {
    const int64_t rows = 93, cols = 256;
    const Weights gate = make_weights(t, rows, cols, 3), up = make_weights(t, rows, cols, 4);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      for (int64_t n : {1, 7}) {
        const std::vector<float> x = make_x(n, cols, 5);
        for (const mm::IsaKernels* k : all_isas()) {
          std::vector<float> g = run(*k, gate, x.data(), n, pool),
                             u = run(*k, up, x.data(), n, pool);
          silu_mul(g.data(), u.data(), n * rows, g.data());
          std::vector<float> g2(n * rows, -1.0f), u2(n * rows, -1.0f);
          mm::swiglu_with(*k, gate.view(), up.view(), x.data(), n, g2.data(), u2.data(), pool);
          for (int64_t i = 0; i < n * rows; ++i) {
            ASSERT_EQ(g2[i], g[i]) << type_name(t) << " " << k->name << " n " << n << " i " << i;
            ASSERT_EQ(u2[i], u[i]) << type_name(t) << " " << k->name << " n " << n << " i " << i;
          }
        }
      }
    }
  }
  // Unequal shapes take the separate calls.
  const Weights gate = make_weights(TensorType::Q8_0, 40, 256, 6),
                up = make_weights(TensorType::F16, 40, 256, 7);
  ThreadPool pool(2);
  const std::vector<float> x = make_x(3, 256, 8);
  std::vector<float> g = run(*all_isas().back(), gate, x.data(), 3, pool),
                     u = run(*all_isas().back(), up, x.data(), 3, pool);
  silu_mul(g.data(), u.data(), 3 * 40, g.data());
  std::vector<float> g2(3 * 40), u2(3 * 40);
  mm::swiglu_with(*all_isas().back(), gate.view(), up.view(), x.data(), 3, g2.data(), u2.data(),
                  pool);
  EXPECT_EQ(g2, g);
  EXPECT_EQ(u2, u);
}

// exp_canonical is within 2 ulp of e^x over its range, and 1 at 0.
TEST(ExpTest, CanonicalExpWithinTwoUlp) {
  EXPECT_EQ(mm::exp_canonical(0.0f), 1.0f);
  int worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.3f + (88.3f + 87.3f) * static_cast<float>(i) / 200000.0f;
    const float got = mm::exp_canonical(x);
    const float want = static_cast<float>(std::exp(static_cast<double>(x)));
    int32_t a, b;
    std::memcpy(&a, &got, 4);
    std::memcpy(&b, &want, 4);
    worst = std::max(worst, std::abs(a - b));
  }
  EXPECT_LE(worst, 2);
  // Clamped ends: tiny and finite below, finite above.
  EXPECT_GT(mm::exp_canonical(-1000.0f), 0.0f);
  EXPECT_LT(mm::exp_canonical(-1000.0f), 1e-37f);
  EXPECT_TRUE(std::isfinite(mm::exp_canonical(1000.0f)));
}

// SiLU through every ISA's silu_mul gives the portable bits, for counts with and
// without a vector tail, including values past the clamps, zeros of both signs and
// out aliasing gate; and it is the float64 SiLU within float32 rounding.
TEST(ExpTest, SiluMulIsasAgreeBitForBit) {
  std::vector<float> g, u;
  for (int i = 0; i < 4001; ++i) {
    g.push_back(-120.0f + 0.06f * static_cast<float>(i));
    u.push_back(0.5f + 0.001f * static_cast<float>(i % 97));
  }
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 200.0f, -200.0f}) g.push_back(v), u.push_back(1.0f);
  for (int64_t count :
       {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{17}, static_cast<int64_t>(g.size())}) {
    std::vector<float> ref(count);
    mm::silu_mul_portable(g.data(), u.data(), count, ref.data());
    for (int64_t i = 0; i < count; ++i) {
      const double want = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
      // Below g = -88.3 the clamped exponential leaves about g * 4.5e-39 where SiLU
      // is smaller still: zero for any activation.
      ASSERT_NEAR(ref[i], want, 1e-6 * std::abs(want) + 1e-34) << "i " << i << " g " << g[i];
    }
    for (const mm::IsaKernels* k : all_isas()) {
      std::vector<float> out(g.begin(), g.begin() + count);
      k->silu_mul(out.data(), u.data(), count, out.data());
      ASSERT_EQ(std::memcmp(out.data(), ref.data(), count * 4), 0) << k->name << " count " << count;
    }
  }
}

// Attention of one head: every ISA gives the same bits, for head sizes with and
// without a tail of 16, lengths with and without a tail of four; and the result is
// the float64 softmax-weighted sum within float32 rounding.
TEST(AttendTest, IsasAgreeBitForBitAndMatchFloat64) {
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int head_dim : {64, 128, 80, 8}) {
    for (int len : {1, 3, 4, 9, 130}) {
      const int64_t stride = 2 * head_dim + 16;  // K and V of a position side by side, then padding
      std::vector<float> q(head_dim), kv(static_cast<size_t>(len) * stride);
      for (float& f : q) f = 2 * u(rng);
      for (float& f : kv) f = u(rng);
      const float* k = kv.data();
      const float* v = kv.data() + head_dim;
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      std::vector<double> ref(head_dim, 0.0), s(len);
      double mx = -1e300, sum = 0;
      for (int p = 0; p < len; ++p) {
        double d = 0;
        for (int i = 0; i < head_dim; ++i) d += double{q[i]} * k[p * stride + i];
        s[p] = d * scale;
        mx = std::max(mx, s[p]);
      }
      for (int p = 0; p < len; ++p) sum += s[p] = std::exp(s[p] - mx);
      for (int p = 0; p < len; ++p)
        for (int i = 0; i < head_dim; ++i) ref[i] += s[p] / sum * v[p * stride + i];
      std::vector<float> first;
      for (const mm::IsaKernels* isa : all_isas()) {
        std::vector<float> scores(len), out(head_dim + 16, 7.0f);
        isa->attend(q.data(), k, v, stride, len, head_dim, scale, scores.data(), out.data());
        for (int i = head_dim; i < head_dim + 16; ++i)
          ASSERT_EQ(out[i], 7.0f) << isa->name << " wrote past head_dim";
        out.resize(head_dim);
        for (int i = 0; i < head_dim; ++i)
          EXPECT_NEAR(out[i], ref[i], 1e-5)
              << isa->name << " head_dim " << head_dim << " len " << len << " i " << i;
        if (first.empty()) {
          first = out;
        } else {
          for (int i = 0; i < head_dim; ++i)
            ASSERT_EQ(first[i], out[i])
                << isa->name << " head_dim " << head_dim << " len " << len << " i " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace swarm
