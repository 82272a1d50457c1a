// Byte-level BPE, as GPT-2 and the Hugging Face tokenizers do it: the
// pre-tokenizer splits text into words; each byte of a word starts as its
// GPT-2 alphabet token; the adjacent pair with the lowest merge rank (leftmost
// on ties) is joined until no ranked pair is left. A priority queue over a
// linked list of symbols keeps each word O(n log n).
#include <queue>
#include <vector>

#include "engine/pretokenizer.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"

namespace swarm {

namespace {

struct Symbol {
  int prev, next;
  int32_t id;  // -1: dead (merged into its left neighbour), or a byte without a token
  bool alive;
};

struct Merge {
  int32_t rank;
  int left, right;
  int32_t left_id, right_id, merged;
};

struct MergeOrder {
  bool operator()(const Merge& a, const Merge& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>* out) const {
  std::string prefixed;
  if (bpe_add_prefix_space_ && !text.empty() && text[0] != ' ') {
    prefixed = " ";
    prefixed += text;
    text = prefixed;
  }
  for (std::string_view word : pre_->split(text)) bpe_word(word, out);
}

void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    std::string mapped;
    for (char c : word) mapped += unicode::byte_to_unicode(static_cast<uint8_t>(c));
    auto it = mergeable_.find(mapped);
    if (it != mergeable_.end()) {
      out->push_back(it->second);
      return;
    }
  }

  std::vector<Symbol> sym(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    const int idx = static_cast<int>(i);
    sym[i] = {idx - 1, idx + 1, byte_tokens_[static_cast<uint8_t>(word[i])], true};
  }
  sym.back().next = -1;

  std::priority_queue<Merge, std::vector<Merge>, MergeOrder> queue;
  const auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int32_t a = sym[static_cast<size_t>(left)].id, b = sym[static_cast<size_t>(right)].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
                           static_cast<uint32_t>(b));
    if (it == merges_.end()) return;
    queue.push({it->second.first, left, right, a, b, it->second.second});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Merge m = queue.top();
    queue.pop();
    Symbol& l = sym[static_cast<size_t>(m.left)];
    Symbol& r = sym[static_cast<size_t>(m.right)];
    // Stale: the pair is no longer adjacent or either side has changed.
    if (!l.alive || !r.alive || l.next != m.right || l.id != m.left_id || r.id != m.right_id)
      continue;
    l.id = m.merged;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = m.left;
    try_add(l.prev, m.left);
    try_add(m.left, l.next);
  }

  for (int i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
    const int32_t id = sym[static_cast<size_t>(i)].id;
    if (id >= 0)
      out->push_back(id);
    else if (unk_ >= 0)
      out->push_back(unk_);
  }
}

}  // namespace swarm
