// One llama decoder layer from the Vulkan kernels, recorded into one batch per
// step: the kernels compose, and prefill equals decode bit for bit on the
// device (a prompt's tokens in one batch give the same hidden states as the
// same tokens one at a time with the cache growing). Checked against the same
// layer from the CPU kernels on the dequantised weights, within 1e-4 of each
// row's largest value: the layer's ops each carry the tolerances of
// vulkan_kernels_test.cc and vulkan_ops_test.cc.
#include <gtest/gtest.h>

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <algorithm>
#include <cmath>

#include "engine/cpu_kv_storage.h"
#include "engine/matmul.h"
#include "engine/ops.h"
#include "engine/quants.h"
#include "engine/thread_pool.h"
#include "engine/vulkan_kernels.h"
#include "engine/vulkan_test_util.h"

namespace swarm::vk {
namespace {

using testing::bits;

constexpr int kDim = 256, kHeads = 8, kKvHeads = 2, kHeadDim = 32, kKvDim = kKvHeads * kHeadDim;
constexpr int kFf = 512, kMaxLen = 16;
constexpr float kEps = 1e-5f;

struct HostWeight {
  int64_t rows, cols;
  std::vector<uint8_t> q4k;  // what the device gets
  std::vector<float> f32;    // what it means, for the CPU
};

HostWeight weight(int64_t rows, int64_t cols, uint32_t seed) {
  HostWeight w{rows, cols, std::vector<uint8_t>(row_size(TensorType::Q4_K, cols) * rows),
               std::vector<float>(rows * cols)};
  const std::vector<float> f = testing::random_floats(rows * cols, seed, -0.2f, 0.2f);
  const size_t rb = row_size(TensorType::Q4_K, cols);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_TRUE(quantize_row(TensorType::Q4_K, f.data() + r * cols, w.q4k.data() + r * rb, cols));
    EXPECT_TRUE(
        dequantize_row(TensorType::Q4_K, w.q4k.data() + r * rb, w.f32.data() + r * cols, cols));
  }
  return w;
}

struct Layer {
  HostWeight q = weight(kDim, kDim, 1), k = weight(kKvDim, kDim, 2), v = weight(kKvDim, kDim, 3),
             o = weight(kDim, kDim, 4), gate = weight(kFf, kDim, 5), up = weight(kFf, kDim, 6),
             down = weight(kDim, kFf, 7);
  std::vector<float> attn_norm = testing::random_floats(kDim, 8, 0.5f, 1.5f);
  std::vector<float> ffn_norm = testing::random_floats(kDim, 9, 0.5f, 1.5f);
  std::vector<double> inv_freq;
  Layer() {
    for (int i = 0; i < kHeadDim / 2; ++i)
      inv_freq.push_back(std::pow(10000.0, -2.0 * i / kHeadDim));
  }
};

// The CPU's layer on the dequantised weights; x [n][kDim] in place.
void cpu_layer(const Layer& l, std::vector<float>& x, int n, int start, CpuKvStorage& cache,
               ThreadPool& pool) {
  auto mm = [&](const HostWeight& w, const float* in, float* out) {
    matmul(WeightMatrix{TensorType::F32, w.cols, w.rows, w.f32.data()}, in, n, out, pool);
  };
  std::vector<float> h(n * kDim), q(n * kDim), k(n * kKvDim), v(n * kKvDim), a(n * kDim),
      o(n * kDim);
  ::swarm::rms_norm(x.data(), l.attn_norm.data(), n, kDim, kEps, h.data());
  mm(l.q, h.data(), q.data());
  mm(l.k, h.data(), k.data());
  mm(l.v, h.data(), v.data());
  std::vector<int32_t> pos(n);
  for (int t = 0; t < n; ++t) pos[t] = start + t;
  const RopeTable table = rope_table(n, pos.data(), kHeadDim, l.inv_freq, 1.0);
  ::swarm::rope(q.data(), n, kHeads, kHeadDim, table, false);
  ::swarm::rope(k.data(), n, kKvHeads, kHeadDim, table, false);
  ASSERT_TRUE(cache.grow_to(start + n).ok());
  for (int t = 0; t < n; ++t) {
    std::copy(k.begin() + t * kKvDim, k.begin() + (t + 1) * kKvDim, cache.k(0, start + t));
    std::copy(v.begin() + t * kKvDim, v.begin() + (t + 1) * kKvDim, cache.v(0, start + t));
  }
  ::swarm::attention(q.data(), n, start, cache, 0, kHeads, kKvHeads, kHeadDim, a.data(), pool);
  mm(l.o, a.data(), o.data());
  for (int i = 0; i < n * kDim; ++i) x[i] += o[i];
  std::vector<float> g(n * kFf), u(n * kFf);
  ::swarm::rms_norm(x.data(), l.ffn_norm.data(), n, kDim, kEps, h.data());
  mm(l.gate, h.data(), g.data());
  mm(l.up, h.data(), u.data());
  ::swarm::silu_mul(g.data(), u.data(), n * kFf, g.data());
  mm(l.down, g.data(), o.data());
  for (int i = 0; i < n * kDim; ++i) x[i] += o[i];
}

class VulkanLayer : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    ctx_ = testing::open_test_device(true, &why);
    if (!ctx_) ctx_ = testing::open_test_device(false, &why);
    if (!ctx_) GTEST_SKIP() << why;
    for (const HostWeight* w : {&l_.q, &l_.k, &l_.v, &l_.o, &l_.gate, &l_.up, &l_.down}) {
      Result<DeviceMatrix> m =
          upload_matrix(*ctx_, {TensorType::Q4_K, w->cols, w->rows, w->q4k.data()});
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      dev_.push_back(std::move(m).value());
    }
    attn_norm_ = testing::upload(*ctx_, l_.attn_norm);
    ffn_norm_ = testing::upload(*ctx_, l_.ffn_norm);
    cache_ = testing::upload(*ctx_, std::vector<float>(kMaxLen * 2 * kKvDim, 0.0f));
  }

  // The layer on the device for tokens [start, start + n): x in place, keys and
  // values appended to the device cache. One batch, one submit.
  void device_layer(std::vector<float>& x, int n, int start) {
    VulkanContext& c = *ctx_;
    VulkanBuffer xb = testing::upload(c, x);
    auto buf = [&](int64_t floats) { return testing::device_buffer(c, floats * 4); };
    VulkanBuffer h = buf(n * kDim), q = buf(n * kDim), k = buf(n * kKvDim), v = buf(n * kKvDim);
    VulkanBuffer a = buf(n * kDim), o = buf(n * kDim), g = buf(n * kFf), u = buf(n * kFf);
    VulkanBuffer scratch = buf(attention_scratch_floats(n, start, kHeads));
    std::vector<int32_t> pos(n);
    for (int t = 0; t < n; ++t) pos[t] = start + t;
    Result<DeviceRopeTable> table =
        upload_rope_table(c, rope_table(n, pos.data(), kHeadDim, l_.inv_freq, 1.0));
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    const uint64_t pos_bytes = 2 * kKvDim * 4;

    CommandBatch b(c);
    rms_norm(b, xb, attn_norm_, n, kDim, kEps, h);
    matmul(b, dev_[0], h, n, q);
    matmul(b, dev_[1], h, n, k);
    matmul(b, dev_[2], h, n, v);
    rope(b, q, kHeads, kHeadDim, *table, false);
    rope(b, k, kKvHeads, kHeadDim, *table, false);
    b.copy_rows(k, 0, kKvDim * 4, cache_, start * pos_bytes, pos_bytes, kKvDim * 4, n);
    b.copy_rows(v, 0, kKvDim * 4, cache_, start * pos_bytes + kKvDim * 4, pos_bytes, kKvDim * 4, n);
    attention(b, q, n, start, KvView{&cache_, 0, kKvDim, 2 * kKvDim}, kHeads, kKvHeads, kHeadDim,
              scratch, a);
    matmul(b, dev_[3], a, n, o);
    add(b, xb, o, n * kDim);
    rms_norm(b, xb, ffn_norm_, n, kDim, kEps, h);
    matmul(b, dev_[4], h, n, g);
    matmul(b, dev_[5], h, n, u);
    silu_mul(b, g, u, n * kFf, g);
    matmul(b, dev_[6], g, n, o);
    add(b, xb, o, n * kDim);
    const Status st = b.run();
    ASSERT_TRUE(st.ok()) << st.ToString();
    x = testing::download<float>(c, xb, n * kDim);
  }

  Layer l_;
  std::unique_ptr<VulkanContext> ctx_;
  std::vector<DeviceMatrix> dev_;
  VulkanBuffer attn_norm_, ffn_norm_, cache_;
  ThreadPool pool_{1};
};

TEST_F(VulkanLayer, PrefillEqualsDecodeBitForBitAndMatchesTheCpu) {
  const int n = 6;
  const std::vector<float> prompt = testing::random_floats(n * kDim, 10, -1.0f, 1.0f);

  std::vector<float> prefill = prompt;
  device_layer(prefill, n, 0);

  std::vector<float> cpu = prompt;
  CpuKvStorage cache(0, 1, kKvDim, kMaxLen);
  cpu_layer(l_, cpu, n, 0, cache, pool_);
  for (int t = 0; t < n; ++t) {
    const float* row = cpu.data() + t * kDim;
    float amax = 0;
    for (int i = 0; i < kDim; ++i) amax = std::max(amax, std::fabs(row[i]));
    for (int i = 0; i < kDim; ++i)
      ASSERT_NEAR(prefill[t * kDim + i], row[i], 1e-4 * amax) << "token " << t << " " << i;
  }

  // The same tokens one at a time, each attending to the cache the ones before
  // it wrote: the cache is rewritten with the same bits, so the rows must match.
  for (int t = 0; t < n; ++t) {
    std::vector<float> one(prompt.begin() + t * kDim, prompt.begin() + (t + 1) * kDim);
    device_layer(one, 1, t);
    for (int i = 0; i < kDim; ++i)
      ASSERT_EQ(bits(one[i]), bits(prefill[t * kDim + i])) << "token " << t << " " << i;
  }
}

}  // namespace
}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
