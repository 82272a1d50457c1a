#include "pipeline/draft_trace.h"

namespace swarm {

Result<std::vector<int>> draft_trace(Drafter& drafter, const std::vector<int32_t>& text, int from,
                                     int max_drafts) {
  if (from < 0 || max_drafts < 1)
    return Status::InvalidArgument("draft_trace from " + std::to_string(from) + " with " +
                                   std::to_string(max_drafts) + " drafts");
  std::vector<int> trace;
  std::vector<int32_t> context(text.begin(), text.begin() + std::min<size_t>(from, text.size()));
  for (size_t at = context.size(); at < text.size(); context.push_back(text[at++])) {
    auto p = drafter.propose(context, max_drafts);
    if (!p.ok()) return p.status();
    if (p->tokens.empty()) {
      trace.push_back(-1);
      continue;
    }
    int right = 0;
    while (right < static_cast<int>(p->tokens.size()) && at + right < text.size() &&
           p->tokens[right] == text[at + right])
      ++right;
    trace.push_back(right);
  }
  return trace;
}

}  // namespace swarm
