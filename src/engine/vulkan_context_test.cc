// The Vulkan context's memory account and errors: an allocation the device
// cannot hold is a Status naming the sizes, never a crash; data survives the
// round trip through staging buffers; a batch of dependent dispatches runs in
// order.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include "engine/vulkan_kernels.h"
#include "engine/vulkan_test_util.h"

namespace swarm::vk {
namespace {

class VulkanContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    ctx_ = testing::open_test_device(false, &why, &ctx_index_);
    if (!ctx_) GTEST_SKIP() << why;
  }
  std::unique_ptr<VulkanContext> ctx_;
  int ctx_index_ = -1;
};

TEST_F(VulkanContextTest, MoreThanTheHeapIsAClearError) {
  const uint64_t too_much = ctx_->free_bytes() + (64ull << 20);
  Result<VulkanBuffer> b = ctx_->create_buffer(too_much, BufferKind::kDevice);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Status::Code::kResourceExhausted);
  const std::string& m = b.status().message();
  EXPECT_NE(m.find("needs " + std::to_string((too_much + (1 << 20) - 1) >> 20) + " MiB"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("MiB free"), std::string::npos) << m;
  EXPECT_EQ(ctx_->used_bytes(), 0u);
}

// Each Model opens its own context on a device: what one holds must count
// against what another reports free, or two stages loaded side by side could
// each believe the whole device theirs.
TEST_F(VulkanContextTest, AnotherContextsBuffersCountAgainstThisOne) {
  Result<std::unique_ptr<VulkanContext>> other = VulkanContext::open(ctx_index_);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  const uint64_t before = ctx_->free_bytes();
  // Buffers of 96 MiB (less than lavapipe binds at once) in the other context
  // until less than one is left here.
  const uint64_t piece = std::min<uint64_t>(96ull << 20, ctx_->max_buffer_bytes());
  {
    std::vector<VulkanBuffer> held;
    while (ctx_->free_bytes() >= piece && held.size() < 4096) {
      const uint64_t free_then = ctx_->free_bytes();
      Result<VulkanBuffer> b = (*other)->create_buffer(piece, BufferKind::kDevice);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      held.push_back(std::move(b).value());
      ASSERT_LE(ctx_->free_bytes() + piece, free_then) << "the other context's buffer did not count";
    }
    EXPECT_EQ(ctx_->used_bytes(), 0u);
    // What this one has left is what it says, and no more is given.
    Result<VulkanBuffer> c = ctx_->create_buffer(ctx_->free_bytes() + (1 << 20), BufferKind::kDevice);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), Status::Code::kResourceExhausted);
    EXPECT_NE(c.status().message().find(std::to_string(ctx_->free_bytes() >> 20) + " MiB free"),
              std::string::npos)
        << c.status().message();
  }
  EXPECT_EQ(ctx_->free_bytes(), before);
}

TEST_F(VulkanContextTest, BiggerThanOneBufferCanBindIsAClearError) {
  if (ctx_->max_buffer_bytes() + 16 > ctx_->free_bytes())
    GTEST_SKIP() << "the heap is smaller than one buffer";
  Result<VulkanBuffer> b = ctx_->create_buffer(ctx_->max_buffer_bytes() + 16, BufferKind::kDevice);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Status::Code::kResourceExhausted);
  EXPECT_NE(b.status().message().find("split"), std::string::npos) << b.status().message();
}

TEST_F(VulkanContextTest, BuffersAreAccountedAndGivenBack) {
  const uint64_t free_before = ctx_->free_bytes();
  {
    Result<VulkanBuffer> a = ctx_->create_buffer(3 << 20, BufferKind::kDevice);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_GE(ctx_->used_bytes(), 3u << 20);
    VulkanBuffer moved = std::move(a).value();
    EXPECT_EQ(ctx_->free_bytes() + ctx_->used_bytes(), ctx_->heap_bytes());
    // What is left is what the error reports.
    Result<VulkanBuffer> c = ctx_->create_buffer(ctx_->free_bytes() + 1, BufferKind::kDevice);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find(std::to_string(ctx_->free_bytes() >> 20) + " MiB free"),
              std::string::npos)
        << c.status().message();
  }
  EXPECT_EQ(ctx_->free_bytes(), free_before);
  EXPECT_EQ(ctx_->create_buffer(0, BufferKind::kDevice).status().code(),
            Status::Code::kInvalidArgument);
}

TEST_F(VulkanContextTest, UploadAndDownloadRoundTripInPieces) {
  // A staging chunk of 4 KiB, so 400 KB go through it in 98 pieces, the last short.
  VulkanOptions options;
  options.allow_subgroups = false;
  options.staging_chunk_bytes = 4096;
  Result<std::unique_ptr<VulkanContext>> small = VulkanContext::open(ctx_index_, options);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  ctx_ = std::move(small).value();
  std::vector<float> data = testing::random_floats(100000, 3);
  VulkanBuffer b = testing::device_buffer(*ctx_, data.size() * 4 + 64);
  ASSERT_TRUE(ctx_->upload(b, 64, data.data(), data.size() * 4).ok());
  std::vector<float> back(data.size());
  ASSERT_TRUE(ctx_->download(b, 64, back.data(), back.size() * 4).ok());
  EXPECT_EQ(back, data);
  EXPECT_EQ(ctx_->upload(b, 65, data.data(), data.size() * 4).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(ctx_->download(b, 0, back.data(), b.size() + 4).code(), Status::Code::kInvalidArgument);
}

// Dispatches and copies in one submit, each seeing the one before: x += y three
// times, with a copy between.
TEST_F(VulkanContextTest, OneBatchRunsDependentStepsInOrder) {
  const int count = 5000;
  std::vector<float> x(count, 1.0f), y(count, 2.0f);
  VulkanBuffer xb = testing::upload(*ctx_, x), yb = testing::upload(*ctx_, y);
  VulkanBuffer copy = testing::device_buffer(*ctx_, count * 4);
  CommandBatch batch(*ctx_);
  ASSERT_TRUE(add(batch, xb, yb, count).ok());    // x = 3
  batch.copy(xb, 0, copy, 0, count * 4);          // copy = 3
  ASSERT_TRUE(add(batch, xb, copy, count).ok());  // x = 6
  ASSERT_TRUE(add(batch, xb, yb, count).ok());    // x = 8
  ASSERT_TRUE(batch.run().ok());
  const std::vector<float> got = testing::download<float>(*ctx_, xb, count);
  for (int i = 0; i < count; ++i) ASSERT_EQ(got[i], 8.0f) << i;
  EXPECT_EQ(batch.run().code(), Status::Code::kInternal);  // a batch runs once
}

// More dispatches than one descriptor pool holds (256): the batch takes another.
TEST_F(VulkanContextTest, ABatchOfManyDispatches) {
  const int count = 64, steps = 600;
  VulkanBuffer xb = testing::upload(*ctx_, std::vector<float>(count, 0.0f));
  VulkanBuffer yb = testing::upload(*ctx_, std::vector<float>(count, 1.0f));
  CommandBatch batch(*ctx_);
  for (int i = 0; i < steps; ++i) ASSERT_TRUE(add(batch, xb, yb, count).ok()) << i;
  ASSERT_TRUE(batch.run().ok());
  const std::vector<float> got = testing::download<float>(*ctx_, xb, count);
  for (int i = 0; i < count; ++i) ASSERT_EQ(got[i], static_cast<float>(steps)) << i;
}

// New tokens' keys into their cache positions: rows of kv_dim floats from a
// [n][kv_dim] buffer to positions start.. of a [pos][K, V][kv_dim] cache.
TEST_F(VulkanContextTest, CopyRowsPlacesKeysAtTheirPositions) {
  const int kv_dim = 8, n = 3, start = 5, max_len = 10;
  std::vector<float> k(n * kv_dim);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i + 1);
  VulkanBuffer kb = testing::upload(*ctx_, k);
  VulkanBuffer cache = testing::upload(*ctx_, std::vector<float>(max_len * 2 * kv_dim, 0.0f));
  CommandBatch batch(*ctx_);
  batch.copy_rows(kb, 0, kv_dim * 4, cache, start * 2 * kv_dim * 4, 2 * kv_dim * 4, kv_dim * 4, n);
  ASSERT_TRUE(batch.run().ok());
  const std::vector<float> got = testing::download<float>(*ctx_, cache, max_len * 2 * kv_dim);
  for (int p = 0; p < max_len; ++p)
    for (int which = 0; which < 2; ++which)
      for (int i = 0; i < kv_dim; ++i) {
        const bool written = which == 0 && p >= start && p < start + n;
        EXPECT_EQ(got[(p * 2 + which) * kv_dim + i], written ? k[(p - start) * kv_dim + i] : 0.0f)
            << "position " << p << (which ? " V " : " K ") << i;
      }
  CommandBatch past(*ctx_);
  past.copy_rows(kb, 0, kv_dim * 4, cache, 8 * 2 * kv_dim * 4, 2 * kv_dim * 4, kv_dim * 4,
                 n);  // 8, 9, 10
  EXPECT_EQ(past.run().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
