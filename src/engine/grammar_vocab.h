// The bytes each token of a vocabulary stands for, as a grammar constraint
// (Sampler with SamplingParams::grammar) reads them. Built once per model and
// shared by every constrained sampler of it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/token_trie.h"

namespace swarm {

class Tokenizer;

struct GrammarVocab {
  // pieces[id]: the bytes token `id` adds to the output text.
  std::vector<std::string> pieces;
  // False for tokens that are not text (control, unknown, unused): a grammar
  // never lets them be chosen, though stop tokens end a complete match.
  std::vector<bool> is_text;
  TokenTrie trie;  // the text tokens by their bytes

  static std::shared_ptr<const GrammarVocab> from_tokenizer(const Tokenizer& tok);
  // From the pieces and text flags (a test's made-up vocabulary).
  static std::shared_ptr<const GrammarVocab> from_pieces(std::vector<std::string> pieces,
                                                         std::vector<bool> is_text);
};

}  // namespace swarm
