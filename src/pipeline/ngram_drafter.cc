#include "pipeline/ngram_drafter.h"

#include <algorithm>

namespace swarm {

NgramDrafter::NgramDrafter(int max_ngram, int min_ngram)
    : max_ngram_(std::max(1, max_ngram)), min_ngram_(std::clamp(min_ngram, 1, max_ngram_)) {}

int32_t ngram_lookup(const std::vector<int32_t>& seq, int max_ngram, int min_ngram) {
  const int len = static_cast<int>(seq.size());
  for (int g = std::min(max_ngram, len - 1); g >= min_ngram; --g) {
    const int suffix = len - g;
    // Latest start first: recent text predicts the next tokens best.
    for (int start = suffix - 1; start >= 0; --start) {
      if (std::equal(seq.begin() + start, seq.begin() + start + g, seq.begin() + suffix))
        return seq[start + g];
    }
  }
  return -1;
}

Result<DraftProposal> NgramDrafter::propose(const std::vector<int32_t>& context, int n) {
  DraftProposal out;
  std::vector<int32_t> seq = context;
  for (int i = 0; i < n; ++i) {
    const int32_t next = ngram_lookup(seq, max_ngram_, min_ngram_);
    if (next < 0) break;
    out.tokens.push_back(next);
    seq.push_back(next);
  }
  return out;
}

}  // namespace swarm
