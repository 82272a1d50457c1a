// The Vulkan element-wise, normalisation, rotation, attention and argmax
// kernels against the CPU's (engine/ops.h, engine/matmul.h), and their batch
// invariance. Tolerances, and why:
//  - rope, add, argmax: exact. The same single-rounding operations as the CPU.
//  - silu_mul: 2e-6 relative. The CPU's sequence; only the division may differ
//    (Vulkan allows 2.5 ulp) and a fused or unfused fma in exp.
//  - rms_norm: 2e-6 relative. The device sums squares in float32 (64 chains and
//    a tree), the CPU in double.
//  - attention: 1e-5 of max |v|. The CPU's sequence, whose dot products and
//    weighted sums of hundreds of terms carry the device's fma and division.
#include <gtest/gtest.h>

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <algorithm>
#include <cmath>

#include "engine/cpu_kv_storage.h"
#include "engine/matmul.h"
#include "engine/model_arch.h"
#include "engine/ops.h"
#include "engine/thread_pool.h"
#include "engine/vulkan_kernels.h"
#include "engine/vulkan_test_util.h"

namespace swarm::vk {
namespace {

using testing::bits;

class VulkanOps : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string why;
    ctx_ = testing::open_test_device(GetParam(), &why);
    if (!ctx_) GTEST_SKIP() << why;
  }
  void run(CommandBatch& batch) {
    const Status st = batch.run();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  void check_attention(int head_dim, int start);

  std::unique_ptr<VulkanContext> ctx_;
  ThreadPool pool_{1};
};

TEST_P(VulkanOps, RmsNormMatchesTheCpuAndIsBatchInvariant) {
  const int n = 5, dim = 300;  // not a multiple of the workgroup's 64
  const std::vector<float> x = testing::random_floats(n * dim, 1, -4.0f, 4.0f);
  const std::vector<float> w = testing::random_floats(dim, 2, 0.5f, 1.5f);
  std::vector<float> cpu(n * dim);
  ::swarm::rms_norm(x.data(), w.data(), n, dim, 1e-5f, cpu.data());
  VulkanBuffer xb = testing::upload(*ctx_, x), wb = testing::upload(*ctx_, w);
  VulkanBuffer out = testing::device_buffer(*ctx_, n * dim * 4);
  VulkanBuffer one_x =
      testing::upload(*ctx_, std::vector<float>(x.begin() + 3 * dim, x.begin() + 4 * dim));
  VulkanBuffer one_out = testing::device_buffer(*ctx_, dim * 4);
  CommandBatch batch(*ctx_);
  ASSERT_TRUE(rms_norm(batch, xb, wb, n, dim, 1e-5f, out).ok());
  ASSERT_TRUE(rms_norm(batch, one_x, wb, 1, dim, 1e-5f, one_out).ok());
  run(batch);
  const std::vector<float> gpu = testing::download<float>(*ctx_, out, n * dim);
  for (int i = 0; i < n * dim; ++i)
    ASSERT_NEAR(gpu[i], cpu[i], 2e-6 * std::fabs(cpu[i]) + 1e-30) << i;
  const std::vector<float> alone = testing::download<float>(*ctx_, one_out, dim);
  for (int i = 0; i < dim; ++i) ASSERT_EQ(bits(alone[i]), bits(gpu[3 * dim + i])) << i;
}

// Both layouts, with llama3's frequency scaling and a partial rotation
// (rope_dim < head_dim), at positions that continue a cache.
TEST_P(VulkanOps, RopeIsTheCpusRotationBitForBit) {
  for (bool neox : {false, true}) {
    for (int rope_dim : {64, 32}) {
      SCOPED_TRACE(std::string(neox ? "neox" : "interleaved") + " rope_dim " +
                   std::to_string(rope_dim));
      ModelConfig c;
      c.head_dim = 64;
      c.rope_dim = rope_dim;
      c.rope_theta = 500000.0f;
      c.rope_scaling = RopeScaling::kLlama3;
      c.rope_scale_factor = 8.0f;
      c.rope_original_ctx = 8192;
      const std::vector<double> inv_freq = rope_inv_freq(c);
      const int n = 6, heads = 3;
      std::vector<int32_t> positions(n);
      for (int t = 0; t < n; ++t) positions[t] = 1000 + 7 * t;
      const RopeTable table = rope_table(n, positions.data(), rope_dim, inv_freq, 1.0);
      std::vector<float> x = testing::random_floats(n * heads * c.head_dim, 3);
      VulkanBuffer xb = testing::upload(*ctx_, x);
      Result<DeviceRopeTable> dt = upload_rope_table(*ctx_, table);
      ASSERT_TRUE(dt.ok()) << dt.status().ToString();
      CommandBatch batch(*ctx_);
      ASSERT_TRUE(rope(batch, xb, heads, c.head_dim, *dt, neox).ok());
      run(batch);
      ::swarm::rope(x.data(), n, heads, c.head_dim, table, neox);
      const std::vector<float> gpu = testing::download<float>(*ctx_, xb, x.size());
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(bits(gpu[i]), bits(x[i])) << i << ": " << gpu[i] << " vs " << x[i];
    }
  }
}

TEST_P(VulkanOps, SiluMulAndAddMatchTheCpu) {
  const int count = 1000;
  const std::vector<float> g = testing::random_floats(count, 4, -12.0f, 12.0f);
  const std::vector<float> u = testing::random_floats(count, 5);
  VulkanBuffer gb = testing::upload(*ctx_, g), ub = testing::upload(*ctx_, u);
  VulkanBuffer out = testing::device_buffer(*ctx_, count * 4);
  CommandBatch batch(*ctx_);
  ASSERT_TRUE(silu_mul(batch, gb, ub, count, out).ok());
  ASSERT_TRUE(add(batch, ub, gb, count).ok());  // u += g, after silu_mul has read u
  run(batch);
  std::vector<float> cpu(count);
  ::swarm::silu_mul(g.data(), u.data(), count, cpu.data());
  const std::vector<float> gpu = testing::download<float>(*ctx_, out, count);
  int exact = 0;
  for (int i = 0; i < count; ++i) {
    exact += bits(gpu[i]) == bits(cpu[i]);
    ASSERT_NEAR(gpu[i], cpu[i], 2e-6 * std::fabs(cpu[i]) + 1e-30) << i << " gate " << g[i];
  }
  std::printf("%s silu_mul: %d of %d bit-equal to the CPU\n", ctx_->device_name().c_str(), exact,
              count);
  const std::vector<float> sum = testing::download<float>(*ctx_, ub, count);
  for (int i = 0; i < count; ++i) ASSERT_EQ(bits(sum[i]), bits(u[i] + g[i])) << i;
}

TEST_P(VulkanOps, AddBiasAddsTheRowToEveryRow) {
  const int n = 7, dim = 96;
  const std::vector<float> x = testing::random_floats(n * dim, 11),
                           b = testing::random_floats(dim, 12);
  VulkanBuffer xb = testing::upload(*ctx_, x), bb = testing::upload(*ctx_, b);
  CommandBatch batch(*ctx_);
  ASSERT_TRUE(add_bias(batch, xb, bb, n, dim).ok());
  run(batch);
  const std::vector<float> got = testing::download<float>(*ctx_, xb, n * dim);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < dim; ++i)
      ASSERT_EQ(bits(got[t * dim + i]), bits(x[t * dim + i] + b[i])) << t << " " << i;
}

// Grouped-query attention over a cache of two layers held in one device
// buffer (layer 1 read at an offset), for new tokens continuing the cache; each
// token bit-equal to the same token run alone.
// Also with a head size that is not a multiple of the 16 lanes, from an empty
// cache.
TEST_P(VulkanOps, AttentionMatchesTheCpuAndIsBatchInvariant) {
  for (auto [head_dim, start] : {std::pair{64, 37}, std::pair{40, 0}}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim) + " start " + std::to_string(start));
    check_attention(head_dim, start);
    if (HasFatalFailure()) return;
  }
}

void VulkanOps::check_attention(int head_dim, int start) {
  const int n_head = 8, n_head_kv = 2, kv_dim = n_head_kv * head_dim;
  const int n = 5, len = start + n, layer = 1;
  CpuKvStorage cache(0, 2, kv_dim, 128);
  ASSERT_TRUE(cache.grow_to(len).ok());
  for (int l = 0; l < 2; ++l)
    for (int p = 0; p < len; ++p) {
      const std::vector<float> k = testing::random_floats(kv_dim, 100 * l + p, -2.0f, 2.0f);
      const std::vector<float> v = testing::random_floats(kv_dim, 10000 + 100 * l + p);
      std::copy(k.begin(), k.end(), cache.k(l, p));
      std::copy(v.begin(), v.end(), cache.v(l, p));
    }
  const std::vector<float> q = testing::random_floats(n * n_head * head_dim, 7, -2.0f, 2.0f);
  std::vector<float> cpu(q.size());
  ::swarm::attention(q.data(), n, start, cache, layer, n_head, n_head_kv, head_dim, cpu.data(),
                     pool_);

  // Device copy: [layer 0's positions][layer 1's positions], each [pos][K, V][kv_dim].
  const uint64_t layer_floats = static_cast<uint64_t>(len) * cache.position_stride();
  std::vector<float> kv(2 * layer_floats);
  for (int l = 0; l < 2; ++l)
    std::copy(cache.k(l, 0), cache.k(l, 0) + layer_floats, kv.begin() + l * layer_floats);
  VulkanBuffer kvb = testing::upload(*ctx_, kv), qb = testing::upload(*ctx_, q);
  const KvView view{&kvb, layer * layer_floats, layer * layer_floats + kv_dim,
                    static_cast<uint64_t>(cache.position_stride())};
  VulkanBuffer scratch =
      testing::device_buffer(*ctx_, attention_scratch_floats(n, start, n_head) * 4);
  VulkanBuffer out = testing::device_buffer(*ctx_, q.size() * 4);
  CommandBatch batch(*ctx_);
  ASSERT_TRUE(attention(batch, qb, n, start, view, n_head, n_head_kv, head_dim, scratch, out).ok());
  run(batch);
  const std::vector<float> gpu = testing::download<float>(*ctx_, out, q.size());
  int exact = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    exact += bits(gpu[i]) == bits(cpu[i]);
    ASSERT_NEAR(gpu[i], cpu[i], 1e-5) << i;
  }
  std::printf("%s attention: %d of %zu bit-equal to the CPU\n", ctx_->device_name().c_str(), exact,
              q.size());

  // A scratch for the scores of one token (five dispatches) or of two (2, 2
  // and 1) gives the same bits; one too small for a token's is refused.
  const uint64_t per_token = static_cast<uint64_t>(n_head) * len;
  for (uint64_t tokens : {1, 2}) {
    VulkanBuffer small = testing::device_buffer(*ctx_, tokens * per_token * 4 + 4);
    VulkanBuffer o = testing::device_buffer(*ctx_, q.size() * 4);
    CommandBatch sliced(*ctx_);
    ASSERT_TRUE(attention(sliced, qb, n, start, view, n_head, n_head_kv, head_dim, small, o).ok());
    run(sliced);
    const std::vector<float> got = testing::download<float>(*ctx_, o, q.size());
    for (size_t i = 0; i < q.size(); ++i)
      ASSERT_EQ(bits(got[i]), bits(gpu[i])) << tokens << " token(s) a dispatch, " << i;
  }
  VulkanBuffer too_small = testing::device_buffer(*ctx_, per_token * 4 - 4);
  CommandBatch refused(*ctx_);
  const Status s = attention(refused, qb, n, start, view, n_head, n_head_kv, head_dim, too_small, out);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("holds no token's scores"), std::string::npos) << s.ToString();

  const size_t row = static_cast<size_t>(n_head) * head_dim;
  for (int t = 0; t < n; ++t) {
    VulkanBuffer q1 =
        testing::upload(*ctx_, std::vector<float>(q.begin() + t * row, q.begin() + (t + 1) * row));
    VulkanBuffer s1 =
        testing::device_buffer(*ctx_, attention_scratch_floats(1, start + t, n_head) * 4);
    VulkanBuffer o1 = testing::device_buffer(*ctx_, row * 4);
    CommandBatch one(*ctx_);
    ASSERT_TRUE(attention(one, q1, 1, start + t, view, n_head, n_head_kv, head_dim, s1, o1).ok());
    run(one);
    const std::vector<float> alone = testing::download<float>(*ctx_, o1, row);
    for (size_t i = 0; i < row; ++i)
      ASSERT_EQ(bits(alone[i]), bits(gpu[t * row + i])) << "token " << t << " " << i;
  }
}

TEST_P(VulkanOps, ArgmaxFindsTheFirstLargest) {
  const int n = 4, cols = 32000;
  std::vector<float> x = testing::random_floats(n * cols, 9, -10.0f, 10.0f);
  x[0 * cols + 31999] = 50.0f;                             // at the end
  x[1 * cols + 5] = 50.0f, x[1 * cols + 20000] = 50.0f;    // a tie: the first wins
  x[2 * cols + 0] = 50.0f;                                 // at the start
  for (int i = 0; i < cols; ++i) x[3 * cols + i] = -1.0f;  // all equal: index 0
  VulkanBuffer xb = testing::upload(*ctx_, x);
  VulkanBuffer out = testing::device_buffer(*ctx_, n * 4);
  CommandBatch batch(*ctx_);
  ASSERT_TRUE(argmax(batch, xb, n, cols, out).ok());
  run(batch);
  const std::vector<uint32_t> got = testing::download<uint32_t>(*ctx_, out, n);
  for (int t = 0; t < n; ++t)
    EXPECT_EQ(got[t], std::max_element(x.begin() + t * cols, x.begin() + (t + 1) * cols) -
                          (x.begin() + t * cols))
        << "row " << t;
  EXPECT_EQ(got[1], 5u);
}

INSTANTIATE_TEST_SUITE_P(Vulkan, VulkanOps, ::testing::Bool(), testing::path_name);

// rms_norm and attention reduce with subgroups where they can; the bits are the
// shared-memory path's.
TEST(VulkanOpsPaths, SubgroupAndSharedMemoryAgreeBitForBit) {
  std::string why;
  std::unique_ptr<VulkanContext> sub = testing::open_test_device(true, &why);
  if (!sub) GTEST_SKIP() << why;
  std::unique_ptr<VulkanContext> plain = testing::open_test_device(false, &why);
  ASSERT_TRUE(plain) << why;
  const int n = 3, dim = 200, n_head = 4, n_head_kv = 2, head_dim = 48, start = 70;
  const int len = start + n, kv_dim = n_head_kv * head_dim;
  const std::vector<float> x = testing::random_floats(n * dim, 1, -3.0f, 3.0f);
  const std::vector<float> w = testing::random_floats(dim, 2);
  const std::vector<float> q = testing::random_floats(n * n_head * head_dim, 3, -2.0f, 2.0f);
  const std::vector<float> kv = testing::random_floats(len * 2 * kv_dim, 4, -2.0f, 2.0f);
  std::vector<float> norm[2], att[2];
  VulkanContext* ctxs[2] = {sub.get(), plain.get()};
  for (int c = 0; c < 2; ++c) {
    VulkanContext& ctx = *ctxs[c];
    VulkanBuffer xb = testing::upload(ctx, x), wb = testing::upload(ctx, w);
    VulkanBuffer qb = testing::upload(ctx, q), kvb = testing::upload(ctx, kv);
    VulkanBuffer nb = testing::device_buffer(ctx, x.size() * 4);
    VulkanBuffer ab = testing::device_buffer(ctx, q.size() * 4);
    VulkanBuffer scratch =
        testing::device_buffer(ctx, attention_scratch_floats(n, start, n_head) * 4);
    CommandBatch batch(ctx);
    ASSERT_TRUE(rms_norm(batch, xb, wb, n, dim, 1e-6f, nb).ok());
    ASSERT_TRUE(attention(batch, qb, n, start,
                          KvView{&kvb, 0, static_cast<uint64_t>(kv_dim), 2ull * kv_dim}, n_head,
                          n_head_kv, head_dim, scratch, ab)
                    .ok());
    ASSERT_TRUE(batch.run().ok());
    norm[c] = testing::download<float>(ctx, nb, x.size());
    att[c] = testing::download<float>(ctx, ab, q.size());
  }
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bits(norm[0][i]), bits(norm[1][i])) << i;
  for (size_t i = 0; i < q.size(); ++i) ASSERT_EQ(bits(att[0][i]), bits(att[1][i])) << i;
}

}  // namespace
}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
