// The gateway's reader of one skill provider's SSE stream (chat or text
// completions), event by event, deciding what the client gets:
//
// - events pass through, except the provider's `swarm_token_ids` (the
//   gateway keeps them to resume elsewhere: doc/http-api.md, "Resuming a
//   completion elsewhere"), which are removed;
// - the stream's id and created time stay those of the first provider, so a
//   stream resumed on another provider reads as one answer;
// - after a resume the new provider's opening role chunk is dropped (the
//   client already had one);
// - an error event, or an end without `data: [DONE]`, is held back: the
//   caller resumes elsewhere or forwards error_event();
// - a usage object gets the gateway's "swarm" fields (provider, price, cost).
//
// Pure: bytes in, bytes out.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace swarm {

// Adds the gateway's "swarm" object to an answer's usage: the provider that
// served it, its price per 1000 tokens, the cost of the usage's tokens at that
// price, and how many times the request moved to another provider.
void add_swarm_usage(nlohmann::ordered_json* usage, const std::string& provider,
                     double price_per_1k, int failovers);

class SkillStream {
 public:
  // Bytes of one incomplete event held at most; a provider that sends more
  // without an event boundary fails the stream.
  static constexpr size_t kMaxEventBytes = 1 << 20;

  explicit SkillStream(bool chat) : chat_(chat) {}

  // The next piece of the provider's body; returns what to send the client now.
  std::string feed(std::string_view piece);
  // The provider's stream ended (cleanly or not): anything left unsent.
  std::string finish();

  // Starts reading another provider's stream that continues this one: from
  // the tokens so far (`keep_tokens`), or afresh when none had text yet.
  void resume_on_next_provider(bool keep_tokens);
  // Who serves the stream now, for the usage object's "swarm" fields.
  void set_provider(std::string node_id, double price_per_1k, int failovers) {
    provider_ = std::move(node_id);
    price_per_1k_ = price_per_1k;
    failovers_ = failovers;
  }

  bool done() const { return done_; }      // `data: [DONE]` seen (and sent)
  bool failed() const { return failed_; }  // an error event, or garbage past the cap
  // The provider's error event ("data: {...}\n\n"), or one naming what went wrong.
  const std::string& error_event() const { return error_event_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  int64_t text_bytes() const { return text_bytes_; }          // completion text sent
  int64_t content_events() const { return content_events_; }  // events that carried text
  // Whether the provider's token ids cover every event that carried text, so
  // token_ids() and text_bytes() form a point to resume from.
  bool resumable() const { return ids_complete_ && !token_ids_.empty(); }
  // total_tokens of the last usage object seen (0: none).
  int64_t usage_tokens() const { return usage_tokens_; }

 private:
  std::string event(std::string_view text);  // one event, without its blank line

  const bool chat_;
  std::string pending_;
  std::string provider_;
  double price_per_1k_ = 0;
  int failovers_ = 0;
  std::string id_;          // the first provider's stream id ("" until seen)
  int64_t created_ = -1;
  bool drop_role_ = false;  // resumed: the next role-only chunk is not sent
  bool done_ = false, failed_ = false, ids_complete_ = true;
  std::string error_event_;
  std::vector<int32_t> token_ids_;
  int64_t text_bytes_ = 0, content_events_ = 0, usage_tokens_ = 0;
};

}  // namespace swarm
