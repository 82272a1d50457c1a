#include "engine/grammar_matcher.h"

#include <algorithm>

namespace swarm {
namespace {

using Stack = GrammarState::Stack;
using Utf8 = GrammarState::Utf8;

bool end_of_sequence(const GrammarElement* e) {
  return e->op == GrammarOp::kEnd || e->op == GrammarOp::kAlt;
}

// Expands `stack` until its top is a character class (or it is empty), adding
// every stack that results to `out`. The grammar has no left recursion
// (parse_gbnf refuses it), so this ends.
void expand(const Grammar& g, Stack& stack, std::vector<Stack>& out) {
  if (stack.empty() || stack.back()->op != GrammarOp::kRuleRef) {
    out.push_back(stack);
    return;
  }
  const GrammarElement* ref = stack.back();
  const GrammarElement* after = ref + 1;
  const GrammarElement* alt = g.rules[ref->value].data();
  stack.pop_back();
  const size_t base = stack.size();
  if (!end_of_sequence(after)) stack.push_back(after);
  const size_t with_after = stack.size();
  while (true) {
    if (!end_of_sequence(alt)) stack.push_back(alt);
    expand(g, stack, out);
    stack.resize(with_after);
    while (!end_of_sequence(alt))
      alt = alt->op == GrammarOp::kRuleRef ? alt + 1 : grammar_after_char(alt);
    if (alt->op == GrammarOp::kEnd) break;
    ++alt;
  }
  stack.resize(base);
  stack.push_back(ref);
}

void dedup(std::vector<Stack>& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
}

// `to` <- the stacks of `from` whose top matches `cp`, advanced past it.
// False when none does (or they would be too many).
bool step(const Grammar& g, const std::vector<Stack>& from, uint32_t cp, std::vector<Stack>& to) {
  to.clear();
  Stack s;
  for (const Stack& st : from) {
    if (st.empty() || !grammar_char_matches(st.back(), cp)) continue;
    s.assign(st.begin(), st.end() - 1);
    const GrammarElement* after = grammar_after_char(st.back());
    if (!end_of_sequence(after)) s.push_back(after);
    expand(g, s, to);
    if (to.size() > kMaxGrammarStacks) return false;
  }
  if (to.empty()) return false;
  if (to.size() > 1) dedup(to);
  return true;
}

enum class ByteIs { kInvalid, kPartial, kComplete };

// Feeds byte `b` to the UTF-8 decoder `u`; a completed character goes to `cp`.
ByteIs decode(Utf8& u, unsigned char b, uint32_t* cp) {
  if (u.left > 0) {
    if ((b & 0xC0) != 0x80) return ByteIs::kInvalid;
    u.bits = (u.bits << 6) | (b & 0x3F);
    if (--u.left > 0) return ByteIs::kPartial;
    if (u.bits < u.min || u.bits > 0x10FFFF) return ByteIs::kInvalid;  // overlong or too large
    *cp = u.bits;
    return ByteIs::kComplete;
  }
  if (b < 0x80) {
    *cp = b;
    return ByteIs::kComplete;
  }
  if (b >= 0xC2 && b <= 0xDF)
    u = {b & 0x1Fu, 1, 0x80};
  else if ((b & 0xF0) == 0xE0)
    u = {b & 0x0Fu, 2, 0x800};
  else if (b >= 0xF0 && b <= 0xF4)
    u = {b & 0x07u, 3, 0x10000};
  else
    return ByteIs::kInvalid;  // a stray continuation byte, an overlong lead (C0, C1), not UTF-8
  return ByteIs::kPartial;
}

// The code points a half-read character can still become; false if none.
bool partial_range(const Utf8& u, uint32_t* lo, uint32_t* hi) {
  const int bits = 6 * u.left;
  *lo = std::max(u.bits << bits, u.min);
  *hi = std::min((u.bits << bits) | ((1u << bits) - 1), 0x10FFFFu);
  return *lo <= *hi;
}

bool partial_possible(const std::vector<Stack>& stacks, const Utf8& u) {
  uint32_t lo = 0, hi = 0;
  if (!partial_range(u, &lo, &hi)) return false;
  for (const Stack& st : stacks)
    if (!st.empty() && grammar_char_matches_range(st.back(), lo, hi)) return true;
  return false;
}

// Walks `bytes` from (`stacks`, `u`) without touching them; the stacks at the
// end land in `a` or `b` (scratch), and `*end` points at them.
bool walk(const Grammar& g, const std::vector<Stack>& stacks, Utf8& u, std::string_view bytes,
          std::vector<Stack>& a, std::vector<Stack>& b, const std::vector<Stack>** end) {
  const std::vector<Stack>* cur = &stacks;
  for (char c : bytes) {
    uint32_t cp = 0;
    switch (decode(u, static_cast<unsigned char>(c), &cp)) {
      case ByteIs::kInvalid:
        return false;
      case ByteIs::kPartial:
        if (!partial_possible(*cur, u)) return false;
        break;
      case ByteIs::kComplete: {
        std::vector<Stack>& to = cur == &a ? b : a;
        if (!step(g, *cur, cp, to)) return false;
        cur = &to;
        break;
      }
    }
  }
  *end = cur;
  return true;
}

void mark_allowed(const Grammar& g, const TokenTrie& trie, uint32_t node,
                  const std::vector<Stack>& stacks, const Utf8& u, std::vector<char>* allowed) {
  std::vector<Stack> next;
  for (const auto& [byte, child] : trie.nodes[node].children) {
    Utf8 v = u;
    uint32_t cp = 0;
    const std::vector<Stack>* at = &stacks;
    switch (decode(v, byte, &cp)) {
      case ByteIs::kInvalid:
        continue;
      case ByteIs::kPartial:
        if (!partial_possible(stacks, v)) continue;
        break;
      case ByteIs::kComplete:
        if (!step(g, stacks, cp, next)) continue;
        at = &next;
        break;
    }
    for (int32_t t : trie.nodes[child].tokens) (*allowed)[static_cast<size_t>(t)] = 1;
    if (!trie.nodes[child].children.empty()) mark_allowed(g, trie, child, *at, v, allowed);
  }
}

}  // namespace

GrammarState GrammarState::start(const Grammar& g) {
  GrammarState s;
  const GrammarElement* alt = g.rules[g.root].data();
  while (true) {
    Stack st;
    if (!end_of_sequence(alt)) st.push_back(alt);
    expand(g, st, s.stacks_);
    while (!end_of_sequence(alt))
      alt = alt->op == GrammarOp::kRuleRef ? alt + 1 : grammar_after_char(alt);
    if (alt->op == GrammarOp::kEnd) break;
    ++alt;
  }
  dedup(s.stacks_);
  return s;
}

bool GrammarState::advance(const Grammar& g, std::string_view bytes) {
  next_known_ = false;
  std::vector<Stack> a, b;
  const std::vector<Stack>* end = nullptr;
  if (!walk(g, stacks_, utf8_, bytes, a, b, &end)) return false;
  if (end != &stacks_) stacks_ = std::move(end == &a ? a : b);
  return true;
}

bool GrammarState::accepts(const Grammar& g, std::string_view bytes) const {
  if (bytes.empty()) return true;
  if (!next_bytes(g).test(static_cast<unsigned char>(bytes[0]))) return false;
  Utf8 u = utf8_;
  std::vector<Stack> a, b;
  const std::vector<Stack>* end = nullptr;
  return walk(g, stacks_, u, bytes, a, b, &end);
}

void GrammarState::allowed_tokens(const Grammar& g, const TokenTrie& trie,
                                  std::vector<char>* allowed) const {
  mark_allowed(g, trie, 0, stacks_, utf8_, allowed);
}

bool GrammarState::complete() const {
  if (utf8_.left > 0) return false;
  return std::any_of(stacks_.begin(), stacks_.end(), [](const Stack& s) { return s.empty(); });
}

bool GrammarState::can_continue() const {
  return std::any_of(stacks_.begin(), stacks_.end(), [](const Stack& s) { return !s.empty(); });
}

const std::bitset<256>& GrammarState::next_bytes(const Grammar& g) const {
  if (next_known_) return next_;
  next_.reset();
  for (int b = 0; b < 256; ++b) {
    // Whether some class on top matches a code point the byte can begin (or end).
    Utf8 u = utf8_;
    uint32_t cp = 0;
    bool ok = false;
    switch (decode(u, static_cast<unsigned char>(b), &cp)) {
      case ByteIs::kInvalid:
        break;
      case ByteIs::kPartial:
        ok = partial_possible(stacks_, u);
        break;
      case ByteIs::kComplete:
        for (const Stack& st : stacks_)
          if (!st.empty() && grammar_char_matches(st.back(), cp)) ok = true;
        break;
    }
    if (ok) next_.set(static_cast<size_t>(b));
  }
  next_known_ = true;
  return next_;
}

}  // namespace swarm
