// The seam between the HTTP API and whatever produces tokens: one model in this
// process (LocalBackend), or a chain of nodes across the network (the pipeline).
// The API speaks text and OpenAI's JSON; a backend speaks token ids.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "engine/status.h"
#include "routing/chain.h"  // ChainStage
#include "trust/node_work.h"  // NodeWork

namespace swarm {

struct GenerationRequest {
  std::vector<int32_t> prompt;   // token ids, BOS included where the model wants it
  SamplingParams sampling;       // seed, temperature ...; stop_tokens = the model's end-of-generation ids;
                                 // max_tokens = tokens to generate at most (stop strings are the API's job)
  // Called with the chain of nodes the request runs through once it is
  // routed, and with each new chain after a failover (what the swarm page
  // shows). A backend without a chain never calls it. May be empty.
  std::function<void(const std::vector<ChainStage>&)> on_chain = nullptr;
  // Log-probabilities (engine/logprobs.h): -1 none; 0 to kMaxTopLogprobs: each
  // generated token's logprob and that many of the most likely alternatives,
  // passed to on_logprob just before the token goes to the TokenCallback (none
  // for an end-of-generation token, which the callback never sees either).
  int logprobs = -1;
  std::function<void(const TokenLogprob&)> on_logprob = nullptr;
  // Also the prompt's tokens' (with `logprobs` alternatives, at least 0): one
  // per prompt token after the first (the first has nothing before it to be
  // predicted from), passed to on_prompt_logprobs once, before the first
  // token (or at the end when there is none).
  bool prompt_logprobs = false;
  std::function<void(const std::vector<TokenLogprob>&)> on_prompt_logprobs = nullptr;
};

// What speculative decoding did for one request (doc/speculation.md).
struct SpeculationReport {
  std::string drafter;      // "ngram" or "draft"; "off": a chain decoding plainly; "": no chain
  int drafted = 0;          // drafts sent to the chain
  // Steps whose results made the output (the prompt's included): plain ones
  // carried no draft, speculative ones at least one. Runs the chain answered
  // are counted; cancelled ones are not.
  int plain_steps = 0, speculative_steps = 0;
  int accepted = 0;         // drafts the last stage accepted
  int runs = 0;             // runs sent while decoding (anchor and speculative)
  int cancelled_runs = 0;   // runs cancelled because they built on a rejected draft
  int chains = 0;           // verified chains (each ends in a token the last stage sampled)
  // Of the chains that carried drafts: all of them, those whose first draft
  // held, and those whose every draft held (how drafts hold in runs: after
  // a held draft the next holds with (accepted - first_held) / (accepted -
  // all_held); a chain's first with first_held / draft_chains).
  int draft_chains = 0, chains_first_held = 0, chains_all_held = 0;
  int shadow_chains = 0;    // `auto`: chains of drafts judged while decoding plainly, not sent
  // Times the drafter was asked for tokens, and of those, times it had no
  // guess (the n-gram drafter finds no match at most positions). Of the
  // questions at a later position than the one before, those after one it
  // had a guess for, and of these, those it had a guess for too: how its
  // guesses come in runs (where the text repeats) rather than scattered.
  int proposals = 0, empty_proposals = 0, proposals_after_guess = 0, guesses_after_guess = 0;
  // The controller's view at the end: width k, runs in flight W, drafts per
  // round trip D, pooled per-token acceptance a, the plain round trip, the
  // bottleneck stage's time for k tokens, and the first-order goodput bound
  // min((1 - a^(D+1)) / ((1 - a) round_trip), k / bottleneck) in tokens/s.
  int width = 0, in_flight = 0, drafts_per_round_trip = 0;
  double acceptance = 0, round_trip_s = 0, bottleneck_s = 0, goodput_bound = 0;
};

struct GenerationResult {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // "stop": an end-of-generation token (not passed to the callback) or the
  // callback asked to stop; "length": max_tokens or the context ran out.
  std::string finish_reason;
  std::string route;             // what served it, for logs and the demo ("local", "a:1 -> b:2")
  double prompt_seconds = 0;     // time to the first generated token
  double generation_seconds = 0; // from the first token to the last
  SpeculationReport speculation;
  std::vector<NodeWork> work;    // one per node that served it (a chain); empty when local
};

// Called with each generated token as soon as it exists. Returning false stops
// the generation (a stop string matched, or the client went away).
using TokenCallback = std::function<bool(int32_t token)>;

class GenerationBackend {
 public:
  virtual ~GenerationBackend() = default;
  // Blocks until the generation ends. Called from many threads at once; a backend
  // runs concurrent requests together (batched), not one after another.
  virtual Result<GenerationResult> generate(const GenerationRequest& request, const TokenCallback& on_token) = 0;
  // The context length requests must fit in (prompt + max_tokens).
  virtual int context_length() const = 0;
  // The server in front is stopping: the requests waiting for capacity now
  // (admission) end with Unavailable instead of waiting out their queue
  // deadline. Requests already running, and later ones, are not affected.
  virtual void release_waiting() {}
  // Credits per 1,000 tokens on the route a request would take now: the sum of
  // its stages' announced prices, what the gateway holds from a requester's
  // balance for prompt + max_tokens before it generates. May wait for a route
  // as generate() does. 0 where nothing is charged (one model in this process).
  virtual Result<double> price_per_1k_tokens() { return 0.0; }
  // The same without waiting: Unavailable when no route exists now (for
  // listings such as /v1/models, which must answer at once).
  virtual Result<double> price_per_1k_tokens_now() { return price_per_1k_tokens(); }
  // Whether generate() honours GenerationRequest::logprobs and prompt_logprobs;
  // the API refuses requests for them (400) where it does not.
  virtual bool supports_logprobs() const { return false; }
  // Sentence embeddings (engine/pooling.h): for each input (token ids, within
  // the context), the mean of the final hidden states after the final norm,
  // L2-normalised. Unsupported where the backend holds no weights.
  virtual bool supports_embeddings() const { return false; }
  virtual Result<std::vector<std::vector<float>>> embed(const std::vector<std::vector<int32_t>>& inputs) {
    return Status::Unsupported("this backend computes no embeddings");
  }
};

}  // namespace swarm
