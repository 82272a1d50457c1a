// The metadata a GGUF model file carries besides its tensors, written with the
// keys, types and values llama.cpp's converter (convert_hf_to_gguf.py) writes,
// so that files from `swarm synth` and `swarm convert` load in llama.cpp and
// other GGUF readers as theirs do. doc/gguf.md lists what is written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/gguf_writer.h"
#include "engine/model_source.h"

namespace swarm {

// general.architecture, general.type, general.name and general.size_label.
// `n_params` is the number of weights of every tensor in the file.
void write_general_metadata(GgufWriter& w, const std::string& arch, const std::string& name,
                            uint64_t n_params);

// general.file_type and general.quantization_version, for the file's main
// matrix type (llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, ...).
void write_file_type(GgufWriter& w, uint32_t llama_ftype);

// "2.9M", "1.1B": a parameter count rounded the way llama.cpp labels models.
std::string size_label(uint64_t n_params);

// The architecture's hyper-parameters ({arch}.block_count, ...). As llama.cpp
// does, llama files also get key/value_length, vocab_size and
// rope.dimension_count, qwen2 files only what differs from the defaults.
// Linear RoPE scaling becomes rope.scaling.type/factor; llama3 scaling is not
// metadata but the rope_freqs.weight tensor (see rope_freq_factors).
void write_hparams(GgufWriter& w, const ModelConfig& c);

// rope_freqs.weight for llama3 RoPE scaling: per rotated pair, the divisor of
// the unscaled frequency (rope_dim / 2 floats).
std::vector<float> rope_freq_factors(const ModelConfig& c);

// A vocabulary as GGUF stores it (tokenizer.ggml.*).
struct GgufVocab {
  std::string model;  // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // the pre-tokenizer's name; "" not written
  std::vector<std::string> tokens;
  std::vector<float> scores;        // empty: not written (gpt2)
  std::vector<int32_t> token_type;  // TokenType numbering
  std::vector<std::string> merges;  // "a b", highest priority first; empty: not written
  // Special token ids; -1: not written.
  int32_t bos = -1, eos = -1, unk = -1, sep = -1, pad = -1;
  std::optional<bool> add_bos, add_eos;
  std::optional<bool> add_space_prefix;  // SentencePiece's dummy prefix
  std::string chat_template;             // "" not written
  // More templates by name (tokenizer.chat_template.NAME), as HF lists them.
  std::vector<std::pair<std::string, std::string>> named_chat_templates;
};

void write_vocab(GgufWriter& w, const GgufVocab& v);

}  // namespace swarm
