#include "engine/grammar.h"

#include <functional>
#include <map>

namespace swarm {
namespace {

using Elements = std::vector<GrammarElement>;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

bool is_end_of_sequence(const GrammarElement* e) {
  return e->op == GrammarOp::kEnd || e->op == GrammarOp::kAlt;
}

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view src) : src_(src) {}

  Result<Grammar> parse() {
    if (src_.size() > kMaxGrammarBytes)
      return Status::InvalidArgument("grammar is " + std::to_string(src_.size()) +
                                     " bytes; the limit is " + std::to_string(kMaxGrammarBytes));
    skip_space(true);
    while (ok() && pos_ < src_.size()) {
      parse_rule();
      skip_space(true);
    }
    if (!ok()) return status_;
    for (size_t i = 0; i < g_.rules.size(); ++i)
      if (!defined_[i]) return Status::InvalidArgument("grammar: undefined rule '" + g_.names[i] + "'");
    auto root = ids_.find("root");
    if (root == ids_.end()) return Status::InvalidArgument("grammar: no 'root' rule");
    g_.root = root->second;
    SWARM_RETURN_IF_ERROR(check_left_recursion());
    return std::move(g_);
  }

 private:
  bool ok() const { return status_.ok(); }

  void fail(const std::string& what) {
    if (!ok()) return;
    int line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    status_ = Status::InvalidArgument("grammar at " + std::to_string(line) + ":" +
                                      std::to_string(col) + ": " + what);
    pos_ = src_.size();
  }

  char peek(size_t ahead = 0) const {
    return pos_ + ahead < src_.size() ? src_[pos_ + ahead] : '\0';
  }
  bool at_end() const { return pos_ >= src_.size(); }

  // Spaces, tabs and comments; newlines too where a rule may continue.
  void skip_space(bool newlines) {
    while (!at_end()) {
      const char c = peek();
      if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || ((c == '\r' || c == '\n') && newlines)) {
        ++pos_;
      } else {
        return;
      }
    }
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (!at_end() && is_name_char(peek())) ++pos_;
    if (pos_ == start) fail("expected a rule name");
    return std::string(src_.substr(start, pos_ - start));
  }

  uint32_t rule_id(const std::string& name) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    return add_rule(name);
  }

  uint32_t add_rule(const std::string& name) {
    if (g_.rules.size() >= kMaxGrammarRules) {
      fail("more than " + std::to_string(kMaxGrammarRules) + " rules (the limit, counting the "
           "rules repetitions expand to)");
      return 0;
    }
    const auto id = static_cast<uint32_t>(g_.rules.size());
    ids_.emplace(name, id);
    g_.rules.emplace_back();
    g_.names.push_back(name);
    defined_.push_back(false);
    return id;
  }

  uint32_t helper_rule(const std::string& base) {
    std::string name;
    do {
      name = base + "-" + std::to_string(++helpers_);
    } while (ids_.count(name));
    return add_rule(name);
  }

  void define(uint32_t id, Elements body) {
    if (!ok()) return;
    elements_ += body.size();
    if (elements_ > kMaxGrammarElements) {
      fail("more than " + std::to_string(kMaxGrammarElements) +
           " elements once repetitions are expanded (the limit)");
      return;
    }
    g_.rules[id] = std::move(body);
    defined_[id] = true;
  }

  void parse_rule() {
    const std::string name = parse_name();
    if (!ok()) return;
    skip_space(false);
    if (src_.substr(pos_, 3) != "::=") return fail("expected '::=' after rule name '" + name + "'");
    pos_ += 3;
    skip_space(true);
    const uint32_t id = rule_id(name);
    if (defined_[id]) return fail("rule '" + name + "' is defined twice");
    Elements body = parse_alternatives(name, false);
    if (!ok()) return;
    define(id, std::move(body));
    if (!at_end() && peek() != '\n' && peek() != '\r') fail("expected the end of the rule");
  }

  Elements parse_alternatives(const std::string& rule, bool nested) {
    Elements out;
    parse_sequence(rule, nested, out);
    while (ok() && peek() == '|') {
      ++pos_;
      skip_space(true);
      out.push_back({GrammarOp::kAlt, 0});
      parse_sequence(rule, nested, out);
    }
    out.push_back({GrammarOp::kEnd, 0});
    return out;
  }

  // One code point of a literal or class, escapes decoded.
  uint32_t parse_char() {
    if (peek() == '\\') {
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'x': return parse_hex(2);
        case 'u': return parse_hex(4);
        case 'U': return parse_hex(8);
        case 't': return '\t';
        case 'r': return '\r';
        case 'n': return '\n';
        case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'':
          return static_cast<unsigned char>(e);
        default:
          --pos_;
          fail(std::string("unknown escape '\\") + e + "'");
          return 0;
      }
    }
    return parse_utf8();
  }

  uint32_t parse_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) {
        fail("expected " + std::to_string(digits) + " hex digits");
        return 0;
      }
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > 0x10FFFF) fail("code point beyond U+10FFFF");
    return v;
  }

  uint32_t parse_utf8() {
    const auto c = static_cast<unsigned char>(peek());
    int len = 1;
    uint32_t v = c;
    if (c >= 0xF0) { len = 4; v = c & 0x07; }
    else if (c >= 0xE0) { len = 3; v = c & 0x0F; }
    else if (c >= 0xC0) { len = 2; v = c & 0x1F; }
    else if (c >= 0x80) { fail("invalid UTF-8"); return 0; }
    ++pos_;
    for (int i = 1; i < len; ++i) {
      const auto b = static_cast<unsigned char>(peek());
      if ((b & 0xC0) != 0x80) { fail("invalid UTF-8"); return 0; }
      v = (v << 6) | (b & 0x3F);
      ++pos_;
    }
    return v;
  }

  void parse_sequence(const std::string& rule, bool nested, Elements& out) {
    size_t last_start = out.size();  // where the last symbol's elements begin
    bool have_last = false;
    while (ok() && !at_end()) {
      const char c = peek();
      if (c == '"') {
        ++pos_;
        last_start = out.size();
        have_last = true;
        while (ok() && peek() != '"') {
          if (at_end()) return fail("unterminated string literal");
          out.push_back({GrammarOp::kChar, parse_char()});
        }
        ++pos_;
      } else if (c == '[') {
        ++pos_;
        last_start = out.size();
        have_last = true;
        GrammarOp first = GrammarOp::kChar;
        if (peek() == '^') {
          ++pos_;
          first = GrammarOp::kCharNot;
        }
        bool empty = true;
        while (ok() && peek() != ']') {
          if (at_end()) return fail("unterminated character class");
          const uint32_t lo = parse_char();
          out.push_back({empty ? first : GrammarOp::kCharAlt, lo});
          empty = false;
          if (peek() == '-' && peek(1) != ']') {
            ++pos_;
            if (at_end()) return fail("unterminated character class");
            const uint32_t hi = parse_char();
            if (hi < lo) return fail("character range with its end before its start");
            out.push_back({GrammarOp::kCharRangeUpper, hi});
          }
        }
        if (!ok()) return;
        if (empty) return fail("empty character class");
        ++pos_;
      } else if (is_name_char(c)) {
        last_start = out.size();
        have_last = true;
        const std::string name = parse_name();
        out.push_back({GrammarOp::kRuleRef, rule_id(name)});
      } else if (c == '(') {
        ++pos_;
        skip_space(true);
        last_start = out.size();
        have_last = true;
        const uint32_t sub = helper_rule(rule);
        Elements body = parse_alternatives(rule, true);
        if (!ok()) return;
        if (peek() != ')') return fail("expected ')'");
        ++pos_;
        define(sub, std::move(body));
        out.push_back({GrammarOp::kRuleRef, sub});
      } else if (c == '.') {
        ++pos_;
        last_start = out.size();
        have_last = true;
        out.push_back({GrammarOp::kCharAny, 0});
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (!have_last) return fail(std::string("'") + c + "' with nothing before it to repeat");
        ++pos_;
        int min = 0, max = -1;
        if (c == '+') min = 1;
        if (c == '?') max = 1;
        if (c == '{') {
          skip_space(false);
          min = parse_count();
          skip_space(false);
          max = min;
          if (peek() == ',') {
            ++pos_;
            skip_space(false);
            max = peek() == '}' ? -1 : parse_count();
            skip_space(false);
          }
          if (!ok()) return;
          if (peek() != '}') return fail("expected '}'");
          ++pos_;
          if (max >= 0 && max < min) return fail("repetition {m,n} with n < m");
        }
        repeat(rule, out, last_start, min, max);
        have_last = false;  // "a**" repeats nothing new
      } else {
        break;
      }
      skip_space(nested);
    }
  }

  int parse_count() {
    const size_t start = pos_;
    long v = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      ++pos_;
      if (v > kMaxRepetition)
        return fail("repetition count above " + std::to_string(kMaxRepetition) + " (the limit)"), 0;
    }
    if (pos_ == start) fail("expected a number");
    return static_cast<int>(v);
  }

  // Replaces the symbol at out[start..] by `min` copies of it and a helper rule
  // for the optional rest, right-recursive (llama.cpp does the same).
  void repeat(const std::string& rule, Elements& out, size_t start, int min, int max) {
    const Elements sym(out.begin() + static_cast<ptrdiff_t>(start), out.end());
    out.resize(start);
    for (int i = 0; i < min; ++i) {
      out.insert(out.end(), sym.begin(), sym.end());
      if (out.size() > kMaxGrammarElements)
        return fail("more than " + std::to_string(kMaxGrammarElements) +
                    " elements once repetitions are expanded (the limit)");
    }
    if (max == min) return;
    if (max < 0) {
      // star ::= sym star |
      const uint32_t star = helper_rule(rule);
      Elements body = sym;
      body.push_back({GrammarOp::kRuleRef, star});
      body.push_back({GrammarOp::kAlt, 0});
      body.push_back({GrammarOp::kEnd, 0});
      define(star, std::move(body));
      out.push_back({GrammarOp::kRuleRef, star});
      return;
    }
    // opt_k ::= sym opt_{k-1} | , for up to max - min more copies.
    uint32_t inner = 0;
    bool have_inner = false;
    for (int k = 0; k < max - min && ok(); ++k) {
      const uint32_t opt = helper_rule(rule);
      Elements body = sym;
      if (have_inner) body.push_back({GrammarOp::kRuleRef, inner});
      body.push_back({GrammarOp::kAlt, 0});
      body.push_back({GrammarOp::kEnd, 0});
      define(opt, std::move(body));
      inner = opt;
      have_inner = true;
    }
    if (have_inner) out.push_back({GrammarOp::kRuleRef, inner});
  }

  // A rule that reaches itself before any character would send the matcher
  // around in a circle, so such grammars are refused.
  Status check_left_recursion() const {
    const size_t n = g_.rules.size();
    // Which rules can match the empty string (a fixed point).
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for_each_alternative(g_.rules[r], [&](const GrammarElement* e) {
          for (; !is_end_of_sequence(e); ++e)
            if (e->op != GrammarOp::kRuleRef || !nullable[e->value]) return;
          if (!nullable[r]) nullable[r] = changed = true;
        });
      }
    }
    // Edges r -> s when s can come first in r.
    std::vector<std::vector<uint32_t>> first(n);
    for (size_t r = 0; r < n; ++r)
      for_each_alternative(g_.rules[r], [&](const GrammarElement* e) {
        for (; !is_end_of_sequence(e); ++e) {
          if (e->op != GrammarOp::kRuleRef) return;
          first[r].push_back(e->value);
          if (!nullable[e->value]) return;
        }
      });
    std::vector<int> mark(n, 0);  // 0 unseen, 1 on the path, 2 done
    std::string cycle;
    std::function<bool(uint32_t)> visit = [&](uint32_t r) {
      mark[r] = 1;
      for (uint32_t s : first[r]) {
        if (mark[s] == 1) {
          cycle = g_.names[s];
          return true;
        }
        if (mark[s] == 0 && visit(s)) return true;
      }
      mark[r] = 2;
      return false;
    };
    for (uint32_t r = 0; r < n; ++r)
      if (mark[r] == 0 && visit(r))
        return Status::InvalidArgument(
            "grammar: rule '" + cycle +
            "' is left-recursive (it can reach itself before matching a character; a repetition "
            "of something that can be empty does this too)");
    return Status::Ok();
  }

  template <typename F>
  static void for_each_alternative(const Elements& rule, F f) {
    const GrammarElement* e = rule.data();
    while (true) {
      f(e);
      while (!is_end_of_sequence(e)) ++e;
      if (e->op == GrammarOp::kEnd) return;
      ++e;
    }
  }

  std::string_view src_;
  size_t pos_ = 0;
  Status status_;
  Grammar g_;
  std::map<std::string, uint32_t> ids_;
  std::vector<bool> defined_;
  size_t elements_ = 0;
  int helpers_ = 0;
};

}  // namespace

Result<Grammar> parse_gbnf(std::string_view text) { return GbnfParser(text).parse(); }

bool grammar_char_matches(const GrammarElement* pos, uint32_t cp) {
  if (pos->op == GrammarOp::kCharAny) return true;
  const bool positive = pos->op == GrammarOp::kChar;
  do {
    if (pos[1].op == GrammarOp::kCharRangeUpper) {
      if (pos->value <= cp && cp <= pos[1].value) return positive;
      pos += 2;
    } else {
      if (pos->value == cp) return positive;
      pos += 1;
    }
  } while (pos->op == GrammarOp::kCharAlt);
  return !positive;
}

bool grammar_char_matches_range(const GrammarElement* pos, uint32_t lo, uint32_t hi) {
  if (pos->op == GrammarOp::kCharAny) return true;
  const bool positive = pos->op == GrammarOp::kChar;
  // Negated classes: some code point of [lo, hi] is outside every listed range
  // unless the listed ranges cover all of it; with a partial character spanning
  // 64 or more code points that is the common case, so say yes (the check on
  // the completed character is exact).
  if (!positive) return true;
  do {
    uint32_t a = pos->value, b = pos->value;
    if (pos[1].op == GrammarOp::kCharRangeUpper) {
      b = pos[1].value;
      pos += 2;
    } else {
      pos += 1;
    }
    if (a <= hi && lo <= b) return true;
  } while (pos->op == GrammarOp::kCharAlt);
  return false;
}

const GrammarElement* grammar_after_char(const GrammarElement* pos) {
  if (pos->op == GrammarOp::kCharAny) return pos + 1;
  do {
    pos += pos[1].op == GrammarOp::kCharRangeUpper ? 2 : 1;
  } while (pos->op == GrammarOp::kCharAlt);
  return pos;
}

std::string gbnf_literal(std::string_view text) {
  std::string out = "\"";
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace swarm
