// Loading a Hugging Face model folder (config.json + *.safetensors + tokenizer
// files) into a ModelSource, the same structure a GGUF file loads into.
//
// Supported: LlamaForCausalLM (also MistralForCausalLM, a llama by another name)
// and Qwen2ForCausalLM, with F32/F16/BF16 weights in one model.safetensors or
// sharded through model.safetensors.index.json.
//
// What the result promises:
//  - tensor names are GGUF's ("blk.3.attn_q.weight"); tensors with no GGUF
//    counterpart (rotary_emb.inv_freq, ...) are left out and listed in
//    metadata["hf.skipped_tensors"];
//  - shapes are in GGUF order (safetensors [out, in] becomes {in, out});
//  - offsets are absolute in files[file_index], and every tensor's bytes lie
//    inside its file; only headers are read, the caller maps the data;
//  - config.rope_neox is true: HF checkpoints are not permuted the way
//    llama.cpp's converter permutes attn_q/attn_k, so they pair dimensions
//    (i, i + d/2) for llama as for qwen2;
//  - tied_embeddings is true exactly when there is no output.weight (a stored
//    lm_head is dropped when config.json says the embeddings are tied);
//  - metadata holds "general.name", "general.architecture", and the paths of
//    the tokenizer files present: "hf.tokenizer_json", "hf.tokenizer_model",
//    "hf.tokenizer_config", "hf.chat_template" (chat_template.jinja),
//    "hf.generation_config"; "tokenizer.ggml.bos_token_id"/"eos_token_id" when
//    config.json gives them as single integers.
#pragma once

#include <string>

#include "engine/model_source.h"
#include "engine/status.h"

namespace swarm {

// Loads the folder at `dir`. Errors name the file (and the tensor or field).
Result<ModelSource> load_hf_folder(const std::string& dir);

// True if `path` is a folder holding config.json and at least one .safetensors
// file or model.safetensors.index.json. Never throws.
bool is_hf_folder(const std::string& path);

}  // namespace swarm
