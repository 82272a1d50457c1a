#include "engine/vulkan_kernels.h"

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace swarm::vk {
namespace {

constexpr uint32_t kGroup = 64;        // every kernel's local_size_x
constexpr uint32_t kRowsPerGroup = 4;  // matmul: 64 invocations = 4 rows x 16 lanes
constexpr uint32_t kTile = 8;          // matmul: tokens per workgroup in a batch
constexpr uint64_t kMaxIndex = std::numeric_limits<uint32_t>::max();  // shaders index with uint

// Fails the batch (and returns the same Status) unless `b` holds `bytes`.
Status need(CommandBatch& batch, const VulkanBuffer& b, uint64_t bytes, const char* what) {
  if (!b.valid() || b.size() < bytes) {
    Status st =
        Status::InvalidArgument(std::string(what) + ": buffer of " + std::to_string(b.size()) +
                                " bytes, needs " + std::to_string(bytes));
    batch.fail(st);
    return st;
  }
  return Status::Ok();
}

Status fail(CommandBatch& batch, Status st) {
  batch.fail(st);
  return st;
}

Result<const VulkanPipeline*> pipeline(CommandBatch& batch, const PipelineSpec& spec) {
  Result<const VulkanPipeline*> p = batch.context().pipelines().get(spec);
  if (!p.ok()) batch.fail(p.status());
  return p;
}

// Element-wise kernels cover `count` items in rows of at most 65535 groups.
void element_groups(uint64_t count, uint32_t* gx, uint32_t* gy) {
  const uint64_t groups = (count + kGroup - 1) / kGroup;
  *gx = static_cast<uint32_t>(std::clamp<uint64_t>(groups, 1, 65535));
  *gy = static_cast<uint32_t>((groups + *gx - 1) / *gx);
}

const char* matmul_shader(TensorType t) {
  switch (t) {
    case TensorType::F32:
      return "matmul_f32";
    case TensorType::F16:
      return "matmul_f16";
    case TensorType::BF16:
      return "matmul_bf16";
    case TensorType::Q8_0:
      return "matmul_q8_0";
    case TensorType::Q4_0:
      return "matmul_q4_0";
    case TensorType::Q4_K:
      return "matmul_q4_k";
    case TensorType::Q5_K:
      return "matmul_q5_k";
    case TensorType::Q6_K:
      return "matmul_q6_k";
    default:
      return nullptr;
  }
}

}  // namespace

bool matmul_supports(TensorType t) { return matmul_shader(t) != nullptr; }

Result<DeviceMatrix> upload_matrix(VulkanContext& ctx, const WeightMatrix& w) {
  if (!matmul_supports(w.type))
    return Status::Unsupported(std::string("no Vulkan matmul for weight type ") +
                               type_name(w.type));
  const int block = type_traits(w.type).block_size;
  if (w.rows <= 0 || w.cols <= 0 || w.cols % block != 0)
    return Status::InvalidArgument(
        "weight matrix " + std::to_string(w.rows) + " x " + std::to_string(w.cols) + " of " +
        type_name(w.type) + " (columns must be whole blocks of " + std::to_string(block) + ")");
  const uint64_t row_bytes = row_size(w.type, w.cols);
  // The shaders read whole 32-bit words, so a part's buffer is rounded up to one;
  // and they address bytes with 32-bit integers.
  const uint64_t limit = std::min<uint64_t>(ctx.max_buffer_bytes(), kMaxIndex) / 4 * 4;
  if (row_bytes + 3 > limit)
    return Status::ResourceExhausted("a weight row of " + std::to_string(row_bytes) +
                                     " bytes is larger than one Vulkan buffer can be");
  const int64_t rows_per_part = static_cast<int64_t>((limit - 3) / row_bytes);
  DeviceMatrix m;
  m.type = w.type;
  m.rows = w.rows;
  m.cols = w.cols;
  for (int64_t row0 = 0; row0 < w.rows; row0 += rows_per_part) {
    DeviceMatrix::Part part;
    part.row0 = row0;
    part.rows = std::min(rows_per_part, w.rows - row0);
    const uint64_t bytes = row_bytes * part.rows;
    Result<VulkanBuffer> buf = ctx.create_buffer((bytes + 3) / 4 * 4, BufferKind::kDevice);
    if (!buf.ok()) return buf.status();
    part.data = std::move(buf).value();
    SWARM_RETURN_IF_ERROR(
        ctx.upload(part.data, 0, static_cast<const uint8_t*>(w.data) + row0 * row_bytes, bytes));
    m.parts.push_back(std::move(part));
  }
  return m;
}

Status matmul(CommandBatch& batch, const DeviceMatrix& w, const VulkanBuffer& x, int64_t n_tokens,
              const VulkanBuffer& y) {
  const char* shader = matmul_shader(w.type);
  if (shader == nullptr)
    return fail(batch,
                Status::Unsupported(std::string("no Vulkan matmul for ") + type_name(w.type)));
  if (n_tokens <= 0)
    return fail(batch,
                Status::InvalidArgument("matmul of " + std::to_string(n_tokens) + " tokens"));
  const uint64_t n = static_cast<uint64_t>(n_tokens);
  if (n * w.cols > kMaxIndex || n * w.rows > kMaxIndex)
    return fail(batch, Status::InvalidArgument("matmul: " + std::to_string(n) + " tokens of " +
                                               std::to_string(std::max(w.cols, w.rows)) +
                                               " floats is past 2^32 elements; split the batch"));
  SWARM_RETURN_IF_ERROR(need(batch, x, n * w.cols * 4, "matmul x"));
  SWARM_RETURN_IF_ERROR(need(batch, y, n * w.rows * 4, "matmul y"));
  // Decode (one token) needs no tile of accumulators; the result is the same.
  const uint32_t tile = n_tokens == 1 ? 1 : kTile;
  Result<const VulkanPipeline*> p = pipeline(batch, {shader, 3, 24, {tile}});
  if (!p.ok()) return p.status();
  for (const DeviceMatrix::Part& part : w.parts) {
    const uint32_t push[6] = {
        static_cast<uint32_t>(part.rows), static_cast<uint32_t>(w.cols),
        static_cast<uint32_t>(n),         static_cast<uint32_t>(row_size(w.type, w.cols)),
        static_cast<uint32_t>(part.row0), static_cast<uint32_t>(w.rows)};
    const uint64_t gx = (part.rows + kRowsPerGroup - 1) / kRowsPerGroup, gy = (n + tile - 1) / tile;
    batch.dispatch(**p, {&part.data, &x, &y}, push,
                   static_cast<uint32_t>(std::min<uint64_t>(gx, 1u << 31)),
                   static_cast<uint32_t>(std::min<uint64_t>(gy, 1u << 31)));
  }
  return batch.status();
}

Status rms_norm(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& w, int64_t n,
                int dim, float eps, const VulkanBuffer& out) {
  if (n <= 0 || dim <= 0 || static_cast<uint64_t>(n) * dim > kMaxIndex)
    return fail(batch, Status::InvalidArgument("rms_norm of " + std::to_string(n) + " x " +
                                               std::to_string(dim)));
  const uint64_t bytes = static_cast<uint64_t>(n) * dim * 4;
  SWARM_RETURN_IF_ERROR(need(batch, x, bytes, "rms_norm x"));
  SWARM_RETURN_IF_ERROR(need(batch, w, static_cast<uint64_t>(dim) * 4, "rms_norm weight"));
  SWARM_RETURN_IF_ERROR(need(batch, out, bytes, "rms_norm out"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"rms_norm", 3, 12, {}});
  if (!p.ok()) return p.status();
  struct {
    uint32_t n, dim;
    float eps;
  } push{static_cast<uint32_t>(n), static_cast<uint32_t>(dim), eps};
  batch.dispatch(**p, {&x, &w, &out}, &push, static_cast<uint32_t>(std::min<int64_t>(n, 1 << 30)));
  return batch.status();
}

Result<DeviceRopeTable> upload_rope_table(VulkanContext& ctx, const RopeTable& table) {
  if (table.half <= 0 || table.cs.empty() || table.cs.size() != table.sn.size() ||
      table.cs.size() % table.half != 0)
    return Status::InvalidArgument("an empty or malformed RopeTable");
  DeviceRopeTable t;
  t.half = table.half;
  t.n = static_cast<int64_t>(table.cs.size() / table.half);
  const uint64_t bytes = table.cs.size() * 4;
  Result<VulkanBuffer> buf = ctx.create_buffer(2 * bytes, BufferKind::kDevice);
  if (!buf.ok()) return buf.status();
  t.data = std::move(buf).value();
  SWARM_RETURN_IF_ERROR(ctx.upload(t.data, 0, table.cs.data(), bytes));
  SWARM_RETURN_IF_ERROR(ctx.upload(t.data, bytes, table.sn.data(), bytes));
  return t;
}

Status rope(CommandBatch& batch, const VulkanBuffer& x, int n_heads, int head_dim,
            const DeviceRopeTable& table, bool neox) {
  if (n_heads <= 0 || head_dim <= 0 || 2 * table.half > head_dim)
    return fail(batch, Status::InvalidArgument("rope of " + std::to_string(n_heads) + " heads of " +
                                               std::to_string(head_dim) + " with rope_dim " +
                                               std::to_string(2 * table.half)));
  const uint64_t elems = static_cast<uint64_t>(table.n) * n_heads * head_dim;
  if (elems > kMaxIndex)
    return fail(batch, Status::InvalidArgument("rope: past 2^32 elements; split the batch"));
  SWARM_RETURN_IF_ERROR(need(batch, x, elems * 4, "rope x"));
  SWARM_RETURN_IF_ERROR(
      need(batch, table.data, static_cast<uint64_t>(table.n) * table.half * 8, "rope table"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"rope", 2, 20, {}});
  if (!p.ok()) return p.status();
  const uint32_t push[5] = {static_cast<uint32_t>(table.n), static_cast<uint32_t>(n_heads),
                            static_cast<uint32_t>(head_dim), static_cast<uint32_t>(table.half),
                            neox ? 1u : 0u};
  uint32_t gx, gy;
  element_groups(static_cast<uint64_t>(table.n) * n_heads * table.half, &gx, &gy);
  batch.dispatch(**p, {&x, &table.data}, push, gx, gy);
  return batch.status();
}

Status silu_mul(CommandBatch& batch, const VulkanBuffer& gate, const VulkanBuffer& up,
                int64_t count, const VulkanBuffer& out) {
  if (count <= 0 || static_cast<uint64_t>(count) > kMaxIndex)
    return fail(batch, Status::InvalidArgument("silu_mul of " + std::to_string(count)));
  const uint64_t bytes = static_cast<uint64_t>(count) * 4;
  SWARM_RETURN_IF_ERROR(need(batch, gate, bytes, "silu_mul gate"));
  SWARM_RETURN_IF_ERROR(need(batch, up, bytes, "silu_mul up"));
  SWARM_RETURN_IF_ERROR(need(batch, out, bytes, "silu_mul out"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"silu_mul", 3, 4, {}});
  if (!p.ok()) return p.status();
  const uint32_t push = static_cast<uint32_t>(count);
  uint32_t gx, gy;
  element_groups(count, &gx, &gy);
  batch.dispatch(**p, {&gate, &up, &out}, &push, gx, gy);
  return batch.status();
}

namespace {

// x[i] += y[i % period] for i < count.
Status add_periodic(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& y,
                    int64_t count, int64_t period) {
  if (count <= 0 || static_cast<uint64_t>(count) > kMaxIndex || period <= 0 || count % period != 0)
    return fail(batch, Status::InvalidArgument("add of " + std::to_string(count) + " floats, " +
                                               std::to_string(period) + " per row"));
  SWARM_RETURN_IF_ERROR(need(batch, x, static_cast<uint64_t>(count) * 4, "add x"));
  SWARM_RETURN_IF_ERROR(need(batch, y, static_cast<uint64_t>(period) * 4, "add y"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"add", 2, 8, {}});
  if (!p.ok()) return p.status();
  const uint32_t push[2] = {static_cast<uint32_t>(count), static_cast<uint32_t>(period)};
  uint32_t gx, gy;
  element_groups(count, &gx, &gy);
  batch.dispatch(**p, {&x, &y}, push, gx, gy);
  return batch.status();
}

}  // namespace

Status add(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& y, int64_t count) {
  return add_periodic(batch, x, y, count, count);
}

Status add_bias(CommandBatch& batch, const VulkanBuffer& x, const VulkanBuffer& bias, int64_t n,
                int dim) {
  if (n <= 0 || dim <= 0)
    return fail(batch, Status::InvalidArgument("add_bias of " + std::to_string(n) + " rows of " +
                                               std::to_string(dim)));
  return add_periodic(batch, x, bias, n * dim, dim);
}

Status attention(CommandBatch& batch, const VulkanBuffer& q, int64_t n, int start, const KvView& kv,
                 int n_head, int n_head_kv, int head_dim, const VulkanBuffer& scratch,
                 const VulkanBuffer& out) {
  if (n <= 0 || n > 65535 || start < 0 || n_head <= 0 || n_head > 65535 || n_head_kv <= 0 ||
      n_head % n_head_kv != 0 || head_dim <= 0 || kv.buffer == nullptr)
    return fail(batch, Status::InvalidArgument(
                           "attention of " + std::to_string(n) + " tokens from " +
                           std::to_string(start) + ", " + std::to_string(n_head) + " heads over " +
                           std::to_string(n_head_kv) + " kv heads of " + std::to_string(head_dim)));
  const uint64_t q_floats = static_cast<uint64_t>(n) * n_head * head_dim;
  const uint64_t len = static_cast<uint64_t>(start) + n;
  // The last float read of K and of V: position len - 1, kv head n_head_kv - 1.
  const uint64_t kv_end = std::max(kv.k_offset, kv.v_offset) + (len - 1) * kv.stride +
                          static_cast<uint64_t>(n_head_kv) * head_dim;
  // As many tokens a dispatch as `scratch` holds scores for; the dispatches
  // run one after another (the batch's barrier), each reusing the scratch.
  const uint64_t per_token = static_cast<uint64_t>(n_head) * len;
  if (q_floats > kMaxIndex || kv_end > kMaxIndex || per_token > kMaxIndex)
    return fail(batch, Status::InvalidArgument("attention: past 2^32 elements; split the batch"));
  const uint64_t held = std::min<uint64_t>(scratch.size() / 4, kMaxIndex) / per_token;
  if (held == 0)
    return fail(batch, Status::InvalidArgument(
                           "attention scratch of " + std::to_string(scratch.size()) +
                           " bytes holds no token's scores (" + std::to_string(per_token * 4) +
                           " bytes each)"));
  const uint32_t tokens_per_dispatch = static_cast<uint32_t>(std::min<uint64_t>(held, n));
  SWARM_RETURN_IF_ERROR(need(batch, q, q_floats * 4, "attention q"));
  SWARM_RETURN_IF_ERROR(need(batch, *kv.buffer, kv_end * 4, "attention kv"));
  SWARM_RETURN_IF_ERROR(need(batch, out, q_floats * 4, "attention out"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"attention", 4, 40, {}});
  if (!p.ok()) return p.status();
  struct {
    uint32_t n, t0, start, n_head, n_head_kv, head_dim, stride, k_offset, v_offset;
    float scale;
  } push{static_cast<uint32_t>(n), 0, static_cast<uint32_t>(start), static_cast<uint32_t>(n_head),
         static_cast<uint32_t>(n_head_kv), static_cast<uint32_t>(head_dim),
         static_cast<uint32_t>(kv.stride), static_cast<uint32_t>(kv.k_offset),
         static_cast<uint32_t>(kv.v_offset),
         // The CPU's scale, computed the same way (ops.cc).
         1.0f / std::sqrt(static_cast<float>(head_dim))};
  for (uint32_t t0 = 0; t0 < static_cast<uint32_t>(n); t0 += tokens_per_dispatch) {
    push.t0 = t0;
    batch.dispatch(**p, {&q, kv.buffer, &scratch, &out}, &push, static_cast<uint32_t>(n_head),
                   std::min<uint32_t>(tokens_per_dispatch, static_cast<uint32_t>(n) - t0));
  }
  return batch.status();
}

Status argmax(CommandBatch& batch, const VulkanBuffer& x, int64_t n, int64_t cols,
              const VulkanBuffer& out) {
  if (n <= 0 || n > 65535 || cols <= 0 || static_cast<uint64_t>(n) * cols > kMaxIndex)
    return fail(batch, Status::InvalidArgument("argmax of " + std::to_string(n) + " rows of " +
                                               std::to_string(cols)));
  SWARM_RETURN_IF_ERROR(need(batch, x, static_cast<uint64_t>(n) * cols * 4, "argmax x"));
  SWARM_RETURN_IF_ERROR(need(batch, out, static_cast<uint64_t>(n) * 4, "argmax out"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"argmax", 2, 8, {}});
  if (!p.ok()) return p.status();
  const uint32_t push[2] = {static_cast<uint32_t>(n), static_cast<uint32_t>(cols)};
  batch.dispatch(**p, {&x, &out}, push, static_cast<uint32_t>(n));
  return batch.status();
}

Status copy_kernel(CommandBatch& batch, const VulkanBuffer& src, const VulkanBuffer& dst,
                   uint64_t bytes) {
  if (bytes == 0 || bytes % 16 != 0 || bytes / 16 > kMaxIndex)
    return fail(batch, Status::InvalidArgument("copy_kernel of " + std::to_string(bytes) +
                                               " bytes (a multiple of 16)"));
  SWARM_RETURN_IF_ERROR(need(batch, src, bytes, "copy src"));
  SWARM_RETURN_IF_ERROR(need(batch, dst, bytes, "copy dst"));
  Result<const VulkanPipeline*> p = pipeline(batch, {"copy", 2, 4, {}});
  if (!p.ok()) return p.status();
  const uint32_t push = static_cast<uint32_t>(bytes / 16);
  uint32_t gx, gy;
  element_groups(bytes / 16, &gx, &gy);
  batch.dispatch(**p, {&src, &dst}, &push, gx, gy);
  return batch.status();
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
