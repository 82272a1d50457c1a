// Where a text stands in a grammar (grammar.h), advanced byte by byte.
//
// The state is the set of pushdown stacks llama.cpp's matcher keeps: each
// stack lists what must still be matched, innermost last, and its top is
// always a character class (a stack that is empty means the text so far is a
// complete match). Bytes are decoded as UTF-8 on the way; a character split
// across tokens waits in the state until its last byte comes, and a prefix of
// one is accepted only if some class could match a character it begins.
//
// A GrammarState is a value: copying it forks it (the sampler's snapshots and
// speculative judgements rely on that). It points into its Grammar, which must
// outlive it.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/grammar.h"
#include "engine/token_trie.h"

namespace swarm {

// Ambiguous grammars can multiply stacks; a state with more than this many is
// treated as a dead end (the text is refused) rather than growing without bound.
inline constexpr size_t kMaxGrammarStacks = 4096;

class GrammarState {
 public:
  GrammarState() = default;
  // The state before any text: at the start of the grammar's root rule.
  static GrammarState start(const Grammar& g);

  // Advances by `bytes`; false (and the state is then undefined: advance a
  // copy to test) when the grammar cannot match text that begins this way.
  bool advance(const Grammar& g, std::string_view bytes);
  // Whether `bytes` could come next, without changing this state.
  bool accepts(const Grammar& g, std::string_view bytes) const;

  // The text so far is a whole match of the grammar (no character half done).
  bool complete() const;
  // Some continuation is possible (it is not a finished match with nothing more allowed).
  bool can_continue() const;
  // Which bytes could come next (a quick filter before accepts()).
  const std::bitset<256>& next_bytes(const Grammar& g) const;
  // Sets allowed[t] = 1 for every token t of `trie` whose bytes could come
  // next (leaves the others alone): one walk over the trie, each shared
  // prefix checked once, each subtree dropped at its first impossible byte.
  void allowed_tokens(const Grammar& g, const TokenTrie& trie, std::vector<char>* allowed) const;

  // A half-read UTF-8 character.
  struct Utf8 {
    uint32_t bits = 0;  // its bits so far
    int left = 0;       // continuation bytes still to come
    uint32_t min = 0;   // the least code point its length may encode (no overlong forms)
  };
  using Stack = std::vector<const GrammarElement*>;

 private:
  std::vector<Stack> stacks_;
  Utf8 utf8_;
  mutable bool next_known_ = false;
  mutable std::bitset<256> next_;
};

}  // namespace swarm
