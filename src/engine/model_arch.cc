#include "engine/model_arch.h"

#include <cmath>

namespace swarm {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

Status expect(const ModelSource& src, const std::string& name, std::vector<int64_t> shape, bool matrix,
              bool required = true) {
  const TensorInfo* t = src.find(name);
  if (t == nullptr) {
    if (!required) return Status::Ok();
    return Status::NotFound(src.path + ": tensor " + name + " is missing (required by " + src.config.arch + ")");
  }
  if (t->shape != shape)
    return Status::InvalidArgument(src.path + ": tensor " + name + " has shape " + shape_str(t->shape) +
                                   ", expected " + shape_str(shape) + " for this model's hyper-parameters");
  const TypeTraits& tr = type_traits(t->type);
  if (!tr.weight_ok)
    return Status::Unsupported(src.path + ": tensor " + name + " has type " + tr.name +
                               " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)");
  if (!matrix && tr.block_size != 1 && t->type != TensorType::Q8_0)
    return Status::Unsupported(src.path + ": tensor " + name + " is a vector of quantized type " + tr.name);
  return Status::Ok();
}

}  // namespace

Status check_model_tensors(const ModelSource& src) {
  const ModelConfig& c = src.config;
  if (c.n_layer <= 0 || c.n_embd <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_ff <= 0 || c.n_vocab <= 0 ||
      c.head_dim <= 0 || c.head_dim % 2 != 0 || c.n_head % c.n_head_kv != 0 || c.rope_dim <= 0 ||
      c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    return Status::InvalidArgument(src.path + ": inconsistent hyper-parameters (layers " + std::to_string(c.n_layer) +
                                   ", d_model " + std::to_string(c.n_embd) + ", heads " + std::to_string(c.n_head) +
                                   "/" + std::to_string(c.n_head_kv) + ", head_dim " + std::to_string(c.head_dim) +
                                   ", rope_dim " + std::to_string(c.rope_dim) + ")");
  const int64_t d = c.n_embd, q_dim = int64_t{c.n_head} * c.head_dim, kv_dim = int64_t{c.n_head_kv} * c.head_dim;
  SWARM_RETURN_IF_ERROR(expect(src, "token_embd.weight", {d, c.n_vocab}, true));
  SWARM_RETURN_IF_ERROR(expect(src, "output_norm.weight", {d}, false));
  SWARM_RETURN_IF_ERROR(expect(src, "output.weight", {d, c.n_vocab}, true, !c.tied_embeddings));
  SWARM_RETURN_IF_ERROR(expect(src, "rope_freqs.weight", {c.rope_dim / 2}, false, false));
  const bool biases = c.arch == "qwen2";
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_norm.weight", {d}, false));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_q.weight", {d, q_dim}, true));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_k.weight", {d, kv_dim}, true));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_v.weight", {d, kv_dim}, true));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_output.weight", {q_dim, d}, true));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_q.bias", {q_dim}, false, biases));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_k.bias", {kv_dim}, false, biases));
    SWARM_RETURN_IF_ERROR(expect(src, p + "attn_v.bias", {kv_dim}, false, biases));
    SWARM_RETURN_IF_ERROR(expect(src, p + "ffn_norm.weight", {d}, false));
    SWARM_RETURN_IF_ERROR(expect(src, p + "ffn_gate.weight", {d, c.n_ff}, true));
    SWARM_RETURN_IF_ERROR(expect(src, p + "ffn_up.weight", {d, c.n_ff}, true));
    SWARM_RETURN_IF_ERROR(expect(src, p + "ffn_down.weight", {c.n_ff, d}, true));
    // Biases these architectures never have: refuse rather than silently ignore them.
    for (const char* b : {"attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"})
      if (src.find(p + b) != nullptr)
        return Status::Unsupported(src.path + ": tensor " + p + b + " (biases on this projection are not supported)");
  }
  return Status::Ok();
}

std::vector<double> rope_inv_freq(const ModelConfig& c) {
  const int half = c.rope_dim / 2;
  std::vector<double> f(half);
  for (int i = 0; i < half; ++i) f[i] = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.rope_dim);
  if (c.rope_scaling == RopeScaling::kLlama3 && c.rope_scale_factor > 0) {
    // Hugging Face's llama3 rule: long wavelengths slow down by `factor`, short ones
    // stay, and the band between is interpolated smoothly.
    const double factor = c.rope_scale_factor, lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
    const double old_ctx = c.rope_original_ctx;
    const double low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
    for (double& inv : f) {
      const double wavelen = 2 * M_PI / inv;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        inv /= factor;
      } else {
        const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
        inv = (1 - smooth) * inv / factor + smooth * inv;
      }
    }
  }
  return f;
}

}  // namespace swarm
