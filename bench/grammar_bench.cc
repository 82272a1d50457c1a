// What a grammar costs per generated token: the shipped model decoding
// freely and under structured-output grammars (a JSON schema, any JSON
// object), sampled at temperature 1 with llama.cpp's default filters. One JSON
// line per grammar: ms per token (forward pass and sampling) free and
// constrained, their ratio, and the sampler's own microseconds per token.
//
// Usage: grammar_bench [--model PATH] [--tokens N] [--threads T]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/json_schema_grammar.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/thread_pool.h"
#include "engine/tokenizer.h"

#ifndef SWARM_SOURCE_DIR
#define SWARM_SOURCE_DIR "."  // run from the repository's root
#endif

namespace swarm {
namespace {

using Clock = std::chrono::steady_clock;

struct Timing {
  double total_s = 0, sample_s = 0;
  int tokens = 0;
};

// Generates `tokens` tokens in generations of at most 128 (a grammar's
// generation restarts when it stops), timing the forward passes and the sampler.
Timing run(const Model& m, const Tokenizer& tok, const std::shared_ptr<const GrammarVocab>& vocab,
           const std::string& grammar, int tokens, ThreadPool& pool) {
  Timing t;
  const std::vector<int32_t> prompt = tok.encode("1 And God said, ");
  const int n_vocab = m.config().n_vocab;
  for (uint64_t seed = 1; t.tokens < tokens; ++seed) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    p.grammar = grammar;
    p.grammar_start = static_cast<int>(prompt.size());
    p.stop_tokens = tok.eog_ids();
    Sampler s(p, n_vocab, vocab);
    for (int32_t id : prompt) s.accept(id);
    auto cache = m.new_cache(static_cast<int>(prompt.size()) + 130);
    std::vector<int32_t> feed = prompt;
    int position = static_cast<int>(prompt.size());
    bool first = true;
    for (int i = 0; i < 128 && t.tokens < tokens; ++i) {
      const auto t0 = Clock::now();
      auto logits = m.forward(feed, *cache, pool);
      if (!logits.ok()) {
        std::fprintf(stderr, "%s\n", logits.status().ToString().c_str());
        std::exit(1);
      }
      const float* row = logits->data() + logits->size() - static_cast<size_t>(n_vocab);
      const auto t1 = Clock::now();
      const int32_t id = s.sample(row, position++);
      s.accept(id);
      const auto t2 = Clock::now();
      if (!first) {  // the prompt's pass is not a decode step
        t.total_s += std::chrono::duration<double>(t2 - t0).count();
        t.sample_s += std::chrono::duration<double>(t2 - t1).count();
        ++t.tokens;
      }
      first = false;
      if (s.is_stop_token(id)) break;
      feed = {id};
    }
  }
  return t;
}

int main_(int argc, char** argv) {
  std::string model = std::string(SWARM_SOURCE_DIR) + "/models/kjv-target-Q8_0.gguf";
  int tokens = 1000, threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  auto m = Model::Load(model);
  auto tok = Tokenizer::Load(model);
  if (!m.ok() || !tok.ok()) {
    std::fprintf(stderr, "cannot load %s\n", model.c_str());
    return 1;
  }
  const auto vocab = GrammarVocab::from_tokenizer(**tok);
  ThreadPool pool(threads);
  const nlohmann::json schema = nlohmann::json::parse(R"({"type": "object",
      "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                     "tags": {"type": "array", "items": {"type": "string"}}, "ok": {"type": "boolean"}},
      "required": ["name", "age", "tags"], "additionalProperties": false})");
  const std::vector<std::pair<std::string, std::string>> grammars = {
      {"json_schema", *grammar_from_json_schema(schema)}, {"json_object", json_object_grammar()}};
  run(**m, **tok, vocab, "", 50, pool);  // warm the caches
  // Free and constrained runs alternate, so a change in machine load hits both.
  for (const auto& [name, g] : grammars) {
    Timing free, constrained;
    for (int round = 0; round < 3; ++round) {
      const Timing f = run(**m, **tok, vocab, "", tokens / 3, pool);
      const Timing c = run(**m, **tok, vocab, g, tokens / 3, pool);
      free.total_s += f.total_s, free.sample_s += f.sample_s, free.tokens += f.tokens;
      constrained.total_s += c.total_s, constrained.sample_s += c.sample_s, constrained.tokens += c.tokens;
    }
    const double free_ms = 1e3 * free.total_s / free.tokens;
    const double cons_ms = 1e3 * constrained.total_s / constrained.tokens;
    nlohmann::json line = {{"bench", "grammar"},
                           {"grammar", name},
                           {"model", model.substr(model.find_last_of('/') + 1)},
                           {"threads", threads},
                           {"tokens", constrained.tokens},
                           {"free_ms_per_token", free_ms},
                           {"constrained_ms_per_token", cons_ms},
                           {"ratio", cons_ms / free_ms},
                           {"free_sample_us_per_token", 1e6 * free.sample_s / free.tokens},
                           {"constrained_sample_us_per_token", 1e6 * constrained.sample_s / constrained.tokens}};
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace swarm

int main(int argc, char** argv) { return swarm::main_(argc, argv); }
