#include "engine/synth.h"

#include <cmath>
#include <set>

#include "engine/gguf_metadata.h"
#include "engine/gguf_writer.h"
#include "engine/mix64.h"
#include "engine/model_arch.h"
#include "engine/progress.h"
#include "engine/quants.h"

namespace swarm {
namespace {

ModelConfig llama_config(int layers, int d, int ff, int heads, int kv_heads, int vocab, int ctx, float theta,
                         bool tied) {
  ModelConfig c;
  c.arch = "llama";
  c.n_layer = layers;
  c.n_embd = d;
  c.n_ff = ff;
  c.n_head = heads;
  c.n_head_kv = kv_heads;
  c.head_dim = d / heads;
  c.rope_dim = c.head_dim;
  c.n_vocab = vocab;
  c.n_ctx_train = ctx;
  c.rope_theta = theta;
  c.rms_eps = 1e-5f;
  c.tied_embeddings = tied;
  return c;
}

ModelConfig qwen2_config(int layers, int d, int ff, int heads, int kv_heads, int vocab, bool tied) {
  ModelConfig c = llama_config(layers, d, ff, heads, kv_heads, vocab, 32768, 1e6f, tied);
  c.arch = "qwen2";
  c.rms_eps = 1e-6f;
  c.rope_neox = true;
  return c;
}

const char* kLlama2Template =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + "
    "'\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + "
    "' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";
const char* kLlama3Template =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::vector<SynthShape> make_shapes() {
  std::vector<SynthShape> s;
  {
    // Small enough to make in a second and to run anywhere: the built-in demo model.
    SynthShape x{"demo-tiny", llama_config(8, 512, 1536, 8, 4, 8192, 2048, 10000.f, false), "llama", "", kLlama2Template};
    s.push_back(x);
  }
  s.push_back({"tinyllama-1.1b", llama_config(22, 2048, 5632, 32, 4, 32000, 2048, 10000.f, false), "llama", "",
               kLlama2Template});
  {
    SynthShape x{"llama-3.2-1b", llama_config(16, 2048, 8192, 32, 8, 128256, 131072, 500000.f, true), "gpt2",
                 "llama-bpe", kLlama3Template};
    x.config.rope_scaling = RopeScaling::kLlama3;
    x.config.rope_scale_factor = 32.f;
    x.config.rope_low_freq_factor = 1.f;
    x.config.rope_high_freq_factor = 4.f;
    x.config.rope_original_ctx = 8192;
    s.push_back(x);
  }
  s.push_back({"llama-3-8b", llama_config(32, 4096, 14336, 32, 8, 128256, 8192, 500000.f, false), "gpt2",
               "llama-bpe", kLlama3Template});
  {
    SynthShape x{"qwen2.5-0.5b", qwen2_config(24, 896, 4864, 14, 2, 151936, true), "gpt2", "qwen2", kChatMlTemplate};
    s.push_back(x);
  }
  s.push_back({"qwen2.5-7b", qwen2_config(28, 3584, 18944, 28, 4, 152064, false), "gpt2", "qwen2", kChatMlTemplate});
  return s;
}


uint64_t name_hash(const std::string& s, uint64_t seed) {
  uint64_t h = mix64(seed);
  for (unsigned char c : s) h = mix64(h ^ c);
  return h;
}

// Weight values: uniform in [-a, a) plus a constant, so norms sit around 1 and
// matrices have the spread of an initialised model (std = 1/sqrt(fan_in)).
struct ValueGen {
  uint64_t key;
  float scale;
  float offset;
  float at(uint64_t i) const {
    const uint64_t r = mix64(key ^ (i * 0xd1342543de82ef95ull));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    return offset + scale * (2.0f * u - 1.0f);
  }
};

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

TensorType matrix_type(const std::string& file_type, const std::string& name, int layer, int n_layer, int64_t cols,
                       bool is_output) {
  TensorType t;
  if (file_type == "Q4_K_M" || file_type == "Q5_K_M") {
    t = file_type == "Q4_K_M" ? TensorType::Q4_K : TensorType::Q5_K;
    const bool more = (name.find("attn_v") != std::string::npos || name.find("ffn_down") != std::string::npos) &&
                      use_more_bits(layer, n_layer);
    if (is_output || more) t = TensorType::Q6_K;
  } else {
    parse_type_name(file_type, &t);
    if (is_output && (t == TensorType::Q4_0)) t = TensorType::Q6_K;
  }
  if (cols % type_traits(t).block_size != 0) t = TensorType::Q8_0;
  return t;
}

// Vocabulary of the right size and kind, so other GGUF readers accept the file
// and our tokenizer can run on it. The pieces themselves are synthetic.
GgufVocab make_vocab(const SynthShape& s) {
  const int n = s.config.n_vocab;
  GgufVocab v;
  std::vector<std::string>& tokens = v.tokens;
  std::vector<float>& scores = v.scores;
  std::vector<int32_t>& types = v.token_type;
  std::set<std::string> seen;
  const std::string letters = "etaoinshrdlucmfwypvbgkjqxz";
  if (s.tokenizer == "llama") {
    tokens = {"<unk>", "<s>", "</s>"};
    types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      tokens.push_back(buf);
      types.push_back(6);
    }
    std::vector<std::string> base;
    for (char c : letters) base.push_back(std::string(1, c));
    for (const std::string& b : base) tokens.push_back(b), types.push_back(1);
    tokens.push_back("\xe2\x96\x81"), types.push_back(1);  // "▁", the space marker
    seen.insert(tokens.begin(), tokens.end());
    uint64_t k = 0;
    while (static_cast<int>(tokens.size()) < n) {
      const uint64_t r = mix64(++k);
      const std::string& a = tokens[3 + 256 + r % (tokens.size() - 259)];
      const std::string& b = base[(r >> 20) % base.size()];
      std::string piece = ((r >> 40) & 1 ? "\xe2\x96\x81" : "") + a + b;
      if (piece.size() > 24 || !seen.insert(piece).second) continue;
      tokens.push_back(piece);
      types.push_back(1);
    }
    for (int i = 0; i < n; ++i) scores.push_back(i < 259 ? 0.0f : -static_cast<float>(i - 259));
    v.model = "llama";
    v.bos = 1;
    v.eos = 2;
    v.unk = 0;
    v.add_bos = true;
  } else {
    // GPT-2 byte-to-unicode mapping: printable bytes stand for themselves, the
    // rest map to code points from 256 up.
    std::vector<std::string> byte_char(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? b : 256 + extra++;
      std::string u;
      if (cp < 0x80) u += static_cast<char>(cp);
      else u += static_cast<char>(0xC0 | (cp >> 6)), u += static_cast<char>(0x80 | (cp & 0x3F));
      byte_char[b] = u;
    }
    const std::vector<std::string> specials =
        s.pre == "qwen2" ? std::vector<std::string>{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
                         : std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                                    "<|end_header_id|>", "<|eot_id|>"};
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_char[b]), types.push_back(1);
    seen.insert(tokens.begin(), tokens.end());
    std::vector<std::string>& merges = v.merges;
    const int n_normal = n - static_cast<int>(specials.size());
    uint64_t k = 0;
    while (static_cast<int>(tokens.size()) < n_normal) {
      const uint64_t r = mix64(++k ^ 0x5bd1e995);
      // Merge two existing tokens, favouring short, common ones, as trained BPE does.
      const size_t limit = std::min<size_t>(tokens.size(), 64 + tokens.size() / 4);
      const std::string a = tokens[r % limit];
      const std::string b = tokens[(r >> 24) % limit];
      const std::string piece = a + b;
      if (piece.size() > 32 || !seen.insert(piece).second) continue;
      tokens.push_back(piece);
      types.push_back(1);
      merges.push_back(a + " " + b);
    }
    for (const std::string& sp : specials) tokens.push_back(sp), types.push_back(3);
    v.model = "gpt2";
    v.pre = s.pre;
    const int32_t first_special = n_normal;
    if (s.pre == "qwen2") {
      v.bos = v.eos = v.pad = first_special;
      v.add_bos = false;
    } else {
      v.bos = first_special;
      v.eos = first_special + 4;  // <|eot_id|>
      v.add_bos = true;
    }
  }
  v.chat_template = s.chat_template;
  return v;
}

struct PlannedTensor {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;
  float scale;
  float offset;
  bool rope_freqs = false;
};

}  // namespace

const std::vector<SynthShape>& synth_shapes() {
  static const std::vector<SynthShape> shapes = make_shapes();
  return shapes;
}

const SynthShape* find_synth_shape(const std::string& name) {
  for (const SynthShape& s : synth_shapes())
    if (s.name == name) return &s;
  return nullptr;
}

Status synthesize_gguf(const SynthShape& shape, const std::string& file_type, uint64_t seed,
                       const std::string& path, ThreadPool& pool, bool progress) {
  static const std::set<std::string> kFileTypes = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"};
  if (!kFileTypes.count(file_type))
    return Status::InvalidArgument("--type " + file_type + " (choose F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K)");
  const ModelConfig& c = shape.config;
  const int64_t d = c.n_embd, q_dim = int64_t{c.n_head} * c.head_dim, kv = int64_t{c.n_head_kv} * c.head_dim;

  std::vector<PlannedTensor> plan;
  auto mat = [&](const std::string& name, int64_t cols, int64_t rows, int layer, bool is_output = false) {
    const TensorType t = matrix_type(file_type, name, layer, c.n_layer, cols, is_output);
    plan.push_back({name, t, {cols, rows}, 1.7320508f / std::sqrt(static_cast<float>(cols)), 0.0f});
  };
  auto vec = [&](const std::string& name, int64_t n, float scale, float offset) {
    plan.push_back({name, TensorType::F32, {n}, scale, offset});
  };
  mat("token_embd.weight", d, c.n_vocab, 0);
  if (file_type == "Q4_K_M" || file_type == "Q5_K_M") plan.back().type = file_type == "Q4_K_M" ? TensorType::Q4_K : TensorType::Q5_K;
  if (d % type_traits(plan.back().type).block_size != 0) plan.back().type = TensorType::Q8_0;
  if (c.rope_scaling == RopeScaling::kLlama3) {
    plan.push_back({"rope_freqs.weight", TensorType::F32, {c.rope_dim / 2}, 0, 0, true});
  }
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    vec(p + "attn_norm.weight", d, 0.2f, 1.0f);
    mat(p + "attn_q.weight", d, q_dim, il);
    mat(p + "attn_k.weight", d, kv, il);
    mat(p + "attn_v.weight", d, kv, il);
    if (c.arch == "qwen2") {
      vec(p + "attn_q.bias", q_dim, 0.1f, 0.0f);
      vec(p + "attn_k.bias", kv, 0.1f, 0.0f);
      vec(p + "attn_v.bias", kv, 0.1f, 0.0f);
    }
    mat(p + "attn_output.weight", q_dim, d, il);
    vec(p + "ffn_norm.weight", d, 0.2f, 1.0f);
    mat(p + "ffn_gate.weight", d, c.n_ff, il);
    mat(p + "ffn_up.weight", d, c.n_ff, il);
    mat(p + "ffn_down.weight", c.n_ff, d, il);
  }
  vec("output_norm.weight", d, 0.2f, 1.0f);
  if (!c.tied_embeddings) mat("output.weight", d, c.n_vocab, c.n_layer - 1, true);

  GgufWriter w;
  w.set_string("general.architecture", c.arch);
  w.set_string("general.name", "synthetic " + shape.name + " (random weights, seed " + std::to_string(seed) + ")");
  w.set_u32("general.alignment", 32);
  write_hparams(w, c);
  write_vocab(w, make_vocab(shape));
  for (const PlannedTensor& t : plan) w.add_tensor(t.name, t.type, t.shape);
  SWARM_RETURN_IF_ERROR(w.begin(path));

  ProgressBar bar("writing " + shape.name + " " + file_type, w.tensor_bytes(),
                  progress ? stderr : nullptr);
  for (const PlannedTensor& t : plan) {
    const int64_t cols = t.shape[0];
    const int64_t rows = t.shape.size() > 1 ? t.shape[1] : 1;
    const size_t rb = row_size(t.type, cols);
    if (t.rope_freqs) {
      // Llama 3 scaling stored as per-dimension divisors of the frequencies.
      const std::vector<float> factors = rope_freq_factors(c);
      SWARM_RETURN_IF_ERROR(w.write_tensor_data(factors.data(), factors.size() * sizeof(float)));
      continue;
    }
    const ValueGen gen{name_hash(t.name, seed), t.scale, t.offset};
    // Rows are generated and quantized in parallel, a slab at a time.
    const int64_t slab = std::max<int64_t>(1, (int64_t{16} << 20) / static_cast<int64_t>(rb));
    std::vector<uint8_t> out;
    for (int64_t r0 = 0; r0 < rows; r0 += slab) {
      const int64_t nr = std::min(slab, rows - r0);
      out.resize(static_cast<size_t>(nr) * rb);
      pool.parallel_for(nr, [&](int64_t b, int64_t e) {
        std::vector<float> row(cols);
        for (int64_t r = b; r < e; ++r) {
          const uint64_t base = static_cast<uint64_t>(r0 + r) * cols;
          for (int64_t i = 0; i < cols; ++i) row[i] = gen.at(base + i);
          quantize_row(t.type, row.data(), out.data() + r * rb, cols);
        }
      });
      SWARM_RETURN_IF_ERROR(w.write_tensor_data(out.data(), out.size()));
      bar.update(w.tensor_bytes_written());
    }
  }
  bar.finish();
  return w.finish();
}

}  // namespace swarm
