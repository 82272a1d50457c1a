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

 private:
  using Stack = std::vector<const GrammarElement*>;
  bool advance_byte(const Grammar& g, unsigned char b);
  bool advance_code_point(const Grammar& g, uint32_t cp);
  bool partial_possible() const;
  // The code points a half-read character (bits `v`, `left` bytes to come,
  // at least `min`) can still become; false if none.
  static bool partial_range(uint32_t v, int left, uint32_t min, uint32_t* lo, uint32_t* hi);

  std::vector<Stack> stacks_;
  uint32_t partial_ = 0;   // the bits of a half-read UTF-8 character
  int partial_left_ = 0;   // its continuation bytes still to come
  uint32_t partial_min_ = 0;  // the least code point its length may encode (no overlong forms)
  mutable bool next_known_ = false;
  mutable std::bitset<256> next_;
};

}  // namespace swarm
