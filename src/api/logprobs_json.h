// Token log-probabilities in the answer shapes clients parse (doc/http-api.md,
// "Logprobs"):
//
// - chat: choices[].logprobs = {"content": [{token, logprob, bytes,
//   top_logprobs: [{token, logprob, bytes}]}], "refusal": null}; streamed, each
//   chunk's choice carries the entries of the tokens whose text it holds;
// - completions (legacy): choices[].logprobs = {tokens, token_logprobs,
//   top_logprobs: [{token: logprob}], text_offset}; with echo the prompt's
//   tokens come first, the first with null (nothing predicts it);
// - llama-server's POST /completion with n_probs: completion_probabilities =
//   [{id, token, bytes, logprob, top_logprobs: [{id, token, bytes, logprob}]}].
//
// A token's text is the bytes it stands for (Tokenizer::token_to_piece);
// `bytes` lists them, since a token may hold part of a UTF-8 character.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/logprobs.h"
#include "engine/tokenizer.h"

namespace swarm {

// One entry of chat's logprobs.content.
nlohmann::ordered_json chat_logprob(const Tokenizer& tok, const TokenLogprob& lp);
// Chat's choice.logprobs for `lps` (`refusal` only in a whole answer, as OpenAI's).
nlohmann::ordered_json chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps,
                                     bool with_refusal);

// llama-server's completion_probabilities for `lps`.
nlohmann::ordered_json native_probabilities(const Tokenizer& tok,
                                            const std::vector<TokenLogprob>& lps);

// Completions' logprobs object, built token by token; text_offset counts the
// bytes of the answer's text before each token (from 0 at the start of the
// echoed prompt, or of the completion without echo).
class CompletionLogprobs {
 public:
  explicit CompletionLogprobs(const Tokenizer& tok) : tok_(tok) {}
  // A token with nothing to score it (the prompt's first, with echo).
  void add_unscored(int32_t token);
  void add(const TokenLogprob& lp);
  // Moves the tokens gathered since the last take() into an object (text_offset
  // goes on counting across takes: a stream's chunks continue each other).
  nlohmann::ordered_json take();

 private:
  void push(int32_t token, nlohmann::ordered_json logprob, nlohmann::ordered_json top);

  const Tokenizer& tok_;
  int64_t offset_ = 0;
  nlohmann::ordered_json tokens_ = nlohmann::ordered_json::array(),
                         token_logprobs_ = nlohmann::ordered_json::array(),
                         top_ = nlohmann::ordered_json::array(),
                         offsets_ = nlohmann::ordered_json::array();
};

}  // namespace swarm
