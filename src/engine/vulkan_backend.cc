#ifdef SWARM_HAVE_VULKAN_KERNELS

#include "engine/vulkan_backend.h"

#include <algorithm>
#include <cstring>

#include "engine/quants.h"
#include "engine/tensor_types.h"

namespace swarm {

using vk::BufferKind;
using vk::CommandBatch;
using vk::DeviceMatrix;
using vk::VulkanBuffer;
using vk::VulkanContext;

namespace {

uint64_t matrix_bytes(const WeightMatrix& m) {
  return m.data == nullptr ? 0 : row_size(m.type, m.cols) * static_cast<uint64_t>(m.rows);
}

// The matrices load() uploads, with the names errors give them.
std::vector<std::pair<std::string, const WeightMatrix*>> held_matrices(const ModelWeights& w) {
  std::vector<std::pair<std::string, const WeightMatrix*>> out;
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& L = w.layers[i];
    const std::string p = "blk." + std::to_string(w.first_layer + static_cast<int>(i)) + ".";
    for (auto [name, m] : {std::pair{"attn_q", &L.wq}, {"attn_k", &L.wk}, {"attn_v", &L.wv},
                           {"attn_output", &L.wo}, {"ffn_gate", &L.gate}, {"ffn_up", &L.up},
                           {"ffn_down", &L.down}})
      out.emplace_back(p + name, m);
  }
  if (w.output.data != nullptr) out.emplace_back("output", &w.output);
  return out;
}

uint64_t mib(uint64_t bytes) { return (bytes + (1 << 20) - 1) >> 20; }

}  // namespace

Result<std::unique_ptr<VulkanBackend>> VulkanBackend::open(int index) {
  Result<std::unique_ptr<VulkanContext>> ctx = VulkanContext::open(index);
  if (!ctx.ok()) return ctx.status();
  auto device = std::make_shared<vk::SharedVulkanContext>();
  device->ctx = std::move(ctx).value();
  return std::unique_ptr<VulkanBackend>(new VulkanBackend(index, std::move(device)));
}

VulkanBackend::~VulkanBackend() {
  // Buffers give their bytes back to the context's account: under its lock, as
  // caches that outlive this backend may still be using the context.
  std::lock_guard<std::mutex> lock(device_->mu);
  layers_.clear();
  kept_ = vk::VulkanWorkspace();
  output_norm_.reset();
  output_ = DeviceMatrix();
}

uint64_t VulkanBackend::device_bytes(const ModelConfig& c, const ModelWeights& w) {
  uint64_t bytes = 0;
  for (const auto& [name, m] : held_matrices(w)) bytes += matrix_bytes(*m);
  const uint64_t q_dim = static_cast<uint64_t>(c.n_head) * c.head_dim;
  const uint64_t kv = static_cast<uint64_t>(c.n_head_kv) * c.head_dim;
  for (const LayerWeights& L : w.layers) {
    bytes += 2 * c.n_embd * sizeof(float);
    if (L.bq != nullptr) bytes += q_dim * sizeof(float);
    if (L.bk != nullptr) bytes += kv * sizeof(float);
    if (L.bv != nullptr) bytes += kv * sizeof(float);
  }
  if (w.output_norm != nullptr) bytes += c.n_embd * sizeof(float);
  return bytes;
}

Status VulkanBackend::load(const ModelConfig& config, const ModelWeights& weights, int context) {
  config_ = config;
  first_layer_ = weights.first_layer;
  rope_inv_freq_ = weights.rope_inv_freq;
  rope_position_scale_ = weights.rope_position_scale;
  // The embedding is not uploaded: a lookup reads n rows of it, which the host
  // dequantises (embed()) faster than a submit would take, and the hidden states
  // cross to the device in run_layers() anyway.
  token_embd_ = weights.token_embd;
  for (const auto& [name, m] : held_matrices(weights))
    if (!vk::matmul_supports(m->type))
      return Status::Unsupported(name + ": the Vulkan kernels have no matmul for " +
                                 std::string(type_name(m->type)));
  std::lock_guard<std::mutex> lock(device_->mu);
  VulkanContext& ctx = *device_->ctx;
  // All or nothing: a model that does not fit is refused before any upload, so
  // the error comes at once and names the whole need: the weights and the
  // workspace at its largest (decode batches', a long prompt's beside them, at
  // the full context). The KV caches take their memory as sessions grow.
  const uint64_t weight_bytes = device_bytes(config, weights);
  const uint64_t work_bytes = vk::workspace_bytes(config, weights.output.data != nullptr, context);
  const uint64_t need = weight_bytes + work_bytes, available = ctx.free_bytes();
  if (need > available)
    return Status::ResourceExhausted(
        "layers " + std::to_string(weights.first_layer) + ":" +
        std::to_string(weights.last_layer) + (weights.output.data ? " and the head" : "") +
        " need " + std::to_string(mib(need)) + " MiB of device memory on " + ctx.device_name() +
        " (weights " + std::to_string(mib(weight_bytes)) + " MiB, workspace " +
        std::to_string(mib(work_bytes)) + " MiB for a context of " + std::to_string(context) +
        "), " + std::to_string(available >> 20) + " MiB free");
  return upload_all(weights);
}

Result<VulkanBuffer> VulkanBackend::upload_floats(const float* data, int64_t count) {
  VulkanContext& ctx = *device_->ctx;
  Result<VulkanBuffer> b = ctx.create_buffer(count * sizeof(float), BufferKind::kDevice);
  if (!b.ok()) return b.status();
  SWARM_RETURN_IF_ERROR(ctx.upload(*b, 0, data, count * sizeof(float)));
  return b;
}

Status VulkanBackend::upload_all(const ModelWeights& w) {
  VulkanContext& ctx = *device_->ctx;
  const ModelConfig& c = config_;
  const int q_dim = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  auto matrix = [&](const WeightMatrix& m, DeviceMatrix* out) -> Status {
    Result<DeviceMatrix> d = vk::upload_matrix(ctx, m);
    if (!d.ok()) return d.status();
    *out = std::move(d).value();
    return Status::Ok();
  };
  auto floats = [&](const float* data, int64_t count, VulkanBuffer* out) -> Status {
    if (data == nullptr) return Status::Ok();
    Result<VulkanBuffer> b = upload_floats(data, count);
    if (!b.ok()) return b.status();
    *out = std::move(b).value();
    return Status::Ok();
  };
  layers_.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& L = w.layers[i];
    DeviceLayer& D = layers_[i];
    SWARM_RETURN_IF_ERROR(matrix(L.wq, &D.wq));
    SWARM_RETURN_IF_ERROR(matrix(L.wk, &D.wk));
    SWARM_RETURN_IF_ERROR(matrix(L.wv, &D.wv));
    SWARM_RETURN_IF_ERROR(matrix(L.wo, &D.wo));
    SWARM_RETURN_IF_ERROR(matrix(L.gate, &D.gate));
    SWARM_RETURN_IF_ERROR(matrix(L.up, &D.up));
    SWARM_RETURN_IF_ERROR(matrix(L.down, &D.down));
    SWARM_RETURN_IF_ERROR(floats(L.attn_norm, c.n_embd, &D.attn_norm));
    SWARM_RETURN_IF_ERROR(floats(L.ffn_norm, c.n_embd, &D.ffn_norm));
    SWARM_RETURN_IF_ERROR(floats(L.bq, q_dim, &D.bq));
    SWARM_RETURN_IF_ERROR(floats(L.bk, kv, &D.bk));
    SWARM_RETURN_IF_ERROR(floats(L.bv, kv, &D.bv));
  }
  has_head_ = w.output.data != nullptr && w.output_norm != nullptr;
  if (has_head_) {
    SWARM_RETURN_IF_ERROR(matrix(w.output, &output_));
    SWARM_RETURN_IF_ERROR(floats(w.output_norm, c.n_embd, &output_norm_));
  }
  return Status::Ok();
}

std::unique_ptr<KvStorage> VulkanBackend::new_kv_storage(int first_layer, int last_layer,
                                                         int kv_dim, int max_len) const {
  return std::make_unique<vk::VulkanKvStorage>(device_, first_layer, last_layer, kv_dim, max_len);
}

Status VulkanBackend::embed(const int32_t* tokens, int64_t n, float* hidden) const {
  // On the host, as the CPU backend does: see load().
  if (token_embd_.data == nullptr) return Status::InvalidArgument("the embedding is not held");
  embedding_rows(token_embd_, tokens, n, hidden);
  return Status::Ok();
}

std::vector<std::vector<VulkanBackend::SubmitChunk>> VulkanBackend::split_into_submits(
    const std::vector<SeqChunk>& chunks, const std::vector<vk::VulkanKvStorage*>& kv,
    int64_t max_rows) {
  std::vector<std::vector<SubmitChunk>> submits(1);
  int64_t rows = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    for (int done = 0; done < chunks[ci].n_tokens;) {
      if (rows == max_rows) submits.emplace_back(), rows = 0;
      const int take = static_cast<int>(std::min<int64_t>(chunks[ci].n_tokens - done, max_rows - rows));
      submits.back().push_back({kv[ci], chunks[ci].cache->length() + done, take});
      done += take;
      rows += take;
    }
  }
  return submits;
}

Status VulkanBackend::run_layers(float* hidden, const std::vector<SeqChunk>& chunks,
                                 const std::vector<int32_t>& positions, int first, int last,
                                 ThreadPool&) const {
  std::vector<vk::VulkanKvStorage*> kv;
  kv.reserve(chunks.size());
  for (const SeqChunk& ch : chunks) {
    auto* s = dynamic_cast<vk::VulkanKvStorage*>(&ch.cache->storage());
    if (s == nullptr || s->device() != device_.get())
      return Status::InvalidArgument("KV cache was not made by the " + name() + " backend");
    kv.push_back(s);
  }
  // A long prompt runs in several submits, so that its workspace stays within
  // what load() checked (vulkan_sizes.h); each submit's keys and values are in
  // the cache before the next one's attention reads them.
  const int64_t n = static_cast<int64_t>(positions.size());
  std::lock_guard<std::mutex> lock(device_->mu);
  // Small batches compute in the kept workspace; a longer call in its own,
  // freed when it ends.
  vk::VulkanWorkspace own;
  vk::VulkanWorkspace& ws = n <= vk::kKeptWorkspaceRows ? kept_ : own;
  int64_t row = 0;
  for (const std::vector<SubmitChunk>& submit : split_into_submits(chunks, kv, vk::kMaxRowsPerSubmit)) {
    int64_t rows = 0;
    for (const SubmitChunk& ch : submit) rows += ch.n_tokens;
    SWARM_RETURN_IF_ERROR(run_submit(hidden + row * config_.n_embd, positions.data() + row, rows,
                                     submit, first, last, ws));
    row += rows;
  }
  return Status::Ok();
}

Status VulkanBackend::run_submit(float* hidden, const int32_t* positions, int64_t n,
                                 const std::vector<SubmitChunk>& chunks, int first, int last,
                                 vk::VulkanWorkspace& ws) const {
  const ModelConfig& c = config_;
  const uint64_t d = c.n_embd, f = sizeof(float);
  // The rotation table as the CPU backend computes it (ModelWeights says how).
  const RopeTable rot = rope_table(n, positions, c.rope_dim, rope_inv_freq_, rope_position_scale_);
  const uint64_t hidden_bytes = n * d * f, rope_bytes = 2 * rot.cs.size() * f;
  int max_chunk = 0;
  uint64_t scratch = 1;
  for (const SubmitChunk& ch : chunks) {
    max_chunk = std::max(max_chunk, ch.n_tokens);
    scratch = std::max(scratch, vk::attention_scratch_floats(ch.n_tokens, ch.start, c.n_head));
  }

  VulkanContext& ctx = *device_->ctx;
  using W = vk::VulkanWorkspace;
  const vk::LayerBuffers sizes =
      vk::layer_buffers(c, n, rope_bytes, max_chunk, scratch, chunks.size() > 1);
  for (auto [buf, bytes] : {std::pair{&ws.x, sizes.x}, {&ws.h, sizes.h}, {&ws.q, sizes.q},
                            {&ws.k, sizes.k}, {&ws.v, sizes.v}, {&ws.attn, sizes.attn},
                            {&ws.o, sizes.o}, {&ws.g, sizes.g}, {&ws.u, sizes.u},
                            {&ws.scratch, sizes.scratch}, {&ws.rope, sizes.rope}})
    SWARM_RETURN_IF_ERROR(W::reserve(ctx, *buf, bytes));
  if (chunks.size() > 1) {
    SWARM_RETURN_IF_ERROR(W::reserve(ctx, ws.qc, sizes.qc));
    SWARM_RETURN_IF_ERROR(W::reserve(ctx, ws.ac, sizes.ac));
  }
  SWARM_RETURN_IF_ERROR(W::reserve(ctx, ws.staging, sizes.staging, BufferKind::kStaging));

  // In, every layer and out in one submit: the hidden states and the table go
  // through the staging buffer, which takes the results back at the end.
  auto* staged = static_cast<uint8_t*>(ws.staging.mapped());
  std::memcpy(staged, hidden, hidden_bytes);
  std::memcpy(staged + hidden_bytes, rot.cs.data(), rope_bytes / 2);
  std::memcpy(staged + hidden_bytes + rope_bytes / 2, rot.sn.data(), rope_bytes / 2);
  vk::DeviceRopeTable table;
  table.n = n;
  table.half = rot.half;
  table.data = std::move(ws.rope);  // lent to the table for this call
  CommandBatch batch(ctx);
  batch.copy(ws.staging, 0, ws.x, 0, hidden_bytes);
  batch.copy(ws.staging, hidden_bytes, table.data, 0, rope_bytes);
  for (int il = first; il < last; ++il) record_layer(batch, il, n, ws, table, chunks);
  batch.copy(ws.x, 0, ws.staging, 0, hidden_bytes);
  const Status st = batch.run();
  ws.rope = std::move(table.data);
  SWARM_RETURN_IF_ERROR(st);
  std::memcpy(hidden, staged, hidden_bytes);
  return Status::Ok();
}

void VulkanBackend::record_layer(CommandBatch& b, int il, int64_t n, const vk::VulkanWorkspace& a,
                                 const vk::DeviceRopeTable& rope,
                                 const std::vector<SubmitChunk>& chunks) const {
  const ModelConfig& c = config_;
  const DeviceLayer& L = layers_[il - first_layer_];
  const int d = c.n_embd, q_dim = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  // Kernel wrappers keep their first error in the batch; run() returns it.
  auto check = [&b](const Status& s) { b.fail(s); };

  check(vk::rms_norm(b, a.x, L.attn_norm, n, d, c.rms_eps, a.h));
  check(vk::matmul(b, L.wq, a.h, n, a.q));
  check(vk::matmul(b, L.wk, a.h, n, a.k));
  check(vk::matmul(b, L.wv, a.h, n, a.v));
  if (L.bq.valid()) check(vk::add_bias(b, a.q, L.bq, n, q_dim));
  if (L.bk.valid()) check(vk::add_bias(b, a.k, L.bk, n, kv));
  if (L.bv.valid()) check(vk::add_bias(b, a.v, L.bv, n, kv));
  check(vk::rope(b, a.q, c.n_head, c.head_dim, rope, c.rope_neox));
  check(vk::rope(b, a.k, c.n_head_kv, c.head_dim, rope, c.rope_neox));
  const uint64_t q_row = static_cast<uint64_t>(q_dim) * sizeof(float);
  const uint64_t kv_row = static_cast<uint64_t>(kv) * sizeof(float);
  int64_t row = 0;
  for (const SubmitChunk& ch : chunks) {
    const vk::VulkanKvStorage& cache = *ch.kv;
    const int nt = ch.n_tokens, start = ch.start;
    const VulkanBuffer& kvbuf = cache.buffer(il);
    const uint64_t pos_bytes = cache.position_bytes();
    b.copy_rows(a.k, row * kv_row, kv_row, kvbuf, start * pos_bytes, pos_bytes, kv_row, nt);
    b.copy_rows(a.v, row * kv_row, kv_row, kvbuf, start * pos_bytes + kv_row, pos_bytes, kv_row,
                nt);
    // The attention kernel takes whole buffers: with several chunks, each one's
    // queries go through a buffer of their own (exact copies: the bits are those
    // of the chunk alone).
    if (chunks.size() == 1) {
      check(vk::attention(b, a.q, nt, start, cache.view(il), c.n_head, c.n_head_kv, c.head_dim,
                          a.scratch, a.attn));
    } else {
      b.copy(a.q, row * q_row, a.qc, 0, nt * q_row);
      check(vk::attention(b, a.qc, nt, start, cache.view(il), c.n_head, c.n_head_kv, c.head_dim,
                          a.scratch, a.ac));
      b.copy(a.ac, 0, a.attn, row * q_row, nt * q_row);
    }
    row += nt;
  }
  check(vk::matmul(b, L.wo, a.attn, n, a.o));
  check(vk::add(b, a.x, a.o, n * d));

  check(vk::rms_norm(b, a.x, L.ffn_norm, n, d, c.rms_eps, a.h));
  check(vk::matmul(b, L.gate, a.h, n, a.g));
  check(vk::matmul(b, L.up, a.h, n, a.u));
  check(vk::silu_mul(b, a.g, a.u, n * c.n_ff, a.g));
  check(vk::matmul(b, L.down, a.g, n, a.o));
  check(vk::add(b, a.x, a.o, n * d));
}

Status VulkanBackend::head(const float* hidden, int64_t n, float* logits, ThreadPool&) const {
  return run_head(hidden, n, logits, true);
}

Status VulkanBackend::final_norm(const float* hidden, int64_t n, float* out) const {
  return run_head(hidden, n, out, false);
}

Status VulkanBackend::run_head(const float* hidden, int64_t n, float* out, bool with_output) const {
  if (!has_head_) return Status::InvalidArgument("the output head is not held");
  const int d = config_.n_embd;
  const int64_t out_cols = with_output ? output_.rows : d;
  const uint64_t f = sizeof(float);
  std::lock_guard<std::mutex> lock(device_->mu);
  VulkanContext& ctx = *device_->ctx;
  // Rows in groups the kept workspace holds, whose logits fit one buffer (a
  // big vocabulary times a long prompt need not): each row's result is the same
  // whatever its group, and the head takes no memory beyond what load() checked.
  const uint64_t row_bytes = static_cast<uint64_t>(std::max<int64_t>(out_cols, d)) * f;
  const int64_t group = std::max<int64_t>(
      1, std::min({n, vk::kKeptWorkspaceRows, static_cast<int64_t>(ctx.max_buffer_bytes() / row_bytes)}));
  vk::VulkanWorkspace& ws = kept_;
  using W = vk::VulkanWorkspace;
  SWARM_RETURN_IF_ERROR(W::reserve(ctx, ws.x, group * d * f));
  if (with_output) SWARM_RETURN_IF_ERROR(W::reserve(ctx, ws.logits, group * out_cols * f));
  SWARM_RETURN_IF_ERROR(W::reserve(ctx, ws.staging, group * row_bytes, BufferKind::kStaging));
  auto* staged = static_cast<uint8_t*>(ws.staging.mapped());
  for (int64_t r0 = 0; r0 < n; r0 += group) {
    const int64_t m = std::min(group, n - r0);
    std::memcpy(staged, hidden + r0 * d, m * d * f);
    CommandBatch b(ctx);
    b.copy(ws.staging, 0, ws.x, 0, m * d * f);
    b.fail(vk::rms_norm(b, ws.x, output_norm_, m, d, config_.rms_eps, ws.x));
    if (with_output) b.fail(vk::matmul(b, output_, ws.x, m, ws.logits));
    b.copy(with_output ? ws.logits : ws.x, 0, ws.staging, 0, m * out_cols * f);
    SWARM_RETURN_IF_ERROR(b.run());
    std::memcpy(out + r0 * out_cols, staged, m * out_cols * f);
  }
  return Status::Ok();
}

}  // namespace swarm

#endif  // SWARM_HAVE_VULKAN_KERNELS
