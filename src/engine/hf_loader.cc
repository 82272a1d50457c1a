#include "engine/hf_loader.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "engine/json_file.h"
#include "engine/safetensors.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---------------------------------------------------------------- config.json

// A field given as null counts as absent (HF writes "num_key_value_heads": null).
const json* field(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return nullptr;
  return &*it;
}

// Reads a positive integer; `def` < 0 makes the field required.
Status get_int(const json& cfg, const char* key, int def, const std::string& what, int* out) {
  const json* v = field(cfg, key);
  if (v == nullptr) {
    if (def < 0) return Status::InvalidArgument(what + ": missing required field '" + key + "'");
    *out = def;
    return Status::Ok();
  }
  if (!v->is_number_integer())
    return Status::InvalidArgument(what + ": field '" + key + "' must be an integer");
  const int64_t x = v->get<int64_t>();
  if (x <= 0 || x > std::numeric_limits<int>::max())
    return Status::InvalidArgument(what + ": field '" + key + "' = " + std::to_string(x) +
                                   " is out of range");
  *out = static_cast<int>(x);
  return Status::Ok();
}

// Reads a positive finite number (integers accepted).
Status get_float(const json& obj, const char* key, float def, const std::string& what, float* out) {
  const json* v = field(obj, key);
  if (v == nullptr) {
    *out = def;
    return Status::Ok();
  }
  if (!v->is_number())
    return Status::InvalidArgument(what + ": field '" + key + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x <= 0 || x > std::numeric_limits<float>::max())
    return Status::InvalidArgument(what + ": field '" + key + "' is out of range");
  *out = static_cast<float>(x);
  return Status::Ok();
}

Status get_bool(const json& cfg, const char* key, bool def, const std::string& what, bool* out) {
  const json* v = field(cfg, key);
  if (v == nullptr) {
    *out = def;
    return Status::Ok();
  }
  if (!v->is_boolean())
    return Status::InvalidArgument(what + ": field '" + key + "' must be a boolean");
  *out = v->get<bool>();
  return Status::Ok();
}

// Maps config.json's architectures (or model_type) to our arch name.
Status detect_arch(const json& cfg, const std::string& what, std::string* arch) {
  static const std::pair<const char*, const char*> kArchs[] = {
      {"LlamaForCausalLM", "llama"},
      {"MistralForCausalLM", "llama"},
      {"Qwen2ForCausalLM", "qwen2"},
  };
  const json* archs = field(cfg, "architectures");
  if (archs != nullptr) {
    if (!archs->is_array() || archs->empty())
      return Status::InvalidArgument(what + ": 'architectures' must be a non-empty array");
    std::string names;
    for (const json& a : *archs) {
      if (!a.is_string())
        return Status::InvalidArgument(what + ": 'architectures' must hold strings");
      const std::string s = a.get<std::string>();
      for (const auto& [hf, ours] : kArchs) {
        if (s == hf) {
          *arch = ours;
          return Status::Ok();
        }
      }
      names += (names.empty() ? "" : ", ") + s;
    }
    return Status::Unsupported(what + ": architecture " + names +
                               " is not supported (LlamaForCausalLM, MistralForCausalLM, "
                               "Qwen2ForCausalLM are)");
  }
  const json* mt = field(cfg, "model_type");
  if (mt == nullptr || !mt->is_string())
    return Status::InvalidArgument(what + ": neither 'architectures' nor 'model_type' is given");
  const std::string t = mt->get<std::string>();
  if (t == "llama" || t == "mistral") {
    *arch = "llama";
  } else if (t == "qwen2") {
    *arch = "qwen2";
  } else {
    return Status::Unsupported(what + ": model_type '" + t + "' is not supported");
  }
  return Status::Ok();
}

// RoPE base and scaling. transformers 4 writes "rope_theta" and "rope_scaling"
// at the top level; transformers 5 nests both in "rope_parameters".
Status parse_rope(const json& cfg, const std::string& what, ModelConfig* c) {
  const json* params = field(cfg, "rope_parameters");
  if (params != nullptr && !params->is_object())
    return Status::InvalidArgument(what + ": 'rope_parameters' must be an object");
  if (field(cfg, "rope_theta") != nullptr) {
    SWARM_RETURN_IF_ERROR(get_float(cfg, "rope_theta", 10000.0f, what, &c->rope_theta));
  } else if (params != nullptr) {
    SWARM_RETURN_IF_ERROR(
        get_float(*params, "rope_theta", 10000.0f, what + " rope_parameters", &c->rope_theta));
  }

  const json* scaling = field(cfg, "rope_scaling");
  std::string where = what + " rope_scaling";
  if (scaling == nullptr) {
    scaling = params;
    where = what + " rope_parameters";
  }
  c->rope_scaling = RopeScaling::kNone;
  if (scaling == nullptr) return Status::Ok();
  if (!scaling->is_object()) return Status::InvalidArgument(where + ": must be an object");
  const json* type = field(*scaling, "rope_type");
  if (type == nullptr) type = field(*scaling, "type");
  if (type == nullptr) return Status::Ok();
  if (!type->is_string()) return Status::InvalidArgument(where + ": rope type must be a string");
  const std::string t = type->get<std::string>();
  if (t == "default") return Status::Ok();
  if (field(*scaling, "factor") == nullptr)
    return Status::InvalidArgument(where + ": missing required field 'factor'");
  SWARM_RETURN_IF_ERROR(get_float(*scaling, "factor", 1.0f, where, &c->rope_scale_factor));
  if (t == "linear") {
    c->rope_scaling = RopeScaling::kLinear;
  } else if (t == "llama3") {
    c->rope_scaling = RopeScaling::kLlama3;
    SWARM_RETURN_IF_ERROR(
        get_float(*scaling, "low_freq_factor", 1.0f, where, &c->rope_low_freq_factor));
    SWARM_RETURN_IF_ERROR(
        get_float(*scaling, "high_freq_factor", 4.0f, where, &c->rope_high_freq_factor));
    SWARM_RETURN_IF_ERROR(
        get_int(*scaling, "original_max_position_embeddings", 8192, where, &c->rope_original_ctx));
  } else {
    return Status::Unsupported(where + ": rope type '" + t + "' is not supported");
  }
  return Status::Ok();
}

Status parse_config(const json& cfg, const std::string& what, ModelConfig* c) {
  SWARM_RETURN_IF_ERROR(detect_arch(cfg, what, &c->arch));
  SWARM_RETURN_IF_ERROR(get_int(cfg, "num_hidden_layers", -1, what, &c->n_layer));
  SWARM_RETURN_IF_ERROR(get_int(cfg, "hidden_size", -1, what, &c->n_embd));
  SWARM_RETURN_IF_ERROR(get_int(cfg, "num_attention_heads", -1, what, &c->n_head));
  SWARM_RETURN_IF_ERROR(get_int(cfg, "num_key_value_heads", c->n_head, what, &c->n_head_kv));
  SWARM_RETURN_IF_ERROR(get_int(cfg, "intermediate_size", -1, what, &c->n_ff));
  SWARM_RETURN_IF_ERROR(get_int(cfg, "vocab_size", -1, what, &c->n_vocab));
  // transformers' defaults where a field may be left out.
  const int default_ctx = c->arch == "qwen2" ? 32768 : 2048;
  SWARM_RETURN_IF_ERROR(
      get_int(cfg, "max_position_embeddings", default_ctx, what, &c->n_ctx_train));
  SWARM_RETURN_IF_ERROR(get_float(cfg, "rms_norm_eps", 1e-6f, what, &c->rms_eps));
  SWARM_RETURN_IF_ERROR(get_bool(cfg, "tie_word_embeddings", false, what, &c->tied_embeddings));

  if (field(cfg, "head_dim") != nullptr) {
    SWARM_RETURN_IF_ERROR(get_int(cfg, "head_dim", -1, what, &c->head_dim));
  } else {
    if (c->n_embd % c->n_head != 0)
      return Status::InvalidArgument(what + ": hidden_size " + std::to_string(c->n_embd) +
                                     " is not a multiple of num_attention_heads " +
                                     std::to_string(c->n_head));
    c->head_dim = c->n_embd / c->n_head;
  }
  if (c->n_head % c->n_head_kv != 0)
    return Status::InvalidArgument(what + ": num_attention_heads " + std::to_string(c->n_head) +
                                   " is not a multiple of num_key_value_heads " +
                                   std::to_string(c->n_head_kv));
  if (c->head_dim % 2 != 0)
    return Status::InvalidArgument(what + ": head_dim " + std::to_string(c->head_dim) +
                                   " is odd; RoPE needs pairs");
  c->rope_dim = c->head_dim;
  c->rope_neox = true;  // HF weights are not permuted: rotate-half pairing (header comment)
  SWARM_RETURN_IF_ERROR(parse_rope(cfg, what, c));

  if (c->arch == "qwen2") {
    bool sliding = false;
    SWARM_RETURN_IF_ERROR(get_bool(cfg, "use_sliding_window", false, what, &sliding));
    if (sliding) return Status::Unsupported(what + ": use_sliding_window = true is not supported");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- tensor names

// Translates a HF tensor name to GGUF's; false for tensors with no counterpart.
// `*layer` is the block index, or -1 for tensors outside the blocks.
bool translate_name(const std::string& hf, std::string* gguf, int* layer) {
  *layer = -1;
  if (hf == "model.embed_tokens.weight") {
    *gguf = "token_embd.weight";
    return true;
  }
  if (hf == "model.norm.weight") {
    *gguf = "output_norm.weight";
    return true;
  }
  if (hf == "lm_head.weight") {
    *gguf = "output.weight";
    return true;
  }
  static const std::string kPrefix = "model.layers.";
  if (hf.compare(0, kPrefix.size(), kPrefix) != 0) return false;
  size_t i = kPrefix.size();
  int n = 0;
  const size_t digits_begin = i;
  while (i < hf.size() && hf[i] >= '0' && hf[i] <= '9' && i - digits_begin < 9)
    n = n * 10 + (hf[i++] - '0');
  if (i == digits_begin || i >= hf.size() || hf[i] != '.') return false;
  const std::string rest = hf.substr(i + 1);

  static const std::pair<const char*, const char*> kBlock[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.bias", "attn_output.bias"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      // llama's mlp_bias = true; kept so that the model can refuse what it
      // does not compute instead of silently ignoring it.
      {"mlp.gate_proj.bias", "ffn_gate.bias"},
      {"mlp.up_proj.bias", "ffn_up.bias"},
      {"mlp.down_proj.bias", "ffn_down.bias"},
  };
  for (const auto& [from, to] : kBlock) {
    if (rest == from) {
      *gguf = "blk." + std::to_string(n) + "." + to;
      *layer = n;
      return true;
    }
  }
  return false;
}

bool to_tensor_type(const std::string& dtype, TensorType* t) {
  if (dtype == "F32") {
    *t = TensorType::F32;
  } else if (dtype == "F16") {
    *t = TensorType::F16;
  } else if (dtype == "BF16") {
    *t = TensorType::BF16;
  } else {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- shards

// A shard's file name as the index gives it must name a file inside the folder.
bool is_plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

struct ShardPlan {
  std::vector<std::string> files;  // file names inside the folder
  // From the index: tensor name -> file name; empty for a single file.
  std::map<std::string, std::string> weight_map;
};

Result<ShardPlan> plan_shards(const fs::path& dir) {
  ShardPlan plan;
  std::error_code ec;
  if (fs::exists(dir / "model.safetensors", ec)) {
    plan.files.push_back("model.safetensors");
    return plan;
  }
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    const std::string what = index_path.string();
    Result<json> index = read_json_object(index_path);
    if (!index.ok()) return index.status();
    auto wm = index->find("weight_map");
    if (wm == index->end() || !wm->is_object())
      return Status::Corruption(what + ": missing or non-object 'weight_map'");
    std::set<std::string> names;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        return Status::Corruption(what + ": weight_map entry for '" + it.key() +
                                  "' is not a string");
      const std::string file = it.value().get<std::string>();
      if (!is_plain_file_name(file))
        return Status::Corruption(what + ": weight_map entry for '" + it.key() + "' names '" +
                                  file + "', not a file in the folder");
      plan.weight_map[it.key()] = file;
      names.insert(file);
    }
    if (names.empty()) return Status::Corruption(what + ": weight_map is empty");
    plan.files.assign(names.begin(), names.end());
    return plan;
  }
  // No standard name: any *.safetensors in the folder, in name order.
  std::set<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors" && it->is_regular_file(ec))
      names.insert(it->path().filename().string());
  }
  if (names.empty())
    return Status::NotFound(dir.string() +
                            ": no model.safetensors, model.safetensors.index.json or "
                            "*.safetensors file");
  plan.files.assign(names.begin(), names.end());
  return plan;
}

std::string folder_name(const fs::path& dir) {
  fs::path p = dir;
  if (!p.has_filename()) p = p.parent_path();  // "a/b/" -> "a/b"
  std::string name = p.filename().string();
  // The test-data layout (and many others) is <model>/hf: name it for <model>.
  if (name == "hf" && p.has_parent_path()) {
    const std::string parent = p.parent_path().filename().string();
    if (!parent.empty()) name = parent;
  }
  return name;
}

void add_tokenizer_metadata(const fs::path& dir, const json& cfg, ModelSource* src) {
  static const std::pair<const char*, const char*> kFiles[] = {
      {"tokenizer.json", "hf.tokenizer_json"},
      {"tokenizer.model", "hf.tokenizer_model"},
      {"tokenizer_config.json", "hf.tokenizer_config"},
      {"chat_template.jinja", "hf.chat_template"},
      {"generation_config.json", "hf.generation_config"},
  };
  std::error_code ec;
  for (const auto& [file, key] : kFiles) {
    const fs::path p = dir / file;
    if (fs::is_regular_file(p, ec)) src->metadata[key] = p.string();
  }
  for (const char* k : {"bos_token_id", "eos_token_id"}) {
    const json* v = field(cfg, k);
    if (v != nullptr && v->is_number_integer())
      src->metadata[std::string("tokenizer.ggml.") + k] = std::to_string(v->get<int64_t>());
  }
}

Result<ModelSource> load(const std::string& dir_str) {
  const fs::path dir(dir_str);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::NotFound(dir_str + ": not a folder");

  const fs::path config_path = dir / "config.json";
  const std::string config_what = config_path.string();
  Result<json> cfg = read_json_object(config_path);
  if (!cfg.ok()) return cfg.status();

  ModelSource src;
  src.path = dir_str;
  src.format = "hf";
  SWARM_RETURN_IF_ERROR(parse_config(*cfg, config_what, &src.config));
  src.config.name = folder_name(dir);
  src.metadata["general.name"] = src.config.name;
  src.metadata["general.architecture"] = src.config.arch;
  add_tokenizer_metadata(dir, *cfg, &src);

  Result<ShardPlan> plan = plan_shards(dir);
  if (!plan.ok()) return plan.status();

  std::map<std::string, std::string> seen;  // GGUF name -> file that holds it
  std::vector<std::string> skipped;
  for (size_t fi = 0; fi < plan->files.size(); ++fi) {
    const std::string& file_name = plan->files[fi];
    const std::string path = (dir / file_name).string();
    Result<SafetensorsHeader> header = read_safetensors_header(path);
    if (!header.ok()) return header.status();
    src.files.push_back(path);

    std::set<std::string> in_this_file;
    for (const SafetensorsTensor& st : header->tensors) {
      in_this_file.insert(st.name);
      if (!plan->weight_map.empty()) {
        auto wm = plan->weight_map.find(st.name);
        // The index decides which shard a tensor belongs to; copies elsewhere are ignored.
        if (wm != plan->weight_map.end() && wm->second != file_name) continue;
      }
      std::string name;
      int layer = -1;
      if (!translate_name(st.name, &name, &layer)) {
        skipped.push_back(st.name);
        continue;
      }
      const std::string where = path + ": tensor '" + st.name + "'";
      if (layer >= src.config.n_layer)
        return Status::Corruption(
            where + " is for layer " + std::to_string(layer) +
            " but config.json has num_hidden_layers = " + std::to_string(src.config.n_layer));
      TensorInfo t;
      t.name = name;
      if (!to_tensor_type(st.dtype, &t.type))
        return Status::Unsupported(where + " has dtype " + st.dtype +
                                   "; only F32, F16 and BF16 are supported");
      if (st.shape.empty() || st.shape.size() > 4)
        return Status::Corruption(where + " has " + std::to_string(st.shape.size()) +
                                  " dimensions; weights have 1 to 4");
      t.shape.assign(st.shape.rbegin(), st.shape.rend());
      t.file_index = static_cast<int>(fi);
      t.offset = header->data_start + st.begin;
      t.nbytes = st.end - st.begin;
      auto [prev, inserted] = seen.emplace(name, path);
      if (!inserted) return Status::Corruption(where + ": " + name + " is also in " + prev->second);
      src.tensors.push_back(std::move(t));
    }
    for (const auto& [tensor, file] : plan->weight_map) {
      if (file == file_name && in_this_file.count(tensor) == 0)
        return Status::Corruption(path + ": has no tensor '" + tensor +
                                  "', which model.safetensors.index.json places there");
    }
  }

  const TensorInfo* embd = src.find("token_embd.weight");
  if (embd == nullptr) return Status::Corruption(dir_str + ": no tensor model.embed_tokens.weight");
  if (embd->shape != std::vector<int64_t>{src.config.n_embd, src.config.n_vocab})
    return Status::Corruption(src.files[embd->file_index] +
                              ": tensor 'model.embed_tokens.weight' is not [vocab_size, "
                              "hidden_size] as config.json says");
  if (src.config.tied_embeddings) {
    std::erase_if(src.tensors, [](const TensorInfo& t) { return t.name == "output.weight"; });
  } else if (src.find("output.weight") == nullptr) {
    src.config.tied_embeddings = true;  // no lm_head: the head reuses the embeddings
  }

  if (!skipped.empty()) {
    std::string list;
    for (const std::string& s : skipped) list += (list.empty() ? "" : ",") + s;
    src.metadata["hf.skipped_tensors"] = list;
  }
  return src;
}

}  // namespace

Result<ModelSource> load_hf_folder(const std::string& dir) {
  // Exceptions (nlohmann type errors, std::filesystem, bad_alloc) stop here.
  try {
    return load(dir);
  } catch (const std::exception& e) {
    return Status::Corruption(dir + ": " + e.what());
  }
}

bool is_hf_folder(const std::string& path) {
  try {
    std::error_code ec;
    const fs::path dir(path);
    if (!fs::is_directory(dir, ec) || !fs::is_regular_file(dir / "config.json", ec)) return false;
    if (fs::is_regular_file(dir / "model.safetensors.index.json", ec)) return true;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".safetensors") return true;
    return false;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace swarm
