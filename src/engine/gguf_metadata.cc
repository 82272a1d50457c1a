#include "engine/gguf_metadata.h"

#include <cmath>
#include <cstdio>

#include "engine/model_arch.h"

namespace swarm {

void write_general_metadata(GgufWriter& w, const std::string& arch, const std::string& name,
                            uint64_t n_params) {
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "model");
  w.set_string("general.name", name);
  w.set_string("general.size_label", size_label(n_params));
}

void write_file_type(GgufWriter& w, uint32_t llama_ftype) {
  w.set_u32("general.file_type", llama_ftype);
  w.set_u32("general.quantization_version", 2);  // GGML_QNT_VERSION
}

std::string size_label(uint64_t n_params) {
  // gguf-py's model_weight_count_rounded_notation(n, min_digits = 2).
  const double n = static_cast<double>(n_params);
  double scaled = n * 1e-3;
  const char* suffix = "K";
  if (n > 1e12) {
    scaled = n * 1e-12, suffix = "T";
  } else if (n > 1e9) {
    scaled = n * 1e-9, suffix = "B";
  } else if (n > 1e6) {
    scaled = n * 1e-6, suffix = "M";
  }
  // Python's round() is to nearest even; "0" has no significant digits.
  const long long whole = std::llrint(std::nearbyint(scaled));
  const int digits = whole == 0 ? 0 : static_cast<int>(std::to_string(whole).size());
  const int decimals = std::max(2 - digits, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", decimals, scaled, suffix);
  return buf;
}

void write_hparams(GgufWriter& w, const ModelConfig& c) {
  const std::string a = c.arch + ".";
  const auto u32 = [](int x) { return static_cast<uint32_t>(x); };
  w.set_u32(a + "block_count", u32(c.n_layer));
  w.set_u32(a + "context_length", u32(c.n_ctx_train));
  w.set_u32(a + "embedding_length", u32(c.n_embd));
  w.set_u32(a + "feed_forward_length", u32(c.n_ff));
  w.set_u32(a + "attention.head_count", u32(c.n_head));
  w.set_u32(a + "attention.head_count_kv", u32(c.n_head_kv));
  w.set_f32(a + "rope.freq_base", c.rope_theta);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", c.rms_eps);
  const bool llama = c.arch == "llama";
  if (llama || c.head_dim * c.n_head != c.n_embd) {
    w.set_u32(a + "attention.key_length", u32(c.head_dim));
    w.set_u32(a + "attention.value_length", u32(c.head_dim));
  }
  if (llama) w.set_u32(a + "vocab_size", u32(c.n_vocab));
  if (llama || c.rope_dim != c.head_dim) w.set_u32(a + "rope.dimension_count", u32(c.rope_dim));
  if (c.rope_scaling == RopeScaling::kLinear) {
    w.set_string(a + "rope.scaling.type", "linear");
    w.set_f32(a + "rope.scaling.factor", c.rope_scale_factor);
  }
}

std::vector<float> rope_freq_factors(const ModelConfig& c) {
  ModelConfig plain = c;
  plain.rope_scaling = RopeScaling::kNone;
  const std::vector<double> base = rope_inv_freq(plain), scaled = rope_inv_freq(c);
  std::vector<float> factors(base.size());
  for (size_t i = 0; i < base.size(); ++i) factors[i] = static_cast<float>(base[i] / scaled[i]);
  return factors;
}

void write_vocab(GgufWriter& w, const GgufVocab& v) {
  w.set_string("tokenizer.ggml.model", v.model);
  if (!v.pre.empty()) w.set_string("tokenizer.ggml.pre", v.pre);
  w.set_strings("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.set_f32s("tokenizer.ggml.scores", v.scores);
  w.set_i32s("tokenizer.ggml.token_type", v.token_type);
  if (!v.merges.empty()) w.set_strings("tokenizer.ggml.merges", v.merges);
  const std::pair<const char*, int32_t> ids[] = {
      {"bos_token_id", v.bos},     {"eos_token_id", v.eos},
      {"unknown_token_id", v.unk}, {"seperator_token_id", v.sep},  // llama.cpp's spelling
      {"padding_token_id", v.pad},
  };
  for (const auto& [key, id] : ids)
    if (id >= 0) w.set_u32(std::string("tokenizer.ggml.") + key, static_cast<uint32_t>(id));
  if (v.add_bos) w.set_bool("tokenizer.ggml.add_bos_token", *v.add_bos);
  if (v.add_eos) w.set_bool("tokenizer.ggml.add_eos_token", *v.add_eos);
  if (v.add_space_prefix) w.set_bool("tokenizer.ggml.add_space_prefix", *v.add_space_prefix);
  if (!v.chat_template.empty()) w.set_string("tokenizer.chat_template", v.chat_template);
  std::vector<std::string> names;
  for (const auto& [name, tmpl] : v.named_chat_templates) {
    w.set_string("tokenizer.chat_template." + name, tmpl);
    names.push_back(name);
  }
  if (!names.empty()) w.set_strings("tokenizer.chat_templates", names);
}

}  // namespace swarm
