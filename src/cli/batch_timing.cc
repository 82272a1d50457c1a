#include "cli/batch_timing.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>

#include "cli/common.h"

namespace swarm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One timed pass: embed `tokens`, run every layer over `chunks`, head over
// `head_rows` rows (the last rows of the batch); adds each part's seconds.
struct Pass {
  std::vector<double> embed, layers, head;
};

void time_pass(const Model& model, ThreadPool& pool, const std::vector<int32_t>& tokens,
               const std::vector<SeqChunk>& chunks, int head_rows, std::vector<float>& hidden,
               std::vector<float>& logits, Pass& pass) {
  const ModelConfig& c = model.config();
  const auto n = static_cast<int64_t>(tokens.size());
  auto t0 = Clock::now();
  check(model.embed(tokens.data(), n, hidden.data()));
  pass.embed.push_back(since(t0));
  t0 = Clock::now();
  check(model.run_layers(hidden.data(), chunks, 0, c.n_layer, pool));
  pass.layers.push_back(since(t0) / c.n_layer);
  t0 = Clock::now();
  check(model.head(hidden.data() + static_cast<size_t>(n - head_rows) * c.n_embd, head_rows, logits.data(), pool));
  pass.head.push_back(since(t0));
}

BatchTiming summarize(BatchTiming::Kind kind, int tokens, const Pass& pass) {
  return {kind, tokens, median(pass.layers), median(pass.head), median(pass.embed)};
}

}  // namespace

std::vector<BatchTiming> measure_batch_timings(const Model& model, ThreadPool& pool,
                                               const std::vector<int>& decode_batches,
                                               const std::vector<int>& prefill_chunks, int context,
                                               int rounds) {
  const ModelConfig& c = model.config();
  std::mt19937 rng(7);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % c.n_vocab);
    return t;
  };
  int widest = 1;
  for (int b : decode_batches) widest = std::max(widest, b);
  for (int p : prefill_chunks) widest = std::max(widest, p);
  widest = std::max(widest, context);
  std::vector<float> hidden(static_cast<size_t>(widest) * c.n_embd);
  std::vector<float> logits(static_cast<size_t>(widest) * c.n_vocab);
  std::vector<BatchTiming> out;

  // Every size is measured once per round, round after round, so a moment
  // of interference from elsewhere on the machine spreads over all sizes
  // instead of skewing one; medians over the rounds.
  struct DecodeSet {
    int b;
    std::vector<std::unique_ptr<KvCache>> caches;
    std::vector<SeqChunk> chunks;
    Pass pass;
  };
  std::vector<DecodeSet> sets;
  for (int b : decode_batches) {
    // b sequences, each with `context` positions already cached; each round
    // every sequence adds one token, as in a node's decode batch.
    DecodeSet set{b, {}, {}, {}};
    for (int i = 0; i < b; ++i) {
      set.caches.push_back(model.new_cache(context + rounds + 1));
      const std::vector<int32_t> prompt = random_tokens(context);
      check(model.embed(prompt.data(), context, hidden.data()));
      check(model.run_layers(hidden.data(), {{set.caches.back().get(), context}}, 0, c.n_layer, pool));
    }
    for (auto& cache : set.caches) set.chunks.push_back({cache.get(), 1});
    sets.push_back(std::move(set));
  }
  std::vector<Pass> prefill(prefill_chunks.size());
  for (int r = 0; r < rounds; ++r) {
    for (DecodeSet& set : sets)
      time_pass(model, pool, random_tokens(set.b), set.chunks, set.b, hidden, logits, set.pass);
    for (size_t i = 0; i < prefill_chunks.size(); ++i) {
      // One prompt chunk of p tokens on an empty cache; the head over its last row.
      const int p = prefill_chunks[i];
      auto cache = model.new_cache(p);
      time_pass(model, pool, random_tokens(p), {{cache.get(), p}}, 1, hidden, logits, prefill[i]);
    }
  }
  for (const DecodeSet& set : sets) out.push_back(summarize(BatchTiming::Kind::kDecode, set.b, set.pass));
  for (size_t i = 0; i < prefill_chunks.size(); ++i)
    out.push_back(summarize(BatchTiming::Kind::kPrefill, prefill_chunks[i], prefill[i]));
  return out;
}

}  // namespace swarm::cli
