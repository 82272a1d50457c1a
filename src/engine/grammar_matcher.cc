#include "engine/grammar_matcher.h"

#include <algorithm>

namespace swarm {
namespace {

using Stack = std::vector<const GrammarElement*>;

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

bool GrammarState::advance_code_point(const Grammar& g, uint32_t cp) {
  std::vector<Stack> next;
  for (Stack& st : stacks_) {
    if (st.empty()) continue;
    const GrammarElement* top = st.back();
    if (!grammar_char_matches(top, cp)) continue;
    const GrammarElement* after = grammar_after_char(top);
    st.pop_back();
    if (!end_of_sequence(after)) st.push_back(after);
    expand(g, st, next);
    if (next.size() > kMaxGrammarStacks) return false;
  }
  if (next.empty()) return false;
  dedup(next);
  stacks_ = std::move(next);
  return true;
}

bool GrammarState::partial_range(uint32_t v, int left, uint32_t min, uint32_t* lo, uint32_t* hi) {
  const int bits = 6 * left;
  *lo = std::max(v << bits, min);
  *hi = std::min((v << bits) | ((1u << bits) - 1), 0x10FFFFu);
  return *lo <= *hi;
}

bool GrammarState::partial_possible() const {
  uint32_t lo = 0, hi = 0;
  if (!partial_range(partial_, partial_left_, partial_min_, &lo, &hi)) return false;
  for (const Stack& st : stacks_)
    if (!st.empty() && grammar_char_matches_range(st.back(), lo, hi)) return true;
  return false;
}

bool GrammarState::advance_byte(const Grammar& g, unsigned char b) {
  if (partial_left_ > 0) {
    if ((b & 0xC0) != 0x80) return false;
    partial_ = (partial_ << 6) | (b & 0x3F);
    if (--partial_left_ > 0) return partial_possible();
    if (partial_ < partial_min_ || partial_ > 0x10FFFF) return false;  // overlong or too large
    return advance_code_point(g, partial_);
  }
  if (b < 0x80) return advance_code_point(g, b);
  if (b >= 0xC2 && b <= 0xDF) {
    partial_ = b & 0x1F;
    partial_left_ = 1;
    partial_min_ = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    partial_ = b & 0x0F;
    partial_left_ = 2;
    partial_min_ = 0x800;
  } else if (b >= 0xF0 && b <= 0xF4) {
    partial_ = b & 0x07;
    partial_left_ = 3;
    partial_min_ = 0x10000;
  } else {
    return false;  // a stray continuation byte, an overlong lead (C0, C1), or not UTF-8 at all
  }
  return partial_possible();
}

bool GrammarState::advance(const Grammar& g, std::string_view bytes) {
  next_known_ = false;
  for (char c : bytes)
    if (!advance_byte(g, static_cast<unsigned char>(c))) return false;
  return true;
}

bool GrammarState::accepts(const Grammar& g, std::string_view bytes) const {
  if (bytes.empty()) return true;
  if (!next_bytes(g).test(static_cast<unsigned char>(bytes[0]))) return false;
  GrammarState copy = *this;
  return copy.advance(g, bytes);
}

bool GrammarState::complete() const {
  if (partial_left_ > 0) return false;
  return std::any_of(stacks_.begin(), stacks_.end(), [](const Stack& s) { return s.empty(); });
}

bool GrammarState::can_continue() const {
  return std::any_of(stacks_.begin(), stacks_.end(), [](const Stack& s) { return !s.empty(); });
}

const std::bitset<256>& GrammarState::next_bytes(const Grammar& g) const {
  if (next_known_) return next_;
  next_.reset();
  for (int b = 0; b < 256; ++b) {
    // Test the class tops directly against the code points the byte can begin.
    const auto byte = static_cast<unsigned char>(b);
    bool ok = false;
    uint32_t lo = 0, hi = 0;
    bool possible = false;
    if (partial_left_ > 0) {
      possible = (byte & 0xC0) == 0x80 &&
                 partial_range((partial_ << 6) | (byte & 0x3F), partial_left_ - 1, partial_min_, &lo, &hi);
    } else if (byte < 0x80) {
      lo = hi = byte;
      possible = true;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
      possible = partial_range(byte & 0x1Fu, 1, 0x80, &lo, &hi);
    } else if ((byte & 0xF0) == 0xE0) {
      possible = partial_range(byte & 0x0Fu, 2, 0x800, &lo, &hi);
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      possible = partial_range(byte & 0x07u, 3, 0x10000, &lo, &hi);
    }
    for (const Stack& st : stacks_) {
      if (!possible || ok) break;
      if (st.empty()) continue;
      ok = lo == hi ? grammar_char_matches(st.back(), lo) : grammar_char_matches_range(st.back(), lo, hi);
    }
    if (ok) next_.set(byte);
  }
  next_known_ = true;
  return next_;
}

}  // namespace swarm
