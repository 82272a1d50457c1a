#include "pipeline/local_backend.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "engine/pooling.h"

namespace swarm {

using Clock = std::chrono::steady_clock;

// One generation. The caller fills the request fields and then only touches the
// queue (under `mu`) and `cancelled`; everything else is the scheduler's.
struct LocalBackend::Request {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int logprobs = -1;             // GenerationRequest::logprobs
  bool prompt_logprobs = false;  // GenerationRequest::prompt_logprobs
  Clock::time_point submitted;
  AdmissionQueue::Ticket ticket = 0;  // the backend's, under its mu_
  bool admitted = false;               // holds a batch slot and its KV budget

  // Scheduler's.
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<KvCache> cache;
  size_t fed = 0;     // prompt tokens already in the cache
  int generated = 0;  // tokens sampled
  int32_t last = -1;  // the sampled token to feed next
  bool eog = false;   // ended by an end-of-generation token
  Clock::time_point first_token, last_token;

  // Shared with the caller.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<int32_t> tokens;
  std::deque<TokenLogprob> logprobs_of_tokens;  // with logprobs >= 0: one per entry of `tokens`
  std::vector<TokenLogprob> prompt_lps;         // scheduler's until done is posted
  std::optional<Result<GenerationResult>> done;
  std::atomic<bool> cancelled{false};
};

namespace {

int default_context(const Model& model, int requested) {
  if (requested > 0) return requested;
  return std::max(1, std::min(model.config().n_ctx_train, 8192));
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return b > a ? std::chrono::duration<double>(b - a).count() : 0.0;
}

}  // namespace

LocalBackend::LocalBackend(std::unique_ptr<Model> model, int threads, int context_length)
    : LocalBackend(std::move(model),
                   LocalBackendOptions{.threads = threads, .context_length = context_length}) {}

LocalBackend::LocalBackend(std::unique_ptr<Model> model, const LocalBackendOptions& options)
    : model_(std::move(model)),
      context_length_(default_context(*model_, options.context_length)),
      options_(options),
      pool_(options.threads),
      admission_(AdmissionLimits{.max_active = std::max(1, options.max_sequences),
                                 .capacity = options.kv_memory_bytes,
                                 .max_queue = options.max_queue,
                                 .queue_timeout = options.queue_timeout}) {
  scheduler_ = std::thread([this] { scheduler_loop(); });
}

LocalBackend::~LocalBackend() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  scheduler_.join();
}

void LocalBackend::set_paused(bool paused) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = paused;
  }
  cv_.notify_all();
}

void LocalBackend::release_waiting() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    release_waiting_ = true;
  }
  cv_.notify_all();
}

LocalBackend::Stats LocalBackend::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  Stats s = stats_;
  s.waiting = static_cast<int>(waiting_.size());
  s.queued = admission_.waiting();
  s.active = live_caches_.load();
  s.kv_bytes_reserved = admission_.cost_in_service();
  return s;
}

Result<GenerationResult> LocalBackend::generate(const GenerationRequest& request,
                                                const TokenCallback& on_token) {
  const ModelConfig& cfg = model_->config();
  if (!model_->has_embed() || !model_->has_head() || model_->first_layer() != 0 ||
      model_->last_layer() != cfg.n_layer)
    return Status::Internal("a local backend needs the whole model (embedding, every layer, head)");
  if (request.prompt.empty()) return Status::InvalidArgument("the prompt is empty");
  for (size_t i = 0; i < request.prompt.size(); ++i)
    if (request.prompt[i] < 0 || request.prompt[i] >= cfg.n_vocab)
      return Status::InvalidArgument(
          "prompt token " + std::to_string(request.prompt[i]) + " at position " +
          std::to_string(i) + " is outside the vocabulary of " + std::to_string(cfg.n_vocab));
  if (static_cast<int64_t>(request.prompt.size()) >= context_length_)
    return Status::InvalidArgument("the prompt is " + std::to_string(request.prompt.size()) +
                                   " tokens but the context holds " +
                                   std::to_string(context_length_) +
                                   " (prompt and at least one generated token)");
  SWARM_RETURN_IF_ERROR(request.sampling.validate(cfg.n_vocab));
  if (!request.sampling.grammar.empty() &&
      (!options_.grammar_vocab || options_.grammar_vocab->pieces.size() < static_cast<size_t>(cfg.n_vocab)))
    return Status::Unsupported("this backend was given no vocabulary to check a grammar against");
  // The KV memory it may fill: the prompt and max_tokens, at most the context.
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  const int kv_len = static_cast<int>(std::min<int64_t>(
      context_length_,
      request.sampling.max_tokens >= 0 ? prompt_len + request.sampling.max_tokens : context_length_));
  const uint64_t kv_bytes = KvCache::bytes_for(cfg.n_layer, model_->kv_dim(), kv_len);
  if (options_.kv_memory_bytes > 0 && kv_bytes > options_.kv_memory_bytes)
    return Status::InvalidArgument(
        "the request needs a KV cache of " + std::to_string(kv_len) + " tokens (" +
        std::to_string(prompt_len) + " in the prompt and up to " +
        std::to_string(kv_len - prompt_len) + " generated), " + std::to_string(kv_bytes) +
        " bytes, more than the server's whole KV budget of " +
        std::to_string(options_.kv_memory_bytes) + " bytes (--kv-memory): lower max_tokens");

  auto r = std::make_shared<Request>();
  r->prompt = request.prompt;
  r->sampling = request.sampling;
  r->logprobs = std::clamp(request.logprobs, -1, kMaxTopLogprobs);
  r->prompt_logprobs = request.prompt_logprobs;
  r->submitted = Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return Status::Unavailable("the local backend is shutting down");
    auto arrival = admission_.arrive(kv_bytes, r->submitted);
    if (!arrival.ok()) return arrival.status();
    r->ticket = arrival->ticket;
    r->admitted = arrival->admitted;
    waiting_.push_back(r);
  }
  cv_.notify_all();

  // If on_token throws, the request must still end: the scheduler drops it.
  struct CancelOnExit {
    Request* r;
    ~CancelOnExit() { r->cancelled = true; }
  } cancel_on_exit{r.get()};

  int delivered = 0;
  bool cancelled = false;
  std::vector<int32_t> batch;
  std::vector<TokenLogprob> batch_lps;
  // The prompt's logprobs are complete before its first token is queued (and
  // before done is posted), both under r->mu.
  bool prompt_scored = !request.prompt_logprobs;
  auto score_prompt = [&] {
    if (prompt_scored) return;
    prompt_scored = true;
    if (request.on_prompt_logprobs) request.on_prompt_logprobs(r->prompt_lps);
  };
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(r->mu);
      r->cv.wait(lk, [&] { return !r->tokens.empty() || r->done.has_value(); });
      if (r->tokens.empty()) break;  // done, and every token delivered
      batch.assign(r->tokens.begin(), r->tokens.end());
      r->tokens.clear();
      batch_lps.assign(std::make_move_iterator(r->logprobs_of_tokens.begin()),
                       std::make_move_iterator(r->logprobs_of_tokens.end()));
      r->logprobs_of_tokens.clear();
    }
    score_prompt();
    for (size_t i = 0; i < batch.size(); ++i) {
      const int32_t id = batch[i];
      if (cancelled) break;
      ++delivered;
      if (request.on_logprob && i < batch_lps.size()) request.on_logprob(batch_lps[i]);
      if (!on_token(id)) {
        cancelled = true;
        r->cancelled = true;  // the scheduler drops it at its next iteration and posts done
      }
    }
  }
  Result<GenerationResult> result = std::move(*r->done);
  if (!result.ok()) return result;
  if (!cancelled) score_prompt();
  result->completion_tokens = delivered + (r->eog && !cancelled ? 1 : 0);
  if (cancelled) result->finish_reason = "stop";
  return result;
}

void LocalBackend::finish(Request& r, Result<GenerationResult> result) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (r.admitted) admission_.release(r.ticket);
    r.admitted = false;
  }
  if (r.cache) --live_caches_;
  r.cache.reset();
  r.sampler.reset();
  if (result.ok()) {
    result->prompt_tokens = static_cast<int>(r.prompt.size());
    result->route = "local";
    if (r.generated > 0) {
      result->prompt_seconds = seconds(r.submitted, r.first_token);
      result->generation_seconds = seconds(r.first_token, r.last_token);
    }
  }
  {
    std::lock_guard<std::mutex> lk(r.mu);
    r.done.emplace(std::move(result));
  }
  r.cv.notify_all();
}

static GenerationResult finished(const char* reason) {
  GenerationResult g;
  g.finish_reason = reason;
  return g;
}

std::vector<std::pair<std::shared_ptr<LocalBackend::Request>, Result<GenerationResult>>>
LocalBackend::expire_locked() {
  std::vector<std::pair<std::shared_ptr<Request>, Result<GenerationResult>>> out;
  for (auto& [ticket, refusal] : admission_.expire(Clock::now())) {
    auto it = std::find_if(waiting_.begin(), waiting_.end(),
                           [&, t = ticket](const auto& r) { return r->ticket == t; });
    if (it == waiting_.end()) continue;
    out.emplace_back(std::move(*it), refusal);
    waiting_.erase(it);
  }
  const bool release = release_waiting_;
  release_waiting_ = false;
  std::erase_if(waiting_, [&](std::shared_ptr<Request>& r) {
    if (r->admitted) return false;  // admitted ones end in the batch
    if (release) {
      admission_.withdraw(r->ticket);
      out.emplace_back(std::move(r), Status::Unavailable("the server is stopping"));
      return true;
    }
    if (!r->cancelled) return false;
    admission_.withdraw(r->ticket);
    out.emplace_back(std::move(r), finished("stop"));
    return true;
  });
  return out;
}

void LocalBackend::scheduler_loop() {
  for (;;) {
    std::vector<std::pair<std::shared_ptr<Request>, Result<GenerationResult>>> dropped;
    bool run = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto ready = [&] {
        return stop_ || (!paused_ && (!waiting_.empty() || !active_.empty())) ||
               release_waiting_;
      };
      // Wake for work, or when a waiting request's deadline passes (paused too).
      while (!ready()) {
        const auto next = admission_.next_deadline();
        if (next <= Clock::now()) break;
        if (next == Clock::time_point::max())
          cv_.wait(lk);
        else
          cv_.wait_until(lk, next);
      }
      if (stop_) break;
      dropped = expire_locked();
      run = !paused_ && (!waiting_.empty() || !active_.empty());
    }
    for (auto& [r, result] : dropped) finish(*r, std::move(result));
    if (!run) continue;
    const auto began = Clock::now();
    step();
    // --slowdown: each iteration takes `slowdown` times its compute time, as
    // on a slower machine (requests keep arriving and batching meanwhile).
    if (options_.slowdown > 1)
      std::this_thread::sleep_for((Clock::now() - began) * (options_.slowdown - 1));
  }
  std::deque<std::shared_ptr<Request>> waiting;
  {
    std::lock_guard<std::mutex> lk(mu_);
    waiting.swap(waiting_);
  }
  for (auto& r : active_) finish(*r, Status::Unavailable("the local backend is shutting down"));
  for (auto& r : waiting) finish(*r, Status::Unavailable("the local backend is shutting down"));
  active_.clear();
}

void LocalBackend::step() {
  const ModelConfig& cfg = model_->config();
  const int n_vocab = cfg.n_vocab;
  // Admit waiting requests while there is room; drop cancelled ones.
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (AdmissionQueue::Ticket t : admission_.admit_waiting())
      for (auto& w : waiting_)
        if (w->ticket == t) w->admitted = true;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (!(*it)->admitted) {
        ++it;
        continue;
      }
      active_.push_back(std::move(*it));
      it = waiting_.erase(it);
      Request& r = *active_.back();
      r.sampler = std::make_unique<Sampler>(r.sampling, n_vocab, options_.grammar_vocab);
      for (int32_t id : r.prompt)
        r.sampler->accept(id);  // penalties see the prompt, as llama.cpp's do
      r.cache = model_->new_cache(context_length_);
      ++live_caches_;
    }
  }
  std::erase_if(active_, [this](const std::shared_ptr<Request>& r) {
    if (r->cancelled) {
      finish(*r, finished("stop"));
      return true;
    }
    if (r->sampler->reached_max_tokens(r->generated)) {  // max_tokens 0
      finish(*r, finished("length"));
      return true;
    }
    return false;
  });
  if (active_.empty()) return;

  // One batch: each request's next prompt chunk or its last sampled token.
  std::vector<int32_t> tokens;
  std::vector<SeqChunk> chunks;
  std::vector<Request*> in_batch;
  std::vector<int64_t> logit_rows;  // batch rows whose logits are needed
  std::vector<Request*> to_sample;  // the request of each of those rows
  // Prompt rows whose logits score the next prompt token (prompt_logprobs):
  // their index in logit_rows after the sampled ones, the request, and the
  // prompt position they predict.
  struct PromptRow {
    Request* r;
    size_t predicts;
  };
  std::vector<int64_t> prompt_rows;
  std::vector<PromptRow> prompt_row_of;
  int budget = std::max(1, options_.max_batch_tokens);
  for (auto& rp : active_) {
    Request& r = *rp;
    int n = 0;
    if (r.fed < r.prompt.size()) {
      if (budget <= 0) continue;
      n = static_cast<int>(std::min<size_t>(r.prompt.size() - r.fed, static_cast<size_t>(budget)));
      budget -= n;
      if (r.prompt_logprobs)  // every fed row but the prompt's last predicts a prompt token
        for (int k = 0; k < n; ++k) {
          const size_t pos = r.fed + static_cast<size_t>(k);
          if (pos + 1 >= r.prompt.size()) break;
          prompt_rows.push_back(static_cast<int64_t>(tokens.size()) + k);
          prompt_row_of.push_back({&r, pos + 1});
        }
      tokens.insert(tokens.end(), r.prompt.begin() + static_cast<ptrdiff_t>(r.fed),
                    r.prompt.begin() + static_cast<ptrdiff_t>(r.fed) + n);
      r.fed += static_cast<size_t>(n);
      if (r.fed == r.prompt.size()) {
        logit_rows.push_back(static_cast<int64_t>(tokens.size()) - 1);
        to_sample.push_back(&r);
      }
    } else {
      n = 1;
      tokens.push_back(r.last);
      logit_rows.push_back(static_cast<int64_t>(tokens.size()) - 1);
      to_sample.push_back(&r);
    }
    chunks.push_back({r.cache.get(), n});
    in_batch.push_back(&r);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.iterations;
    stats_.max_batch_sequences =
        std::max(stats_.max_batch_sequences, static_cast<int>(chunks.size()));
  }

  const int64_t d = cfg.n_embd;
  const int64_t n_tok = static_cast<int64_t>(tokens.size());
  std::vector<float> hidden(static_cast<size_t>(n_tok * d));
  Status st = model_->embed(tokens.data(), n_tok, hidden.data());
  if (st.ok()) st = model_->run_layers(hidden.data(), chunks, 0, cfg.n_layer, pool_);
  const size_t n_sampled = logit_rows.size();
  logit_rows.insert(logit_rows.end(), prompt_rows.begin(), prompt_rows.end());
  std::vector<float> logits;
  if (st.ok() && !logit_rows.empty()) {
    const int64_t n_rows = static_cast<int64_t>(logit_rows.size());
    std::vector<float> rows(static_cast<size_t>(n_rows * d));
    for (int64_t i = 0; i < n_rows; ++i)
      std::copy_n(hidden.begin() + logit_rows[i] * d, d, rows.begin() + i * d);
    logits.resize(static_cast<size_t>(n_rows * n_vocab));
    st = model_->head(rows.data(), n_rows, logits.data(), pool_);
  }
  if (!st.ok()) {
    // The caches of the whole batch are in an unknown state: end every request in it.
    std::erase_if(active_, [&](const std::shared_ptr<Request>& r) {
      if (std::find(in_batch.begin(), in_batch.end(), r.get()) == in_batch.end()) return false;
      finish(*r, st);
      return true;
    });
    return;
  }

  // The prompt's logprobs, in order (chunks arrive in prompt order).
  for (size_t j = 0; j < prompt_row_of.size(); ++j) {
    Request& r = *prompt_row_of[j].r;
    r.prompt_lps.push_back(token_logprob(logits.data() + (n_sampled + j) * n_vocab, n_vocab,
                                         r.prompt[prompt_row_of[j].predicts],
                                         std::max(0, r.logprobs)));
  }
  // Each request samples with its own sampler (independent, so in parallel).
  std::vector<int32_t> chosen(to_sample.size());
  std::vector<TokenLogprob> chosen_lps(to_sample.size());
  pool_.parallel_for(static_cast<int64_t>(to_sample.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Sampler& s = *to_sample[i]->sampler;
      // The token's position: after the prompt and the tokens generated so far.
      const Request& r = *to_sample[i];
      chosen[i] = s.sample(logits.data() + i * n_vocab,
                           static_cast<int>(r.prompt.size()) + r.generated);
      s.accept(chosen[i]);
      if (r.logprobs >= 0)  // of the raw logits, whatever the sampler did with them
        chosen_lps[i] = token_logprob(logits.data() + i * n_vocab, n_vocab, chosen[i], r.logprobs);
    }
  });
  const auto now = Clock::now();
  for (size_t i = 0; i < to_sample.size(); ++i) {
    Request& r = *to_sample[i];
    const int32_t id = chosen[i];
    if (r.generated++ == 0) r.first_token = now;
    r.last_token = now;
    r.last = id;
    if (r.sampler->is_stop_token(id)) {
      r.eog = true;
      continue;
    }
    {
      std::lock_guard<std::mutex> lk(r.mu);
      r.tokens.push_back(id);
      if (r.logprobs >= 0) r.logprobs_of_tokens.push_back(std::move(chosen_lps[i]));
    }
    r.cv.notify_all();
  }
  std::erase_if(active_, [&](const std::shared_ptr<Request>& rp) {
    Request& r = *rp;
    if (r.eog) {
      finish(r, finished("stop"));
      return true;
    }
    if (r.sampler->reached_max_tokens(r.generated) ||
        static_cast<int64_t>(r.prompt.size()) + r.generated >= context_length_) {
      finish(r, finished("length"));
      return true;
    }
    return false;
  });
}

Result<std::vector<std::vector<float>>> LocalBackend::embed(
    const std::vector<std::vector<int32_t>>& inputs) {
  const ModelConfig& cfg = model_->config();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t>& in = inputs[i];
    if (in.empty()) return Status::InvalidArgument("input " + std::to_string(i) + " has no tokens");
    if (static_cast<int64_t>(in.size()) > context_length_)
      return Status::InvalidArgument("input " + std::to_string(i) + " is " + std::to_string(in.size()) +
                                     " tokens; the context holds " + std::to_string(context_length_));
    for (int32_t id : in)
      if (id < 0 || id >= cfg.n_vocab)
        return Status::InvalidArgument("input " + std::to_string(i) + ": token " + std::to_string(id) +
                                       " is outside the vocabulary of " + std::to_string(cfg.n_vocab));
  }
  std::lock_guard<std::mutex> lock(embed_mu_);
  if (!embed_pool_) embed_pool_ = std::make_unique<ThreadPool>(options_.threads);
  const int d = cfg.n_embd;
  std::vector<std::vector<float>> out;
  out.reserve(inputs.size());
  for (const std::vector<int32_t>& in : inputs) {
    const int64_t n = static_cast<int64_t>(in.size());
    auto cache = model_->new_cache(static_cast<int>(n));
    std::vector<float> hidden(static_cast<size_t>(n * d)), normed(static_cast<size_t>(n * d));
    SWARM_RETURN_IF_ERROR(model_->embed(in.data(), n, hidden.data()));
    SWARM_RETURN_IF_ERROR(
        model_->run_layers(hidden.data(), {{cache.get(), static_cast<int>(n)}}, 0, cfg.n_layer, *embed_pool_));
    SWARM_RETURN_IF_ERROR(model_->final_norm(hidden.data(), n, normed.data()));
    out.push_back(mean_pool_normalized(normed.data(), n, d));
  }
  return out;
}

}  // namespace swarm
