// The Vulkan matrix kernels against the CPU's, for every weight type, and the
// determinism contract of engine/vulkan_kernels.h: a row's result is the same
// bits alone or in a batch, whichever reduction path runs.
//
// Tolerances, relative to sum_i |w_i x_i| of each output (the scale at which
// float rounding works):
//  - against the CPU's canonical float sequence on the same dequantised weights
//    (matmul() of the F32 matrix dequantize_row() gives): 1e-6. Both run the
//    same fma chains and tree; only a device whose fma is not fused can differ,
//    by a few roundings of a sum of 16 products.
//  - against matmul() on the quantised weights: the CPU rounds x to 8 bits per
//    block (Q8_0 for Q8_0/Q4_0, Q8_K for the K-quants) and the device does not,
//    so each x_i may differ by half a step, amax(block) / 254; the bound is
//    sum_i |w_i| * amax(block of i) / 254 on top of the 1e-6.
#include <gtest/gtest.h>

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <algorithm>
#include <cmath>

#include "engine/matmul.h"
#include "engine/quants.h"
#include "engine/thread_pool.h"
#include "engine/vulkan_kernels.h"
#include "engine/vulkan_test_util.h"

namespace swarm::vk {
namespace {

using testing::bits;

const TensorType kTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                             TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_K,
                             TensorType::Q5_K, TensorType::Q6_K};

// y = W x on `ctx`, for n rows of x; failures are recorded as test failures.
std::vector<float> run_matmul(VulkanContext& ctx, const DeviceMatrix& dm,
                              const std::vector<float>& x, int64_t n) {
  VulkanBuffer xb = testing::upload(ctx, x);
  VulkanBuffer yb = testing::device_buffer(ctx, n * dm.rows * 4);
  CommandBatch batch(ctx);
  EXPECT_TRUE(matmul(batch, dm, xb, n, yb).ok());
  EXPECT_TRUE(batch.run().ok());
  return testing::download<float>(ctx, yb, n * dm.rows);
}

// A weight matrix of `type` made from random floats by quantize_row(), as a
// file's would be, and the floats it means (dequantize_row()).
struct TestMatrix {
  TensorType type;
  int64_t rows, cols;
  std::vector<uint8_t> data;
  std::vector<float> dequantised;
  WeightMatrix view() const { return {type, cols, rows, data.data()}; }
  WeightMatrix dequantised_view() const {
    return {TensorType::F32, cols, rows, dequantised.data()};
  }
};

// `scale` 1e-4 makes fp16 scales (and F16 weights) subnormal.
TestMatrix make_matrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed,
                       float scale = 1.0f) {
  TestMatrix m{type, rows, cols, {}, {}};
  const std::vector<float> f = testing::random_floats(rows * cols, seed, -scale, scale);
  const size_t rb = row_size(type, cols);
  m.data.resize(rb * rows);
  m.dequantised.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    if (type == TensorType::F32) {
      std::memcpy(m.data.data() + r * rb, f.data() + r * cols, rb);
    } else {
      EXPECT_TRUE(quantize_row(type, f.data() + r * cols, m.data.data() + r * rb, cols));
    }
    EXPECT_TRUE(
        dequantize_row(type, m.data.data() + r * rb, m.dequantised.data() + r * cols, cols));
  }
  return m;
}

// Columns: a multiple of every block size, or for float types one that is not a
// multiple of 16 (the accumulators' tail). Rows: not a multiple of the 4 rows a
// workgroup takes.
int64_t test_cols(TensorType t) { return type_traits(t).block_size == 1 ? 200 : 512; }
constexpr int64_t kRows = 37;

// How many elements of the CPU's activation block each column shares its
// 8-bit scale with (0: the CPU keeps x in float32).
int act_block(TensorType t) {
  switch (t) {
    case TensorType::Q8_0:
    case TensorType::Q4_0:
      return 32;
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return 256;
    default:
      return 0;
  }
}

class VulkanMatmul : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string why;
    ctx_ = testing::open_test_device(GetParam(), &why);
    if (!ctx_) GTEST_SKIP() << why;
  }

  // y = W x on the device for n tokens of x.
  std::vector<float> run(const DeviceMatrix& w, const std::vector<float>& x, int64_t n) {
    VulkanBuffer xb = testing::upload(*ctx_, x);
    VulkanBuffer yb = testing::device_buffer(*ctx_, n * w.rows * 4);
    CommandBatch batch(*ctx_);
    EXPECT_TRUE(matmul(batch, w, xb, n, yb).ok());
    const Status st = batch.run();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return testing::download<float>(*ctx_, yb, n * w.rows);
  }

  std::unique_ptr<VulkanContext> ctx_;
  ThreadPool pool_{1};
};

TEST_P(VulkanMatmul, EveryTypeMatchesTheCpuWithinItsTolerance) {
  for (TensorType type : kTypes) {
    SCOPED_TRACE(type_name(type));
    const int64_t cols = test_cols(type), n = 11;  // a full tile of 8 and a partial one
    const TestMatrix m = make_matrix(type, kRows, cols, 1234 + static_cast<uint32_t>(type));
    const std::vector<float> x = testing::random_floats(n * cols, 99, -2.0f, 2.0f);
    Result<DeviceMatrix> dm = upload_matrix(*ctx_, m.view());
    ASSERT_TRUE(dm.ok()) << dm.status().ToString();
    const std::vector<float> gpu = run(*dm, x, n);

    std::vector<float> same_sequence(n * kRows), cpu(n * kRows);
    const WeightMatrix dq = m.dequantised_view();
    matmul(dq, x.data(), n, same_sequence.data(), pool_);
    const WeightMatrix w = m.view();
    matmul(w, x.data(), n, cpu.data(), pool_);

    int exact = 0;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < kRows; ++r) {
        const float* wr = m.dequantised.data() + r * cols;
        const float* xt = x.data() + t * cols;
        double magnitude = 0, act_error = 0;
        const int blk = act_block(type);
        for (int64_t i = 0; i < cols; ++i) {
          magnitude += std::fabs(static_cast<double>(wr[i]) * xt[i]);
          if (blk > 0) {
            const int64_t b0 = i / blk * blk;
            const float amax =
                std::fabs(*std::max_element(xt + b0, xt + b0 + blk, [](float a, float b) {
                  return std::fabs(a) < std::fabs(b);
                }));
            act_error += std::fabs(wr[i]) * amax / 254.0;
          }
        }
        const size_t k = t * kRows + r;
        exact += bits(gpu[k]) == bits(same_sequence[k]);
        ASSERT_NEAR(gpu[k], same_sequence[k], 1e-6 * magnitude + 1e-30)
            << "token " << t << " row " << r;
        ASSERT_NEAR(gpu[k], cpu[k], act_error * 1.001 + 1e-6 * magnitude + 1e-30)
            << "token " << t << " row " << r;
      }
    std::printf("%s %s: %d of %lld outputs bit-equal to the CPU's float sequence\n",
                ctx_->device_name().c_str(), type_name(type), exact,
                static_cast<long long>(n * kRows));
  }
}

// Exact on any device, fused fma or not: with x = the identity (token i is
// column i's one-hot vector), y[i][r] is W[r][i] as the device dequantised it, so
// every dequantiser must give dequantize_row()'s values; and with x nonzero in 16
// columns only, each lane's chain holds one product (rounded the same fused or
// not), so the tree must give the CPU's bits. Also with weights so small that
// fp16 scales are subnormal (a device may flush those in unpackHalf2x16).
TEST_P(VulkanMatmul, DequantisationAndReductionTreeAreExactlyTheCpus) {
  for (TensorType type : kTypes)
    for (float scale : {1.0f, 1e-4f}) {
      SCOPED_TRACE(std::string(type_name(type)) + " weights of magnitude " + std::to_string(scale));
      const int64_t cols = test_cols(type);
      const TestMatrix m =
          make_matrix(type, kRows, cols, 4321 + static_cast<uint32_t>(type), scale);
      Result<DeviceMatrix> dm = upload_matrix(*ctx_, m.view());
      ASSERT_TRUE(dm.ok()) << dm.status().ToString();
      std::vector<float> identity(cols * cols, 0.0f);
      for (int64_t i = 0; i < cols; ++i) identity[i * cols + i] = 1.0f;
      const std::vector<float> w_t = run(*dm, identity, cols);
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t r = 0; r < kRows; ++r)
          // As floats: a -0 weight sums to +0 (-0 + +0), on the CPU too.
          ASSERT_EQ(w_t[i * kRows + r], m.dequantised[r * cols + i]) << "row " << r << " col " << i;

      const int64_t n = 3;
      std::vector<float> x = testing::random_floats(n * cols, 17);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 16; i < cols; ++i) x[t * cols + i] = 0.0f;
      const std::vector<float> gpu = run(*dm, x, n);
      std::vector<float> cpu(n * kRows);
      const WeightMatrix dq = m.dequantised_view();
      matmul(dq, x.data(), n, cpu.data(), pool_);
      for (size_t k = 0; k < cpu.size(); ++k) ASSERT_EQ(bits(gpu[k]), bits(cpu[k])) << k;
    }
}

// Row t of a 7-row batch is bit-equal to the same row computed alone (decode
// takes the one-token pipeline, a batch the tiled one), for every type.
TEST_P(VulkanMatmul, RowsAreBatchInvariant) {
  for (TensorType type : kTypes) {
    SCOPED_TRACE(type_name(type));
    const int64_t cols = test_cols(type), n = 7;
    const TestMatrix m = make_matrix(type, kRows, cols, 777 + static_cast<uint32_t>(type));
    const std::vector<float> x = testing::random_floats(n * cols, 5, -3.0f, 3.0f);
    Result<DeviceMatrix> dm = upload_matrix(*ctx_, m.view());
    ASSERT_TRUE(dm.ok()) << dm.status().ToString();
    const std::vector<float> batch = run(*dm, x, n);
    for (int64_t t = 0; t < n; ++t) {
      const std::vector<float> row(x.begin() + t * cols, x.begin() + (t + 1) * cols);
      const std::vector<float> alone = run(*dm, row, 1);
      for (int64_t r = 0; r < kRows; ++r)
        ASSERT_EQ(bits(alone[r]), bits(batch[t * kRows + r])) << "token " << t << " row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Vulkan, VulkanMatmul, ::testing::Bool(), testing::path_name);

// The subgroup and shared-memory reductions give the same bits.
TEST(VulkanMatmulPaths, SubgroupAndSharedMemoryAgreeBitForBit) {
  std::string why;
  std::unique_ptr<VulkanContext> sub = testing::open_test_device(true, &why);
  if (!sub) GTEST_SKIP() << why;
  std::unique_ptr<VulkanContext> plain = testing::open_test_device(false, &why);
  ASSERT_TRUE(plain) << why;
  ASSERT_FALSE(plain->subgroups());
  for (TensorType type : kTypes) {
    SCOPED_TRACE(type_name(type));
    const int64_t cols = test_cols(type), n = 9;
    const TestMatrix m = make_matrix(type, kRows, cols, 31 + static_cast<uint32_t>(type));
    const std::vector<float> x = testing::random_floats(n * cols, 8);
    std::vector<float> out[2];
    VulkanContext* ctxs[2] = {sub.get(), plain.get()};
    for (int c = 0; c < 2; ++c) {
      VulkanContext& ctx = *ctxs[c];
      Result<DeviceMatrix> dm = upload_matrix(ctx, m.view());
      ASSERT_TRUE(dm.ok()) << dm.status().ToString();
      out[c] = run_matmul(ctx, *dm, x, n);
    }
    for (size_t i = 0; i < out[0].size(); ++i) ASSERT_EQ(bits(out[0][i]), bits(out[1][i])) << i;
  }
}

// A matrix in parts (a cap of 4.5 KiB per buffer: 37 rows of Q8_0 x 512 take
// five) gives the same bits as in one buffer.
TEST(VulkanMatmulParts, AMatrixInPartsGivesTheSameBits) {
  std::string why;
  std::unique_ptr<VulkanContext> whole = testing::open_test_device(false, &why);
  if (!whole) GTEST_SKIP() << why;
  for (TensorType type : kTypes) {
    SCOPED_TRACE(type_name(type));
    VulkanOptions options;
    options.allow_subgroups = false;
    options.max_buffer_bytes = 4096 + 512;  // not a whole number of rows
    int index = -1;
    std::unique_ptr<VulkanContext> unused = testing::open_test_device(false, &why, &index);
    Result<std::unique_ptr<VulkanContext>> split = VulkanContext::open(index, options);
    ASSERT_TRUE(split.ok()) << split.status().ToString();
    const int64_t cols = test_cols(type), n = 2;  // x fits under the cap
    const TestMatrix m = make_matrix(type, kRows, cols, 55 + static_cast<uint32_t>(type));
    const std::vector<float> x = testing::random_floats(n * cols, 56);
    std::vector<float> out[2];
    VulkanContext* ctxs[2] = {whole.get(), split->get()};
    for (int c = 0; c < 2; ++c) {
      VulkanContext& ctx = *ctxs[c];
      Result<DeviceMatrix> dm = upload_matrix(ctx, m.view());
      ASSERT_TRUE(dm.ok()) << dm.status().ToString();
      const size_t expected_parts = c == 0 ? 1
                                           : (kRows + (4096 + 512) / row_size(type, cols) - 1) /
                                                 ((4096 + 512) / row_size(type, cols));
      EXPECT_EQ(dm->parts.size(), expected_parts);
      out[c] = run_matmul(ctx, *dm, x, n);
    }
    for (size_t i = 0; i < out[0].size(); ++i) ASSERT_EQ(bits(out[0][i]), bits(out[1][i])) << i;
  }
}

TEST(VulkanMatmulArgs, RefusesTypesItHasNoKernelForAndShortBuffers) {
  std::string why;
  std::unique_ptr<VulkanContext> ctx = testing::open_test_device(false, &why);
  if (!ctx) GTEST_SKIP() << why;
  std::vector<uint8_t> q4_1(row_size(TensorType::Q4_1, 32) * 2);
  const WeightMatrix odd{TensorType::Q4_1, 32, 2, q4_1.data()};
  EXPECT_EQ(upload_matrix(*ctx, odd).status().code(), Status::Code::kUnsupported);

  const TestMatrix m = make_matrix(TensorType::F32, 4, 32, 1);
  Result<DeviceMatrix> dm = upload_matrix(*ctx, m.view());
  ASSERT_TRUE(dm.ok());
  VulkanBuffer x = testing::device_buffer(*ctx, 32 * 4);
  VulkanBuffer y = testing::device_buffer(*ctx, 4 * 4);
  CommandBatch batch(*ctx);
  const Status st = matmul(batch, *dm, x, 2, y);  // two tokens, room for one
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(batch.run().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace swarm::vk

#else

TEST(Vulkan, KernelsAreNotInThisBuild) {
  GTEST_SKIP()
      << "this build has no Vulkan kernels (install libvulkan-dev and glslc, then run cmake again)";
}

#endif  // SWARM_HAVE_VULKAN_KERNELS
