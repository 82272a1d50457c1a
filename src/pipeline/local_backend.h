// A GenerationBackend over one whole Model in this process: what `swarm serve`
// runs, like llama-server, and the reference a swarm's output is compared with.
//
// Concurrent generate() calls are batched (continuous batching): one scheduler
// thread runs, per iteration, a single run_layers call over every active request
// (new requests' prompt chunks and running requests' last tokens), then the head
// for the rows that need logits, and each request's own Sampler. Because the
// kernels are batch-invariant, a request's tokens do not depend on what else
// shares its batches. Tokens reach each caller on its own thread through a
// per-request queue, so a slow consumer never holds up the scheduler.
//
// Admission (AdmissionQueue): a request joins the batch when a sequence slot
// is free and its KV cache (prompt + max_tokens, at most the context) fits the
// KV budget; until then it waits in a bounded FIFO queue with a deadline, and
// only a full queue or a passed deadline refuses it (ResourceExhausted: 503).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/grammar_vocab.h"
#include "engine/model.h"
#include "engine/thread_pool.h"
#include "pipeline/admission.h"
#include "pipeline/generation.h"

namespace swarm {

struct LocalBackendOptions {
  int threads = 0;             // kernel threads; <= 0: one per hardware thread
  int context_length = 0;      // per request (prompt + generated); <= 0: the model's, at most 8192
  int max_sequences = 64;      // requests in the batch at once; more wait their turn
  int max_batch_tokens = 512;  // prompt tokens per iteration (long prompts are fed in chunks)
  uint64_t kv_memory_bytes = 0;  // KV caches of the requests in the batch, in all; 0: no limit
  int max_queue = 256;           // requests waiting for room at once; more are refused
  std::chrono::milliseconds queue_timeout{60000};  // longest wait for room before a refusal
  // The model's token bytes, for requests with a grammar (structured output);
  // null: such requests are refused.
  std::shared_ptr<const GrammarVocab> grammar_vocab = nullptr;
  // >= 1: every iteration takes this many times its compute time (emulates a
  // slower machine; `swarm serve --slowdown`, `swarm node --skill --slowdown`).
  double slowdown = 1;
};

class LocalBackend : public GenerationBackend {
 public:
  // `model` must hold every layer, the embedding and the head.
  LocalBackend(std::unique_ptr<Model> model, int threads, int context_length);
  LocalBackend(std::unique_ptr<Model> model, const LocalBackendOptions& options);
  // Requests still running end with Unavailable.
  ~LocalBackend() override;
  LocalBackend(const LocalBackend&) = delete;
  LocalBackend& operator=(const LocalBackend&) = delete;

  // Validates the request (a non-empty prompt of ids within the vocabulary that
  // leaves room in the context, valid sampling parameters, a KV cache within
  // the whole budget): InvalidArgument otherwise. ResourceExhausted when the
  // admission queue is full or the request waited past its deadline. completion_tokens counts the tokens passed to `on_token` plus the
  // end-of-generation token when one ended it. When `on_token` returns false
  // the request is cancelled and its cache freed before generate() returns.
  Result<GenerationResult> generate(const GenerationRequest& request,
                                    const TokenCallback& on_token) override;
  int context_length() const override { return context_length_; }
  void release_waiting() override;
  bool supports_logprobs() const override { return true; }
  // Runs beside the batch on a pool of its own (one embedding request at a
  // time), so it never waits for generation slots; InvalidArgument for an
  // empty input, an id outside the vocabulary or one longer than the context.
  bool supports_embeddings() const override { return true; }
  Result<std::vector<std::vector<float>>> embed(const std::vector<std::vector<int32_t>>& inputs) override;

  const Model& model() const { return *model_; }

  // While paused the scheduler runs no iterations; requests queue up (and
  // still time out). Tests use it to make requests share batches for certain.
  void set_paused(bool paused);
  struct Stats {
    int waiting = 0;              // submitted, not yet in the batch
    int queued = 0;               // of those, waiting for room (not yet admitted)
    int active = 0;               // in the batch, holding a KV cache
    uint64_t kv_bytes_reserved = 0;  // by the requests admitted (prompt + max_tokens each)
    int64_t iterations = 0;       // run_layers calls so far
    int max_batch_sequences = 0;  // the most sequences one iteration has run
  };
  Stats stats() const;

 private:
  struct Request;
  void scheduler_loop();
  // One iteration: admit waiting requests, drop cancelled ones, run one batch.
  void step();
  // Frees the request's cache and hands `result` to its caller.
  void finish(Request& r, Result<GenerationResult> result);
  // Refuses waiting requests whose deadline passed and drops cancelled ones;
  // with mu_ held, returning them with their result for finish() outside it.
  std::vector<std::pair<std::shared_ptr<Request>, Result<GenerationResult>>> expire_locked();

  std::unique_ptr<Model> model_;
  const int context_length_;
  const LocalBackendOptions options_;
  ThreadPool pool_;

  mutable std::mutex mu_;  // guards waiting_, admission_, paused_, stop_, release_waiting_, stats_
  std::condition_variable cv_;
  AdmissionQueue admission_;
  std::deque<std::shared_ptr<Request>> waiting_;
  bool paused_ = false;
  bool stop_ = false;
  bool release_waiting_ = false;  // release_waiting() was called; the scheduler acts on it
  Stats stats_;
  std::atomic<int> live_caches_{0};

  std::vector<std::shared_ptr<Request>> active_;  // the scheduler thread's own
  std::thread scheduler_;
  std::mutex embed_mu_;                      // one embedding request at a time
  std::unique_ptr<ThreadPool> embed_pool_;   // made at the first, guarded by embed_mu_
};

}  // namespace swarm
