// Tests for the scalar reference (de)quantizers. Hand-built blocks pin down each
// type's bit layout (the expected values are worked out by hand from the layout,
// not by calling the code under test); round trips bound the error each type's
// math allows; a few properties of ggml's reference quantizers are checked exactly.
#include "engine/quants.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/fp16.h"
#include "engine/tensor_types.h"

namespace swarm {
namespace {

constexpr uint16_t kHalfOne = 0x3C00;      // 1.0
constexpr uint16_t kHalfHalf = 0x3800;     // 0.5
constexpr uint16_t kHalfQuarter = 0x3400;  // 0.25

std::vector<float> Dequantize(TensorType t, const void* src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n), -12345.f);
  EXPECT_TRUE(dequantize_row(t, src, out.data(), n)) << type_name(t);
  return out;
}

std::vector<uint8_t> Quantize(TensorType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> out(row_size(t, n), 0xCD);
  EXPECT_TRUE(quantize_row(t, x.data(), out.data(), n)) << type_name(t);
  return out;
}

// ---------------------------------------------------------------------------
// Hand-built blocks.

TEST(QuantsDequantize, Q4_0LowNibbleIsElementJHighNibbleIsJPlus16) {
  BlockQ4_0 b;
  b.d = kHalfHalf;
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Dequantize(TensorType::Q4_0, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(y[j + 16], (7 - j) * 0.5f) << j;
  }
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[16], 3.5f);
  EXPECT_EQ(y[31], -4.0f);
}

TEST(QuantsDequantize, Q8_0IsSignedQuantTimesScale) {
  BlockQ8_0 b;
  b.d = kHalfQuarter;
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
  b.qs[0] = -128;
  b.qs[31] = 127;
  const std::vector<float> y = Dequantize(TensorType::Q8_0, &b, 32);
  EXPECT_EQ(y[0], -32.0f);
  EXPECT_EQ(y[31], 31.75f);
  for (int j = 1; j < 31; ++j) EXPECT_EQ(y[j], (j - 16) * 0.25f) << j;
}

TEST(QuantsDequantize, Q8_0BlocksFollowEachOtherInARow) {
  BlockQ8_0 b[2];
  b[0].d = kHalfOne;
  b[1].d = kHalfHalf;
  for (int j = 0; j < 32; ++j) b[0].qs[j] = b[1].qs[j] = static_cast<int8_t>(j);
  const std::vector<float> y = Dequantize(TensorType::Q8_0, b, 64);
  EXPECT_EQ(y[5], 5.0f);
  EXPECT_EQ(y[32 + 5], 2.5f);
}

// Scales and mins of the eight sub-blocks, chosen so that sub-blocks 4-7 need
// their top two bits (values >= 16), and the bytes they pack to, worked out by hand:
// bytes 0-3: sc[j] | (sc[j+4] >> 4) << 6; bytes 4-7: m[j] | (m[j+4] >> 4) << 6;
// bytes 8-11: (sc[j+4] & 15) | (m[j+4] & 15) << 4.
constexpr int kSc[8] = {1, 2, 3, 4, 17, 33, 63, 48};
constexpr int kMin[8] = {5, 6, 7, 8, 20, 40, 9, 63};
constexpr uint8_t kPackedScales[12] = {65, 130, 195, 196, 69, 134, 7, 200, 0x41, 0x81, 0x9F, 0xF0};

// The 4-bit quant of element e of a K block whose qs[32c+l] = l%16 | (15 - l%16) << 4.
int NibblePattern(int e) {
  const int r = e % 64, l = r % 32;
  return r < 32 ? (l % 16) : 15 - (l % 16);
}

TEST(QuantsDequantize, Q4_KUnpacksSixBitScalesAndMinsOfBothHalves) {
  BlockQ4_K b;
  b.d = kHalfOne;
  b.dmin = kHalfHalf;
  std::memcpy(b.scales, kPackedScales, 12);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * c + l] = static_cast<uint8_t>((l % 16) | ((15 - l % 16) << 4));
  const std::vector<float> y = Dequantize(TensorType::Q4_K, &b, 256);
  for (int e = 0; e < 256; ++e) {
    const int sub = e / 32;  // chunk c holds sub-blocks 2c (low nibbles) and 2c+1 (high)
    EXPECT_EQ(y[e], 1.0f * kSc[sub] * NibblePattern(e) - 0.5f * kMin[sub]) << e;
  }
  EXPECT_EQ(y[0], -2.5f);     // sub 0: 1*0 - 0.5*5
  EXPECT_EQ(y[133], 75.0f);   // sub 4: 17*5 - 0.5*20
  EXPECT_EQ(y[161], 442.0f);  // sub 5: 33*14 - 0.5*40
  EXPECT_EQ(y[195], 184.5f);  // sub 6: 63*3 - 0.5*9
  EXPECT_EQ(y[255], -31.5f);  // sub 7: 48*0 - 0.5*63
}

TEST(QuantsDequantize, Q5_KTakesFifthBitFromQhByChunk) {
  BlockQ5_K b;
  b.d = kHalfOne;
  b.dmin = kHalfHalf;
  std::memcpy(b.scales, kPackedScales, 12);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * c + l] = static_cast<uint8_t>((l % 16) | ((15 - l % 16) << 4));
  // Even l: bits 0,2,4,6 (the low-nibble halves of every chunk); odd l: 1,3,5,7.
  for (int l = 0; l < 32; ++l) b.qh[l] = (l % 2 == 0) ? 0x55 : 0xAA;
  const std::vector<float> y = Dequantize(TensorType::Q5_K, &b, 256);
  for (int e = 0; e < 256; ++e) {
    const int r = e % 64, l = r % 32, sub = e / 32;
    const bool high_half = r >= 32;
    const int q = NibblePattern(e) + ((l % 2 == 1) == high_half ? 16 : 0);
    EXPECT_EQ(y[e], 1.0f * kSc[sub] * q - 0.5f * kMin[sub]) << e;
  }
  EXPECT_EQ(y[0], 13.5f);   // sub 0, q = 0 + 16
  EXPECT_EQ(y[1], -1.5f);   // sub 0, q = 1, no fifth bit
  EXPECT_EQ(y[33], 57.0f);  // sub 1, q = 14 + 16: 2*30 - 3
}

TEST(QuantsDequantize, Q6_KSplitsLowNibblesAndHighBitsAcrossHalves) {
  BlockQ6_K b;
  std::memset(&b, 0, sizeof(b));
  b.d = kHalfQuarter;
  for (int k = 0; k < 16; ++k) b.scales[k] = static_cast<int8_t>(k % 2 ? -(k + 1) : (k + 1));
  b.ql[0] = 0x21;       // element 0 low bits 1, element 64 low bits 2
  b.qh[0] = 0xE4;       // top bits: element 0 -> 0, 32 -> 1, 64 -> 2, 96 -> 3
  b.ql[64 + 5] = 0x9F;  // second half: element 133 low bits 15, element 197 low bits 9
  const std::vector<float> y = Dequantize(TensorType::Q6_K, &b, 256);
  EXPECT_EQ(y[0], 0.25f * 1 * (1 - 32));     // -7.75
  EXPECT_EQ(y[32], 0.25f * 3 * (16 - 32));   // -12
  EXPECT_EQ(y[64], 0.25f * 5 * (34 - 32));   // 2.5
  EXPECT_EQ(y[96], 0.25f * 7 * (48 - 32));   // 28
  EXPECT_EQ(y[133], 0.25f * 9 * (15 - 32));  // -38.25
  EXPECT_EQ(y[197], 0.25f * 13 * (9 - 32));  // -74.75
  EXPECT_EQ(y[16], 0.25f * -2 * -32);        // untouched quant 0, negative scale: 16
  for (int e = 0; e < 256; ++e) {
    if (e == 0 || e == 32 || e == 64 || e == 96 || e == 133 || e == 197) continue;
    EXPECT_EQ(y[e], 0.25f * b.scales[e / 16] * -32) << e;
  }
}

TEST(QuantsDequantize, Q8_KIsFloatScaleTimesQuant) {
  BlockQ8_K b;
  std::memset(&b, 0, sizeof(b));
  b.d = 0.125f;
  for (int j = 0; j < 256; ++j) b.qs[j] = static_cast<int8_t>(j - 128);
  const std::vector<float> y = Dequantize(TensorType::Q8_K, &b, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], 0.125f * (j - 128)) << j;
}

TEST(QuantsDequantize, F16AndBF16BitPatterns) {
  const uint16_t h[6] = {0x3C00, 0xC000, 0x0001, 0x7C00, 0x8000, 0x7E00};
  const std::vector<float> y = Dequantize(TensorType::F16, h, 6);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(y[3]) && y[3] > 0);
  EXPECT_TRUE(y[4] == 0.0f && std::signbit(y[4]));
  EXPECT_TRUE(std::isnan(y[5]));

  const uint16_t bf[4] = {0x3F80, 0xC040, 0x0001, 0xFF80};
  const std::vector<float> z = Dequantize(TensorType::BF16, bf, 4);
  EXPECT_EQ(z[0], 1.0f);
  EXPECT_EQ(z[1], -3.0f);
  EXPECT_EQ(z[2], std::ldexp(1.0f, -133));  // float32 subnormal 0x00010000
  EXPECT_TRUE(std::isinf(z[3]) && z[3] < 0);
}

TEST(QuantsDequantize, F32IsACopy) {
  const float x[3] = {1.5f, -0.0f, 3e38f};
  const std::vector<float> y = Dequantize(TensorType::F32, x, 3);
  EXPECT_EQ(0, std::memcmp(x, y.data(), sizeof(x)));
}

// ---------------------------------------------------------------------------
// Hand-checked quantizer outputs.

TEST(QuantsQuantize, Q4_0MapsSignedMaxToLevelZeroAndClampsTheOppositeExtreme) {
  // First element of largest magnitude is -4: d = -4 / -8 = 0.5, so x -> x/0.5 + 8.
  std::vector<float> x(32, 0.0f);
  for (int j = 0; j < 16; ++j) x[j] = (j - 8) * 0.5f;  // levels 0..15
  x[16] = 4.0f;                                        // +amax: 16.5 truncates to 16, clamped to 15
  x[17] = 0.25f;   // 8.5 + 0.5 = 9.0: ties round up (truncation of +8.5), not to even
  x[18] = -0.25f;  // 8.0 -> 8
  x[19] = 1.74f;   // 3.48 + 8.5 = 11.98 -> 11
  const std::vector<uint8_t> bytes = Quantize(TensorType::Q4_0, x);
  BlockQ4_0 b;
  std::memcpy(&b, bytes.data(), sizeof(b));
  EXPECT_EQ(b.d, kHalfHalf);
  const int high[16] = {15, 9, 8, 11, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(b.qs[j] & 0xF, j) << j;
    EXPECT_EQ(b.qs[j] >> 4, high[j]) << j;
  }
}

TEST(QuantsQuantize, Q8_0RoundsHalfAwayFromZero) {
  // amax = 31.75 gives d = 0.25 exactly and 1/d = 4.
  std::vector<float> x(32, 0.0f);
  x[0] = 31.75f;
  x[1] = 0.375f;   // 1.5 -> 2
  x[2] = -0.375f;  // -1.5 -> -2
  x[3] = 0.625f;   // 2.5 -> 3 (nearest-even would give 2)
  x[4] = -31.75f;  // -127
  x[5] = 0.1f;     // 0.4 -> 0
  const std::vector<uint8_t> bytes = Quantize(TensorType::Q8_0, x);
  BlockQ8_0 b;
  std::memcpy(&b, bytes.data(), sizeof(b));
  EXPECT_EQ(b.d, kHalfQuarter);
  const int expected[6] = {127, 2, -2, 3, -127, 0};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(b.qs[j], expected[j]) << j;
}

TEST(QuantsQuantize, Q8_KScalesLargestMagnitudeToMinus127AndSumsEachSixteen) {
  // max = 127 gives iscale = -1: each quant is -x rounded to nearest, ties to even.
  std::vector<float> x(256, 2.5f);  // -2.5 -> -2 (even)
  x[0] = 127.0f;
  x[1] = 3.5f;      // -3.5 -> -4 (even)
  x[17] = -126.6f;  // 126.6 -> 127
  const std::vector<uint8_t> bytes = Quantize(TensorType::Q8_K, x);
  BlockQ8_K b;
  std::memcpy(&b, bytes.data(), sizeof(b));
  EXPECT_EQ(b.d, -1.0f);
  EXPECT_EQ(b.qs[0], -127);
  EXPECT_EQ(b.qs[1], -4);
  EXPECT_EQ(b.qs[2], -2);
  EXPECT_EQ(b.qs[17], 127);
  EXPECT_EQ(b.bsums[0], -127 - 4 + 14 * -2);
  EXPECT_EQ(b.bsums[1], 127 + 15 * -2);
  for (int j = 2; j < 16; ++j) EXPECT_EQ(b.bsums[j], -32) << j;
}

TEST(QuantsQuantize, ZeroRowsGiveZeroScalesAndDecodeToZero) {
  const std::vector<float> x(512, 0.0f);
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_K, TensorType::Q5_K,
                       TensorType::Q6_K, TensorType::Q8_K}) {
    const std::vector<uint8_t> bytes = Quantize(t, x);
    const std::vector<float> y = Dequantize(t, bytes.data(), 512);
    for (float v : y) ASSERT_EQ(v, 0.0f) << type_name(t);
  }
  // The K types write all-zero blocks: zero scales, zero mins, zero quants.
  for (TensorType t : {TensorType::Q4_K, TensorType::Q6_K, TensorType::Q8_K}) {
    const std::vector<uint8_t> bytes = Quantize(t, x);
    for (uint8_t v : bytes) ASSERT_EQ(v, 0) << type_name(t);
  }
}

// Where a sub-block's scale rounds to 0 against the block's largest, its values
// all decode to 0 whatever its quants are, but ggml still stores the levels its
// first fit chose rather than zeros; files must match byte for byte, so we do too.
TEST(QuantsQuantize, KTypesKeepFittedLevelsWhereASubScaleRoundsToZero) {
  std::vector<float> x(256);
  for (int i = 0; i < 256; ++i) x[i] = std::sin(0.37f * i);                // range about [-1, 1]
  for (int i = 0; i < 32; ++i) x[i] = 1e-4f * static_cast<float>(i - 16);  // tiny first 32

  const std::vector<uint8_t> q4 = Quantize(TensorType::Q4_K, x);
  BlockQ4_K b4;
  std::memcpy(&b4, q4.data(), sizeof(b4));
  EXPECT_EQ(b4.scales[0] & 63, 0);  // sub-block 0's scale rounded to 0
  std::set<int> levels4;
  for (int l = 0; l < 32; ++l) levels4.insert(b4.qs[l] & 0xF);
  EXPECT_GT(levels4.size(), 8u);

  const std::vector<uint8_t> q6 = Quantize(TensorType::Q6_K, x);
  BlockQ6_K b6;
  std::memcpy(&b6, q6.data(), sizeof(b6));
  EXPECT_EQ(b6.scales[0], 0);
  EXPECT_EQ(b6.scales[1], 0);
  std::set<int> levels6;
  for (int l = 0; l < 32; ++l) levels6.insert((b6.ql[l] & 0xF) | ((b6.qh[l] & 3) << 4));
  EXPECT_GT(levels6.size(), 8u);
}

// ---------------------------------------------------------------------------
// Bit-compatibility with llama.cpp on real weights.

#include "engine/quants_test_golden.inc"

TEST(QuantsQuantize, ReproducesLlamaCppBytesForRealWeights) {
  for (const GoldenBlock& g : GoldenBlocks()) {
    std::vector<float> x(g.float_bits.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = f32_from_bits(g.float_bits[i]);
    EXPECT_EQ(Quantize(g.type, x), g.bytes) << type_name(g.type) << " from " << g.source;
  }
}

// ---------------------------------------------------------------------------
// Round trips.

struct Row {
  std::string name;
  std::vector<float> x;
};

std::vector<Row> TestRows(int64_t n) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_real_distribution<float> positive(0.5f, 2.0f);
  std::vector<Row> rows;
  Row r{"gaussian", std::vector<float>(n)};
  for (float& v : r.x) v = 0.02f * normal(rng);
  rows.push_back(r);
  r = {"uniform", std::vector<float>(n)};
  for (float& v : r.x) v = uniform(rng);
  rows.push_back(r);
  r = {"all_positive", std::vector<float>(n)};  // exercises the mins of Q4_K/Q5_K
  for (float& v : r.x) v = positive(rng);
  rows.push_back(r);
  r = {"outlier", std::vector<float>(n)};
  for (float& v : r.x) v = normal(rng);
  r.x[n / 3] = 100.0f;
  rows.push_back(r);
  r = {"sparse", std::vector<float>(n, 0.0f)};  // mostly zero, a few blocks all zero
  for (int64_t i = 0; i < n; i += 7) r.x[i] = normal(rng);
  for (int64_t i = 0; i < 256; ++i) r.x[i] = 0.0f;
  rows.push_back(r);
  return rows;
}

double MaxAbs(const std::vector<float>& x) {
  double m = 0;
  for (float v : x) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

double RmsError(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

// A value rounded to a grid of step s has an error uniform on [-s/2, s/2]: rms
// s/sqrt(12). Each bound is that for the coarsest step the type can use when the
// row's largest magnitude is A, times 1.2 for scale rounding (fp16, 6-/8-bit
// sub-scales) and sampling noise:
//   Q8_0: step A/127            -> 0.00227 A
//   Q4_0: step A/8              -> 0.0361 A
//   Q4_K: step (max-min)/15 <= 2A/15 -> 0.0385 A
//   Q5_K: step 2A/31            -> 0.0186 A
//   Q6_K: step A/32 (levels -32..31 after the sub-scale fit) -> 0.0090 A
// A quantizer that drops a bit, swaps nibbles or mis-packs a scale is off by whole
// multiples of the step on many elements and lands far outside these.
struct Bound {
  TensorType type;
  double rms_over_max;
};
constexpr Bound kBounds[] = {
    {TensorType::Q8_0, 1.2 * 0.00227}, {TensorType::Q4_0, 1.2 * 0.0361},
    {TensorType::Q4_K, 1.2 * 0.0385},  {TensorType::Q5_K, 1.2 * 0.0186},
    {TensorType::Q6_K, 1.2 * 0.0090},  {TensorType::Q8_K, 1.2 * 0.00227},
};

TEST(QuantsRoundTrip, RmsErrorWithinWhatEachTypeAllows) {
  const int64_t n = 4096;
  for (const Row& row : TestRows(n)) {
    for (const Bound& bound : kBounds) {
      const std::vector<uint8_t> q = Quantize(bound.type, row.x);
      const std::vector<float> y = Dequantize(bound.type, q.data(), n);
      const double rms = RmsError(row.x, y);
      EXPECT_LE(rms, bound.rms_over_max * MaxAbs(row.x))
          << type_name(bound.type) << " on " << row.name;
    }
  }
}

// Per block the error is bounded outright for the simple types: half a step, or a
// whole step for the one Q4_0 value clamped from 16 to 15, plus the fp16 rounding
// of the scale (relative 2^-11, times at most 127 or 8 levels).
TEST(QuantsRoundTrip, Q8_0AndQ4_0ErrorBoundedPerBlock) {
  const int64_t n = 4096;
  for (const Row& row : TestRows(n)) {
    for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0}) {
      const std::vector<uint8_t> q = Quantize(t, row.x);
      const std::vector<float> y = Dequantize(t, q.data(), n);
      for (int64_t b = 0; b < n / 32; ++b) {
        double amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(double{row.x[32 * b + j]}));
        const double step = t == TensorType::Q8_0 ? amax / 127 : amax / 8;
        const double bound =
            t == TensorType::Q8_0 ? step * (0.5 + 127.0 / 2048) : step * (1.0 + 8.0 / 2048);
        for (int j = 0; j < 32; ++j) {
          const int64_t i = 32 * b + j;
          ASSERT_LE(std::fabs(double{row.x[i]} - y[i]), bound * (1 + 1e-6))
              << type_name(t) << " on " << row.name << " at " << i;
        }
      }
    }
  }
}

TEST(QuantsRoundTrip, MoreBitsGiveSmallerError) {
  const Row row = TestRows(4096)[0];
  double prev = 1e30;
  for (TensorType t :
       {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_0}) {
    const std::vector<uint8_t> q = Quantize(t, row.x);
    const double rms = RmsError(row.x, Dequantize(t, q.data(), 4096));
    EXPECT_LT(rms, prev) << type_name(t);
    prev = rms;
  }
}

// ggml's Q8_0 and Q4_0 reference quantizers reproduce their own output from its
// dequantized values: the block's extreme decodes to exactly 127*d (or -8*d), so
// the requantized scale is the stored fp16 scale again and every quant reappears.
TEST(QuantsRoundTrip, RequantizingDequantizedQ8_0AndQ4_0IsIdempotent) {
  const int64_t n = 4096;
  for (const Row& row : TestRows(n)) {
    for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0}) {
      const std::vector<uint8_t> q = Quantize(t, row.x);
      const std::vector<float> y = Dequantize(t, q.data(), n);
      EXPECT_EQ(q, Quantize(t, y)) << type_name(t) << " on " << row.name;
    }
  }
}

TEST(QuantsRoundTrip, F16AndBF16RoundTripTheirOwnValues) {
  // Every finite 16-bit pattern decodes to a float that encodes back to itself.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    for (TensorType t : {TensorType::F16, TensorType::BF16}) {
      float f;
      ASSERT_TRUE(dequantize_row(t, &bits, &f, 1));
      uint16_t back;
      ASSERT_TRUE(quantize_row(t, &f, &back, 1));
      if (std::isnan(f)) {
        float g;
        ASSERT_TRUE(dequantize_row(t, &back, &g, 1));
        EXPECT_TRUE(std::isnan(g)) << std::hex << h;
      } else {
        ASSERT_EQ(back, bits) << type_name(t) << " " << std::hex << h;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// fp16 / bf16 conversion edge cases.

uint16_t ToHalf(float f) {
  uint16_t h;
  EXPECT_TRUE(quantize_row(TensorType::F16, &f, &h, 1));
  return h;
}

uint16_t ToBF16(float f) {
  uint16_t h;
  EXPECT_TRUE(quantize_row(TensorType::BF16, &f, &h, 1));
  return h;
}

TEST(QuantsFp16, DecodesEveryPatternExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (exp == 31) {
      EXPECT_TRUE(man ? std::isnan(f) : std::isinf(f)) << std::hex << h;
      continue;
    }
    const double mag = exp == 0 ? std::ldexp(double(man), -24) : std::ldexp(1024.0 + man, exp - 25);
    ASSERT_EQ(double(f), sign ? -mag : mag) << std::hex << h;
    ASSERT_EQ(std::signbit(f), sign == 1) << std::hex << h;
  }
}

TEST(QuantsFp16, RoundsToNearestEvenIncludingSubnormalsAndOverflow) {
  EXPECT_EQ(ToHalf(1.0f), 0x3C00);
  EXPECT_EQ(ToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(ToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(ToHalf(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);  // past the tie
  EXPECT_EQ(ToHalf(65504.0f), 0x7BFF);   // largest finite
  EXPECT_EQ(ToHalf(65519.99f), 0x7BFF);  // below the tie
  EXPECT_EQ(ToHalf(65520.0f), 0x7C00);   // tie -> even is infinity
  EXPECT_EQ(ToHalf(1e10f), 0x7C00);
  EXPECT_EQ(ToHalf(-INFINITY), 0xFC00);
  EXPECT_EQ(ToHalf(-0.0f), 0x8000);
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -14)), 0x0400);                          // smallest normal
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -24)), 0x03FF);  // largest subnormal
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -24)), 0x0001);                          // smallest subnormal
  EXPECT_EQ(ToHalf(std::ldexp(1.0f, -25)), 0x0000);                          // tie with 0 -> 0
  EXPECT_EQ(ToHalf(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(ToHalf(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 ulp: tie -> even
  EXPECT_EQ(ToHalf(-std::ldexp(5.0f, -25)), 0x8002);  // 2.5 ulp: tie -> even
  EXPECT_EQ(ToHalf(1e-10f), 0x0000);
  const uint16_t nan = ToHalf(NAN);
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
}

TEST(QuantsBf16, RoundsToNearestEvenAndKeepsNaNsQuiet) {
  EXPECT_EQ(ToBF16(1.0f), 0x3F80);
  EXPECT_EQ(ToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(ToBF16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3F81);
  EXPECT_EQ(ToBF16(f32_from_bits(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to infinity
  EXPECT_EQ(ToBF16(INFINITY), 0x7F80);
  EXPECT_EQ(ToBF16(-0.0f), 0x8000);
  // Subnormals are rounded like everything else, not flushed to zero.
  EXPECT_EQ(ToBF16(f32_from_bits(0x00010000u)), 0x0001);
  EXPECT_EQ(ToBF16(f32_from_bits(0x00008000u)), 0x0000);  // tie -> even
  EXPECT_EQ(ToBF16(f32_from_bits(0x00018000u)), 0x0002);  // tie -> even
  // A signalling NaN whose payload sits in the dropped bits must not become infinity.
  EXPECT_EQ(ToBF16(f32_from_bits(0x7F800001u)), 0x7FC0);
  EXPECT_EQ(ToBF16(f32_from_bits(0xFFC00000u)), 0xFFC0);
}

// ---------------------------------------------------------------------------
// Bad arguments.

TEST(QuantsArguments, RejectsPartialBlocksAndUnsupportedTypesWithoutWriting) {
  std::vector<float> x(512, 1.0f);
  std::vector<uint8_t> buf(4096, 0xAB);
  std::vector<float> out(512, 7.0f);
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_K, TensorType::Q5_K,
                       TensorType::Q6_K, TensorType::Q8_K}) {
    const int64_t bad_n = type_traits(t).block_size + 1;
    EXPECT_FALSE(quantize_row(t, x.data(), buf.data(), bad_n)) << type_name(t);
    EXPECT_FALSE(dequantize_row(t, buf.data(), out.data(), bad_n)) << type_name(t);
    EXPECT_FALSE(quantize_row(t, x.data(), buf.data(), -256)) << type_name(t);
    EXPECT_FALSE(dequantize_row(t, buf.data(), out.data(), -256)) << type_name(t);
  }
  for (TensorType t : {TensorType::Q4_1, TensorType::Q5_0, TensorType::Q2_K, TensorType::Q3_K,
                       TensorType::I32, TensorType::F64, static_cast<TensorType>(999)}) {
    EXPECT_FALSE(quantize_row(t, x.data(), buf.data(), 256)) << static_cast<int>(t);
    EXPECT_FALSE(dequantize_row(t, buf.data(), out.data(), 256)) << static_cast<int>(t);
  }
  EXPECT_FALSE(quantize_row(TensorType::Q8_0, nullptr, buf.data(), 32));
  EXPECT_FALSE(dequantize_row(TensorType::Q8_0, buf.data(), nullptr, 32));
  for (uint8_t v : buf) ASSERT_EQ(v, 0xAB);
  for (float v : out) ASSERT_EQ(v, 7.0f);
  // An empty row is a valid row.
  EXPECT_TRUE(quantize_row(TensorType::Q4_K, x.data(), buf.data(), 0));
  EXPECT_TRUE(dequantize_row(TensorType::Q4_K, buf.data(), out.data(), 0));
}

TEST(QuantsArguments, UnalignedBuffersGiveTheSameResults) {
  const Row row = TestRows(512)[1];
  for (TensorType t : {TensorType::F16, TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_K,
                       TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K}) {
    const std::vector<uint8_t> aligned = Quantize(t, row.x);
    std::vector<uint8_t> shifted(aligned.size() + 1);
    ASSERT_TRUE(quantize_row(t, row.x.data(), shifted.data() + 1, 512));
    EXPECT_EQ(0, std::memcmp(aligned.data(), shifted.data() + 1, aligned.size())) << type_name(t);
    std::vector<float> out(512);
    ASSERT_TRUE(dequantize_row(t, shifted.data() + 1, out.data(), 512));
    EXPECT_EQ(Dequantize(t, aligned.data(), 512), out) << type_name(t);
  }
}

}  // namespace
}  // namespace swarm
