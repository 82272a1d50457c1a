// SentencePiece-style BPE, as llama.cpp's llm_tokenizer_spm does it: start
// from single characters, repeatedly join the adjacent pair whose union is the
// highest-scoring vocabulary token (leftmost on ties), then spell characters
// the vocabulary lacks as <0xNN> byte tokens. A priority queue over a linked
// list of symbols keeps it O(n log n).
#include <queue>
#include <vector>

#include "engine/tokenizer.h"
#include "engine/unicode.h"

namespace swarm {

namespace {

struct Symbol {
  int prev, next;
  size_t begin, len;  // bytes of the escaped text
};

struct Bigram {
  int left, right;
  float score;
  size_t len;
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::encode_spm(std::string_view text, bool prefix_space,
                           std::vector<int32_t>* out) const {
  // Spaces become "▁"; the dummy prefix is one more.
  std::string s;
  s.reserve(text.size() + 8);
  if (prefix_space) s += "\xE2\x96\x81";
  for (char c : text) {
    if (c == ' ')
      s += "\xE2\x96\x81";
    else
      s.push_back(c);
  }
  if (s.empty()) return;

  std::vector<Symbol> sym;
  sym.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    // One symbol per character; an invalid byte is a symbol of its own (llama.cpp
    // would take a lead byte's whole length and could swallow the "▁" after it).
    const size_t n = std::max<size_t>(1, unicode::valid_char_len(std::string_view(s).substr(i)));
    const int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, idx + 1, i, n});
    i += n;
  }
  sym.back().next = -1;

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t len = sym[static_cast<size_t>(left)].len + sym[static_cast<size_t>(right)].len;
    auto it =
        mergeable_.find(std::string_view(s).substr(sym[static_cast<size_t>(left)].begin, len));
    if (it == mergeable_.end()) return;
    queue.push({left, right, scores_[static_cast<size_t>(it->second)], len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Symbol& l = sym[static_cast<size_t>(bg.left)];
    Symbol& r = sym[static_cast<size_t>(bg.right)];
    // Stale: one side was merged away or grew since this pair was queued.
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }

  // Every merged symbol is a token; a lone character may not be: spell its bytes.
  for (int i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
    const std::string_view piece = std::string_view(s).substr(sym[static_cast<size_t>(i)].begin,
                                                              sym[static_cast<size_t>(i)].len);
    auto it = mergeable_.find(piece);
    if (it != mergeable_.end())
      out->push_back(it->second);
    else
      push_bytes(piece, out);
  }
}

}  // namespace swarm
