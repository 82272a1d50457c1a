// The transformer's kernels on a Vulkan device: dequantising matrix x matrix,
// RMS norm, RoPE, SwiGLU's silu(gate) * up, the residual add and a bias add,
// attention over a
// KV cache in device memory, and greedy argmax. Each records one dispatch into a
// CommandBatch (engine/vulkan_commands.h); nothing runs until batch.run().
//
// Determinism contract (as the CPU kernels', engine/matmul.h and ops.h): every
// output element is computed by one fixed sequence of operations that depends
// only on its own inputs: its weight row and activation row, its token's row,
// its query and the cache. Never on n_tokens, on how work is split between
// workgroups or tiles, on workgroup scheduling, or on whether reductions go
// through subgroups or shared memory. So a row's result is the same bits alone
// or in a batch of any size, on a given device and driver.
//
// Against the CPU kernels:
//  - matmul follows the CPU's canonical sequence for float weights (sixteen fma
//    chains and a fixed tree) on weights dequantised exactly as dequantize_row()
//    does, with float32 activations. For F32, F16 and BF16 that is matmul()'s own
//    sequence: the same bits where the device's fma is fused. For quantised types
//    the CPU quantises activations to 8 bits (Q8_0 / Q8_K) and the device does
//    not, so they differ by that rounding (doc/vulkan.md states the bounds).
//  - rope and add are the CPU's operations exactly; silu_mul and attention are
//    the CPU's sequences, up to how the device divides (Vulkan allows 2.5 ulp);
//    rms_norm sums in float32 where the CPU sums in double.
//
// Every kernel checks its buffers are large enough and returns InvalidArgument
// otherwise (also kept by the batch, so batch.run() fails too).
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <cstdint>
#include <vector>

#include "engine/matmul.h"
#include "engine/ops.h"
#include "engine/status.h"
#include "engine/tensor_types.h"
#include "engine/vulkan_commands.h"
#include "engine/vulkan_context.h"
#include "engine/vulkan_sizes.h"

namespace swarm::vk {

// A weight matrix in device memory, in the file's (GGUF) layout: `rows` rows of
// row_size(type, cols) bytes, in parts of whole rows when it is larger than
// one buffer can be (max_buffer_bytes(): 128 MiB on lavapipe, so a 32000 x
// 2048 F16 head takes two). Parts change nothing in the results.
struct DeviceMatrix {
  struct Part {
    int64_t row0 = 0;  // its first row
    int64_t rows = 0;
    VulkanBuffer data;
  };
  TensorType type = TensorType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<Part> parts;
};

// Weight types matmul() takes: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
bool matmul_supports(TensorType t);

// Copies `w` into device memory. Unsupported for other types; ResourceExhausted
// when the device cannot hold it, or one row is bigger than a buffer can be.
Result<DeviceMatrix> upload_matrix(VulkanContext& ctx, const WeightMatrix& w);

// y[t * rows + r] = sum_k W[r][k] * x[t * cols + k] for t < n_tokens: x is float32
// [n_tokens, cols], y float32 [n_tokens, rows] (not aliasing x).
Status matmul(CommandBatch& batch, const DeviceMatrix& w, const VulkanBuffer& x, int64_t n_tokens,
              const VulkanBuffer& y);

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w for n rows of `dim` (out may be x).
Status rms_norm(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& w, int64_t n,
                int dim, float eps, const VulkanBuffer& out);

// A RopeTable (engine/ops.h: cos and sin of each position's angles, from the
// model's inverse frequencies with any llama3 or linear scaling) in device
// memory, for rope().
struct DeviceRopeTable {
  int64_t n = 0;      // tokens
  int half = 0;       // rope_dim / 2
  VulkanBuffer data;  // cs [n][half], then sn [n][half]
};
Result<DeviceRopeTable> upload_rope_table(VulkanContext& ctx, const RopeTable& table);

// Rotates the first 2 * table.half dims of each of `n_heads` heads of `head_dim`
// floats per token, in place, for the table's n tokens; neox: pairs
// (i, i + half) (qwen2), else (2i, 2i + 1) (llama). As rope() in ops.h.
Status rope(CommandBatch& batch, const VulkanBuffer& x, int n_heads, int head_dim,
            const DeviceRopeTable& table, bool neox);

// out[i] = silu(gate[i]) * up[i] for i < count (out may be gate).
Status silu_mul(CommandBatch& batch, const VulkanBuffer& gate, const VulkanBuffer& up,
                int64_t count, const VulkanBuffer& out);

// x[i] += y[i] for i < count: the residual connection.
Status add(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& y, int64_t count);

// x[t * dim + i] += bias[i] for n rows of `dim`: qwen2's q, k and v biases.
Status add_bias(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& bias, int64_t n,
                int dim);

// Where one layer's keys and values sit in a device buffer, in floats: K of
// position p, kv head h at k_offset + p * stride + h * head_dim (V likewise from
// v_offset). CpuKvStorage's layout ([pos][K, V][kv_dim]) is k_offset = layer base,
// v_offset = base + kv_dim, stride = 2 * kv_dim.
struct KvView {
  const VulkanBuffer* buffer = nullptr;
  uint64_t k_offset = 0;
  uint64_t v_offset = 0;
  uint64_t stride = 0;
};

// Causal attention of `n` new tokens at positions [start, start + n), whose keys
// and values are already in `kv`, against positions [0, start + t]. q and out:
// [n, n_head * head_dim]; heads h share kv head h / (n_head / n_head_kv); scale
// 1 / sqrt(head_dim). As attention() in ops.h. It computes as many tokens a
// dispatch as `scratch` holds scores for (n_head * (start + n) floats each), the
// same bits whatever that is; attention_scratch_floats() (engine/vulkan_sizes.h)
// says how much to give it. InvalidArgument if it holds no token's.
Status attention(CommandBatch& batch, const VulkanBuffer& q, int64_t n, int start, const KvView& kv,
                 int n_head, int n_head_kv, int head_dim, const VulkanBuffer& scratch,
                 const VulkanBuffer& out);

// out[t] (uint32) = the index of the largest of row t's `cols` floats, the first
// of equal ones, for n rows.
Status argmax(CommandBatch& batch, const VulkanBuffer& x, int64_t n, int64_t cols,
              const VulkanBuffer& out);

// dst = src, `bytes` (a multiple of 16) by a kernel: the copy bandwidth the
// benchmark measures matmul against.
Status copy_kernel(CommandBatch& batch, const VulkanBuffer& src, const VulkanBuffer& dst,
                   uint64_t bytes);

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
