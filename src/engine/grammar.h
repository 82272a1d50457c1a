// A context-free grammar in llama.cpp's GBNF syntax (its grammars/README.md),
// compiled to the flat form the matcher (grammar_matcher.h) walks.
//
//   root   ::= object                 # the start rule is `root`
//   object ::= "{" ws ( pair ( "," ws pair )* )? "}"
//   pair   ::= [a-z]+ ":" ws value?   # char classes, ranges, [^...] negation
//   digits ::= [0-9]{1,3}             # {m}, {m,}, {m,n}; also *, + and ?
//   any    ::= .                      # any one character
//
// Characters are Unicode code points (the text is UTF-8); string literals and
// classes take \n \r \t \\ \" \] \[ \- \xHH \uHHHH \UHHHHHHHH escapes.
// Repetition is compiled into right-recursive helper rules. Left recursion
// (a rule that can reach itself before consuming a character) is refused: the
// matcher could not advance it.
//
// A grammar may come from a remote party (an API request, a session's
// sampling config), so its size is capped: kMaxGrammarBytes of text,
// kMaxGrammarRules rules and kMaxGrammarElements elements after repetitions
// are expanded (a repetition bound is at most kMaxRepetition). The error names
// the limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace swarm {

inline constexpr size_t kMaxGrammarBytes = 64 * 1024;
inline constexpr size_t kMaxGrammarRules = 4096;
inline constexpr size_t kMaxGrammarElements = 128 * 1024;
inline constexpr int kMaxRepetition = 1000;

enum class GrammarOp : uint8_t {
  kEnd,       // ends a rule's last alternative
  kAlt,       // ends an alternative; another follows
  kRuleRef,   // value: the rule's index
  kChar,      // value: a code point; kCharAlt / kCharRangeUpper may follow
  kCharNot,   // like kChar, but matches what the class does not
  kCharRangeUpper,  // value: the inclusive upper end of the range the previous char starts
  kCharAlt,   // value: another code point of the same class
  kCharAny,   // `.`: any code point
};

struct GrammarElement {
  GrammarOp op;
  uint32_t value;
};

// Each rule is its alternatives, one after another, each ended by kAlt except
// the last, which kEnd ends. An empty alternative is allowed.
struct Grammar {
  std::vector<std::vector<GrammarElement>> rules;
  std::vector<std::string> names;  // names[i]: rule i's name ("root", "object", ...)
  uint32_t root = 0;
};

// Parses and checks GBNF text: every referenced rule defined, a `root` rule,
// no left recursion, within the caps. The error says where (line:column) and what.
Result<Grammar> parse_gbnf(std::string_view text);

// A GBNF string literal matching exactly `text` (quotes and backslashes
// escaped, control bytes as \xHH), for grammars written by code.
std::string gbnf_literal(std::string_view text);

// Whether the char-class element at `pos` (kChar, kCharNot or kCharAny, with
// the kCharAlt / kCharRangeUpper elements after it) matches `cp`.
bool grammar_char_matches(const GrammarElement* pos, uint32_t cp);
// Whether it matches some code point in [lo, hi] (a partial UTF-8 character).
bool grammar_char_matches_range(const GrammarElement* pos, uint32_t lo, uint32_t hi);
// The element after a char class starting at `pos`.
const GrammarElement* grammar_after_char(const GrammarElement* pos);

}  // namespace swarm
