// Converting a Hugging Face model folder (config.json + *.safetensors +
// tokenizer files) into a GGUF v3 file that llama.cpp and our engine load,
// holding what llama.cpp's convert_hf_to_gguf.py would write for it:
//  - metadata: general.*, the architecture's hyper-parameters and the
//    tokenizer (gguf_metadata.h, hf_vocab.h);
//  - tensors under GGUF names; llama's attn_q/attn_k rows permuted from HF's
//    rotate-half RoPE layout to GGUF llama's interleaved one (qwen2 is stored
//    as it is); llama3 RoPE scaling as a rope_freqs.weight tensor;
//  - types: vectors (norms, biases) stay F32; matrices become `type` (F32, F16,
//    BF16 or Q8_0, rounded as llama.cpp's converter rounds them); a Q8_0
//    matrix whose rows are not whole blocks falls back to F16, as llama.cpp's.
// The file is written to a temporary name beside `out_path` and renamed into
// place when complete, so a failed conversion leaves no file (and an existing
// `out_path` untouched). Errors name the file, the tensor and the problem.
#pragma once

#include <cstdint>
#include <string>

#include "engine/status.h"
#include "engine/thread_pool.h"

namespace swarm {

struct ConvertOptions {
  std::string type = "F16";  // F32, F16, BF16 or Q8_0
  std::string name;          // general.name; "" = the folder's name
  bool progress = false;     // a bar on stderr while tensors are written, if it is a terminal
};

struct ConvertSummary {
  int n_tensors = 0;
  uint64_t n_params = 0;
  uint64_t file_bytes = 0;
  std::string arch;
  std::string tokenizer;  // "gpt2 (qwen2)", "llama"
  // Folder tensors with no GGUF counterpart, left out (rotary_emb.inv_freq...),
  // comma-separated; "" if none.
  std::string skipped;
};

Result<ConvertSummary> convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path,
                                          const ConvertOptions& options, ThreadPool& pool);

}  // namespace swarm
