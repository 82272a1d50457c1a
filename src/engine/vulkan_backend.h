// The transformer's layers on a Vulkan device (engine/vulkan_kernels.h): the
// held layer range's matrices, norms and biases and the head are uploaded once
// at load; a run_layers() call uploads the batch's hidden states, records every
// layer of the range into one CommandBatch, submits once and downloads the
// hidden states once. Keys and values live in device memory (VulkanKvStorage).
//
// Not exact(): the device's matmul does not quantise activations as the CPU's
// does, and its norms and reductions take their own fixed order
// (vulkan_kernels.h), so logits agree with the CPU's within a tolerance. The
// invariances of compute_backend.h (batch, chunking, layer ranges,
// determinism) hold bit for bit on a given device and driver.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <memory>
#include <string>
#include <vector>

#include "engine/compute_backend.h"
#include "engine/vulkan_kernels.h"
#include "engine/vulkan_kv_storage.h"
#include "engine/vulkan_shared_context.h"
#include "engine/vulkan_workspace.h"

namespace swarm {

class VulkanBackend final : public ComputeBackend {
 public:
  // Opens Vulkan device `index` ("vulkan:N" as `swarm devices` lists it);
  // NotFound past the last one.
  static Result<std::unique_ptr<VulkanBackend>> open(int index);
  ~VulkanBackend() override;

  std::string name() const override { return "vulkan:" + std::to_string(index_); }
  bool exact() const override { return false; }
  Status load(const ModelConfig& config, const ModelWeights& weights, int context) override;
  std::unique_ptr<KvStorage> new_kv_storage(int first_layer, int last_layer, int kv_dim,
                                            int max_len) const override;
  Status embed(const int32_t* tokens, int64_t n, float* hidden) const override;
  Status run_layers(float* hidden, const std::vector<SeqChunk>& chunks,
                    const std::vector<int32_t>& positions, int first, int last,
                    ThreadPool& pool) const override;
  Status head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const override;
  Status final_norm(const float* hidden, int64_t n, float* out) const override;

  // Bytes load() puts in device memory for these weights; with
  // vk::workspace_bytes(), what it checks fits.
  static uint64_t device_bytes(const ModelConfig& config, const ModelWeights& weights);

 private:
  struct DeviceLayer {
    vk::DeviceMatrix wq, wk, wv, wo, gate, up, down;
    vk::VulkanBuffer attn_norm, ffn_norm, bq, bk, bv;  // biases invalid where none
  };

  VulkanBackend(int index, std::shared_ptr<vk::SharedVulkanContext> device)
      : index_(index), device_(std::move(device)) {}
  Result<vk::VulkanBuffer> upload_floats(const float* data, int64_t count);
  Status upload_all(const ModelWeights& w);
  // One sequence's rows in a submit: `n_tokens` of them from position `start`.
  struct SubmitChunk {
    const vk::VulkanKvStorage* kv;
    int start;
    int n_tokens;
  };
  // The batch's rows in submits of at most `max_rows`, in order: a chunk longer
  // than what is left of a submit continues in the next, from where it stopped.
  static std::vector<std::vector<SubmitChunk>> split_into_submits(
      const std::vector<SeqChunk>& chunks, const std::vector<vk::VulkanKvStorage*>& kv,
      int64_t max_rows);
  // Layers [first, last) over the `n` rows of `chunks` in one submit, computing
  // in `ws`. Under the device's lock.
  Status run_submit(float* hidden, const int32_t* positions, int64_t n,
                    const std::vector<SubmitChunk>& chunks, int first, int last,
                    vk::VulkanWorkspace& ws) const;
  // Records layer `il` over the submit's `n` rows into `batch`, computing in `ws`.
  void record_layer(vk::CommandBatch& batch, int il, int64_t n, const vk::VulkanWorkspace& ws,
                    const vk::DeviceRopeTable& rope, const std::vector<SubmitChunk>& chunks) const;
  Status run_head(const float* hidden, int64_t n, float* out, bool with_output) const;

  int index_;
  std::shared_ptr<vk::SharedVulkanContext> device_;
  ModelConfig config_;
  int first_layer_ = 0;
  std::vector<DeviceLayer> layers_;
  std::vector<double> rope_inv_freq_;
  double rope_position_scale_ = 1;
  // The embedding stays in host memory (see embed()).
  WeightMatrix token_embd_;
  bool has_head_ = false;
  vk::VulkanBuffer output_norm_;
  vk::DeviceMatrix output_;
  mutable vk::VulkanWorkspace kept_;  // under device_->mu
};

}  // namespace swarm

#endif  // SWARM_HAVE_VULKAN_KERNELS
