// The body of POST /v1/chat/completions and POST /v1/completions, read and
// checked the way OpenAI's API checks it: a wrong type, a missing field or an
// out-of-range value is a 400 that names the parameter. Parameters OpenAI has
// and we do not support in a way that would change the answer (best_of,
// suffix, mirostat) are refused, not ignored; unknown fields are ignored, as
// vLLM and llama.cpp's server do. Tools: api/tool_calls.h; structured output:
// api/structured_output.h.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "api/api_error.h"
#include "api/tool_calls.h"
#include "engine/chat_template.h"
#include "engine/sampler.h"

namespace swarm {

// The most choices (`n`) one request may ask for.
inline constexpr int kMaxChoices = 8;
// The most completion tokens one `swarm_resume` may carry: far past any
// context, and it bounds what the request's parsing holds.
inline constexpr size_t kMaxResumeTokens = size_t{1} << 20;

// `swarm_resume` (doc/http-api.md, "Resuming a completion elsewhere"): a
// completion another server of the same model began for this request, to be
// continued here as if it had never stopped.
struct SwarmResume {
  std::vector<int32_t> tokens;  // the completion tokens it generated
  int64_t text_bytes = 0;       // bytes of their text the client already has
};

struct CompletionRequest {
  bool chat = false;
  std::string model;                  // "" when the request names none
  std::vector<ChatMessage> messages;  // chat
  ToolRequest tools;                  // chat: tools, tool_choice, parallel_tool_calls
  std::string prompt_text;            // completions, unless prompt_ids
  std::vector<int32_t> prompt_ids;    // completions given token ids
  bool prompt_is_ids = false;
  bool echo = false;  // completions: the prompt's text comes first
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  bool ignore_eos = false;            // llama.cpp's extension: generate max_tokens whatever comes
  std::optional<int64_t> max_tokens;  // max_completion_tokens, else max_tokens
  std::optional<uint64_t> seed;
  int n = 1;  // choices, 1 to kMaxChoices, each sampled with its own seed
  // Log-probabilities (doc/http-api.md, "Logprobs"): -1 none, else how many
  // alternatives per token: chat `logprobs: true` + `top_logprobs` (0-20),
  // completions `logprobs` (0-5), llama-server's `n_probs` (1-20).
  int logprobs = -1;
  // Every sampling field the request gave; the rest keep llama.cpp's defaults
  // (SamplingParams). stop_tokens and max_tokens are left for the server.
  SamplingParams sampling;
  // Our extensions for a gateway that continues a completion on another
  // server: each chunk's completion token ids, and a completion to resume.
  bool swarm_token_ids = false;
  std::optional<SwarmResume> resume;
};

// Reads `body` (a parsed JSON value of any kind). `n_vocab` bounds token ids in
// a prompt and logit_bias.
std::variant<CompletionRequest, ApiError> parse_completion_request(const nlohmann::json& body,
                                                                   bool chat, int n_vocab);

}  // namespace swarm
