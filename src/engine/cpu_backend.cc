#include "engine/cpu_backend.h"

#include <algorithm>

#include "engine/matmul.h"
#include "engine/quants.h"
#include "engine/scratch_buffer.h"

namespace swarm {
namespace {

struct LayerBuffers {
  ScratchBuffer x, q, k, v, attn, g, u;
};

}  // namespace

Status CpuBackend::load(const ModelConfig& config, const ModelWeights& weights, int) {
  config_ = config;
  w_ = weights;
  return Status::Ok();
}

std::unique_ptr<KvStorage> CpuBackend::new_kv_storage(int first_layer, int last_layer, int kv_dim,
                                                      int max_len) const {
  return std::make_unique<CpuKvStorage>(first_layer, last_layer, kv_dim, max_len);
}

Status CpuBackend::embed(const int32_t* tokens, int64_t n, float* hidden) const {
  embedding_rows(w_.token_embd, tokens, n, hidden);
  return Status::Ok();
}

Status CpuBackend::run_layers(float* hidden, const std::vector<SeqChunk>& chunks,
                              const std::vector<int32_t>& positions, int first, int last,
                              ThreadPool& pool) const {
  std::vector<CpuKvStorage*> kv;
  kv.reserve(chunks.size());
  for (const SeqChunk& ch : chunks) {
    auto* s = dynamic_cast<CpuKvStorage*>(&ch.cache->storage());
    if (s == nullptr) return Status::InvalidArgument("KV cache was not made by the cpu backend");
    kv.push_back(s);
  }
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(positions.size());
  const RopeTable rot =
      rope_table(n, positions.data(), c.rope_dim, w_.rope_inv_freq, w_.rope_position_scale);
  for (int il = first; il < last; ++il) run_layer(il, hidden, chunks, kv, n, rot, pool);
  return Status::Ok();
}

void CpuBackend::run_layer(int il, float* hidden, const std::vector<SeqChunk>& chunks,
                           const std::vector<CpuKvStorage*>& kv_of, int64_t n, const RopeTable& rot,
                           ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const LayerWeights& L = w_.layers[il - w_.first_layer];
  const int d = c.n_embd, q_dim = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  // Activations live in buffers the calling thread keeps between layers and calls:
  // fresh vectors would be zeroed, and for a prefill batch they are big enough to
  // come straight from mmap, page faults and all, in every layer.
  thread_local LayerBuffers buffers;
  float* x = buffers.x.get<float>(n * d);
  float* q = buffers.q.get<float>(n * q_dim);
  float* k = buffers.k.get<float>(n * kv);
  float* v = buffers.v.get<float>(n * kv);
  float* attn = buffers.attn.get<float>(n * q_dim);
  float* g = buffers.g.get<float>(n * c.n_ff);
  float* u = buffers.u.get<float>(n * c.n_ff);

  rms_norm(hidden, L.attn_norm, n, d, c.rms_eps, x);
  const WeightMatrix* qkv[] = {&L.wq, &L.wk, &L.wv};
  float* const qkv_out[] = {q, k, v};
  matmul_group(qkv, qkv_out, 3, x, n, pool);
  auto add_bias = [n](float* y, const float* b, int dim) {
    if (b == nullptr) return;
    for (int64_t t = 0; t < n; ++t)
      for (int i = 0; i < dim; ++i) y[t * dim + i] += b[i];
  };
  add_bias(q, L.bq, q_dim);
  add_bias(k, L.bk, kv);
  add_bias(v, L.bv, kv);
  rope(q, n, c.n_head, c.head_dim, rot, c.rope_neox);
  rope(k, n, c.n_head_kv, c.head_dim, rot, c.rope_neox);

  int64_t row = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const SeqChunk& ch = chunks[ci];
    CpuKvStorage& cache = *kv_of[ci];
    const int start = ch.cache->length();
    for (int i = 0; i < ch.n_tokens; ++i) {
      std::copy_n(&k[(row + i) * kv], kv, cache.k(il, start + i));
      std::copy_n(&v[(row + i) * kv], kv, cache.v(il, start + i));
    }
    attention(&q[row * q_dim], ch.n_tokens, start, cache, il, c.n_head, c.n_head_kv, c.head_dim,
              &attn[row * q_dim], pool);
    row += ch.n_tokens;
  }
  matmul(L.wo, attn, n, x, pool);
  for (int64_t i = 0; i < n * d; ++i) hidden[i] += x[i];

  rms_norm(hidden, L.ffn_norm, n, d, c.rms_eps, x);
  swiglu(L.gate, L.up, x, n, g, u, pool);
  matmul(L.down, g, n, x, pool);
  for (int64_t i = 0; i < n * d; ++i) hidden[i] += x[i];
}

Status CpuBackend::head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const {
  const int d = config_.n_embd;
  std::vector<float> x(n * d);
  rms_norm(hidden, w_.output_norm, n, d, config_.rms_eps, x.data());
  matmul(w_.output, x.data(), n, logits, pool);
  return Status::Ok();
}

Status CpuBackend::final_norm(const float* hidden, int64_t n, float* out) const {
  rms_norm(hidden, w_.output_norm, n, config_.n_embd, config_.rms_eps, out);
  return Status::Ok();
}

}  // namespace swarm
