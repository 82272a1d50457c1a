// Random-weight models with the exact tensor shapes and metadata of real ones,
// for benchmarks and the default demo. The weights are a pure function of
// (seed, tensor name, element index), so the same seed gives the same
// underlying weights whatever the type: a Q4_0 file can draft for a Q8_0 one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_source.h"
#include "engine/status.h"
#include "engine/thread_pool.h"

namespace swarm {

struct SynthShape {
  std::string name;        // "tinyllama-1.1b"
  ModelConfig config;      // arch, sizes, rope
  std::string tokenizer;   // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;         // gpt2 pre-tokenizer name ("llama-bpe", "qwen2")
  std::string chat_template;
};

// Every shape `swarm synth --shape` knows.
const std::vector<SynthShape>& synth_shapes();
const SynthShape* find_synth_shape(const std::string& name);

// Writes a GGUF of `shape` with matrices of `file_type` ("F32", "F16", "BF16",
// "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K") to `path`, following llama.cpp's
// mixes: norms stay F32; Q4_0 and K mixes give the output matrix Q6_K, and
// Q4_K_M/Q5_K_M give some attn_v/ffn_down layers Q6_K. A matrix whose rows do not
// fit the type's block falls back to Q8_0. With `progress`, a bar on stderr
// while the tensors are written, if it is a terminal.
Status synthesize_gguf(const SynthShape& shape, const std::string& file_type, uint64_t seed,
                       const std::string& path, ThreadPool& pool, bool progress = false);

}  // namespace swarm
