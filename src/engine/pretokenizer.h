// Splits text into words before byte-level BPE merges, with the regexes of a
// model family (GPT-2, Llama 3, Qwen2, ...). Matching is PCRE2's with UTF and
// Unicode properties, so \p{L}, \p{N} and \s mean what the Hugging Face
// tokenizers mean by them.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace swarm {

class PreTokenizer {
 public:
  // Each regex splits every piece the previous one produced; matches and the
  // text between matches both become pieces ("Isolated" in tokenizers' terms).
  // No regexes: the whole text is one piece.
  static Result<std::unique_ptr<PreTokenizer>> Create(const std::vector<std::string>& regexes);

  // The regexes llama.cpp uses for a `tokenizer.ggml.pre` name: "default",
  // "gpt2", "llama-bpe"/"llama3", "qwen2", "tekken", "smollm", "starcoder",
  // "refact", "gpt-4o"... Unsupported for other names.
  static Result<std::vector<std::string>> RegexesFor(const std::string& pre);

  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // The pieces of `text`, in order, covering it exactly (views into `text`).
  // Invalid UTF-8 never matches a regex, so it lands in between-match pieces.
  // Safe to call from several threads at once.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Regex;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace swarm
