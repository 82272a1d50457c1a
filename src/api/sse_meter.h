// What a skill provider measures of an SSE stream it forwards
// (api/skill_proxy.h), as the stream passes.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "api/skill_load_stats.h"

namespace swarm {

// An SSE stream seen as it passes: complete events are forwarded, an
// unfinished one is held back (so that a stream cut off part way ends with a
// whole error event, not half an event), and the events with content are
// counted as tokens (one per chunk, as llama-server and ours send them).
class SseMeter {
 public:
  using Clock = std::chrono::steady_clock;

  // Adds `piece`; returns the events it completed, to forward.
  std::string take(const std::string& piece, Clock::time_point now);
  // What is held back, at a clean end of the stream.
  std::string rest() { return std::exchange(pending_, std::string()); }
  bool saw_error() const { return saw_error_; }

  // The generation of a stream forwarded at `started` that ended at `ended`.
  // Decode time runs to the end of the stream, not to the last content piece:
  // a fast upstream's tokens can arrive in one piece, which would leave no time.
  std::optional<SkillLoadStats::Generation> generation(Clock::time_point started,
                                                       Clock::time_point ended) const {
    if (!first_token_) return std::nullopt;
    SkillLoadStats::Generation g;
    g.ttft = *first_token_ - started;
    g.tokens = usage_tokens_ >= 0 ? usage_tokens_ : chunks_with_content_;
    g.decode = ended - *first_token_;
    return g;
  }

 private:
  void data_line(std::string_view data, Clock::time_point now);

  std::string pending_;  // bytes after the last complete event
  size_t scanned_ = 0;   // of pending_: lines before this were looked at
  int64_t chunks_with_content_ = 0, usage_tokens_ = -1;
  std::optional<Clock::time_point> first_token_;
  bool saw_error_ = false;
};

}  // namespace swarm
