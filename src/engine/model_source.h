// What a model file says, independent of its format: the architecture's
// hyper-parameters and a table of tensors (name, type, shape, where the bytes
// are). GGUF files and Hugging Face folders both load into this; the model code
// only ever sees a ModelSource, so it knows nothing of formats.
//
// Tensor names follow GGUF's convention ("token_embd.weight",
// "blk.3.attn_q.weight", "output_norm.weight", ...); loaders of other formats
// translate their names into it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor_types.h"

namespace swarm {

enum class RopeScaling { kNone, kLinear, kLlama3 };

struct ModelConfig {
  std::string arch;          // "llama" or "qwen2"
  std::string name;          // general.name, or the folder name
  int n_layer = 0;
  int n_embd = 0;            // d_model
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;          // n_embd / n_head unless the file says otherwise
  int n_ff = 0;
  int n_vocab = 0;
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int rope_dim = 0;          // rotated dimensions per head (usually head_dim)
  // true: rotate-half pairing (i, i + d/2) as HF and qwen2 use; false: adjacent
  // pairs (2i, 2i + 1) as GGUF llama files use after the converter's permutation.
  bool rope_neox = false;
  RopeScaling rope_scaling = RopeScaling::kNone;
  float rope_scale_factor = 1.0f;       // linear: positions divided by this
  // llama3 scaling parameters (when a file gives them instead of rope_freqs).
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int rope_original_ctx = 8192;
  bool tied_embeddings = false;         // no output.weight: the head reuses token_embd
};

struct TensorInfo {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the innermost (contiguous) dimension
  int file_index = 0;          // into ModelSource::files
  uint64_t offset = 0;         // absolute byte offset in that file
  uint64_t nbytes = 0;

  int64_t n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct ModelSource {
  std::string path;                 // what the user named: a .gguf file or a folder
  std::string format;               // "gguf" or "hf"
  std::vector<std::string> files;   // files that hold tensor bytes
  ModelConfig config;
  std::vector<TensorInfo> tensors;
  // Format-specific metadata kept for later users (tokenizer, chat template):
  // GGUF key -> value rendered as text; arrays are kept out of here.
  std::map<std::string, std::string> metadata;

  const TensorInfo* find(const std::string& name) const {
    for (const TensorInfo& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
};

}  // namespace swarm
