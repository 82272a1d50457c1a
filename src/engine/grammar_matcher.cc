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

bool GrammarState::partial_possible() const {
  // The code points the half-read character can still become.
  const int bits = 6 * partial_left_;
  const uint32_t lo = partial_ << bits;
  const uint32_t hi = lo | ((1u << bits) - 1);
  for (const Stack& st : stacks_)
    if (!st.empty() && grammar_char_matches_range(st.back(), lo, hi)) return true;
  return false;
}

bool GrammarState::advance_byte(const Grammar& g, unsigned char b) {
  if (partial_left_ > 0) {
    if ((b & 0xC0) != 0x80) return false;
    partial_ = (partial_ << 6) | (b & 0x3F);
    if (--partial_left_ > 0) return partial_possible();
    return advance_code_point(g, partial_);
  }
  if (b < 0x80) return advance_code_point(g, b);
  if ((b & 0xE0) == 0xC0) {
    partial_ = b & 0x1F;
    partial_left_ = 1;
  } else if ((b & 0xF0) == 0xE0) {
    partial_ = b & 0x0F;
    partial_left_ = 2;
  } else if ((b & 0xF8) == 0xF0) {
    partial_ = b & 0x07;
    partial_left_ = 3;
  } else {
    return false;  // a stray continuation byte, or not UTF-8 at all
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
    if (partial_left_ > 0) {
      if ((byte & 0xC0) == 0x80) {
        const int left = partial_left_ - 1;
        const uint32_t v = (partial_ << 6) | (byte & 0x3F);
        const uint32_t lo = v << (6 * left), hi = lo | ((1u << (6 * left)) - 1);
        for (const Stack& st : stacks_)
          if (!st.empty() && grammar_char_matches_range(st.back(), lo, hi)) ok = true;
      }
    } else {
      uint32_t lo = 0, hi = 0;
      if (byte < 0x80) {
        lo = hi = byte;
      } else if ((byte & 0xE0) == 0xC0) {
        lo = (byte & 0x1Fu) << 6;
        hi = lo | 0x3F;
      } else if ((byte & 0xF0) == 0xE0) {
        lo = (byte & 0x0Fu) << 12;
        hi = lo | 0xFFF;
      } else if ((byte & 0xF8) == 0xF0) {
        lo = (byte & 0x07u) << 18;
        hi = lo | 0x3FFFF;
      } else {
        continue;
      }
      for (const Stack& st : stacks_) {
        if (st.empty()) continue;
        if (lo == hi ? grammar_char_matches(st.back(), lo)
                     : grammar_char_matches_range(st.back(), lo, hi)) {
          ok = true;
          break;
        }
      }
    }
    if (ok) next_.set(byte);
  }
  next_known_ = true;
  return next_;
}

}  // namespace swarm
