// swarm spec-eval -m TARGET --drafter ngram|draft:MODEL [-k 4,6,8] [--prompts FILE.jsonl] [-n 64] [--trace]
// How well a drafter predicts a target, measured in one process: greedy
// speculative decoding of each prompt, where every target pass verifies the
// anchor token and up to k drafts (the same judgement the last stage makes:
// a draft stands while it is the target's argmax). Prints one JSON line per k:
// acceptance rate (accepted / drafted), mean accepted length (accepted drafts
// per verifying pass), tokens per target pass, and the speed against plain
// greedy decoding of the same prompts, whose output must be identical.
// With --trace, instead: one line per prompt with what the drafter would draft
// at every point of the greedy text (pipeline/draft_trace.h), for the
// simulator's [speculation] trace.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "engine/sampler.h"
#include "pipeline/draft_trace.h"
#include "pipeline/model_drafter.h"
#include "pipeline/ngram_drafter.h"

namespace swarm::cli {
namespace {

struct Totals {
  int64_t drafted = 0, accepted = 0, passes = 0, passes_with_drafts = 0, tokens = 0;
  double seconds = 0;
};

// Greedy decoding of `prompt` for `n` tokens; with a drafter, each pass feeds
// the anchor and up to `k` drafts and keeps what the target agrees with, judged
// by the sampler exactly as the last stage judges them (Sampler::judge).
std::vector<int32_t> decode(const Model& model, ThreadPool& pool,
                            const std::vector<int32_t>& prompt, int n, Drafter* drafter, int k,
                            Totals& t) {
  const int vocab = model.config().n_vocab;
  SamplingParams params;
  params.temperature = 0;
  Sampler greedy(params, vocab);
  auto cache = model.new_cache(static_cast<int>(prompt.size()) + n + k + 2);
  const auto t0 = std::chrono::steady_clock::now();
  auto logits = model.forward(prompt, *cache, pool);
  check(logits.status());
  int32_t anchor = greedy.sample(logits->data() + (prompt.size() - 1) * vocab, 0);  // greedy: no draw
  std::vector<int32_t> context = prompt, out;
  while (static_cast<int>(out.size()) < n) {
    std::vector<int32_t> batch = {anchor};
    if (drafter != nullptr) {
      context.push_back(anchor);
      auto proposal = drafter->propose(context, std::min(k, n - static_cast<int>(out.size()) - 1));
      context.pop_back();
      check(proposal.status());
      batch.insert(batch.end(), proposal->tokens.begin(), proposal->tokens.end());
    }
    const int base = cache->length();
    auto rows = model.forward(batch, *cache, pool);
    check(rows.status());
    // The token after the accepted drafts: the first rejected draft's
    // replacement, or the target's choice after the last draft.
    int accepted = 0;
    int32_t next = -1;
    while (next < 0) {
      const float* row = rows->data() + static_cast<size_t>(accepted) * vocab;
      if (accepted + 1 == static_cast<int>(batch.size())) {
        next = greedy.sample(row, 0);
      } else if (const Judgement j = greedy.judge(row, batch[accepted + 1], {}, 0); j.accepted) {
        ++accepted;
      } else {
        next = j.token;
      }
    }
    check(cache->truncate(base + 1 + accepted));
    for (int i = 0; i <= accepted && static_cast<int>(out.size()) < n; ++i) {
      out.push_back(batch[i]);
      context.push_back(batch[i]);
    }
    anchor = next;
    t.passes++;
    t.drafted += static_cast<int64_t>(batch.size()) - 1;
    t.accepted += accepted;
    if (batch.size() > 1) t.passes_with_drafts++;
  }
  t.tokens += static_cast<int64_t>(out.size());
  t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path + ": cannot open");
  std::vector<std::string> prompts;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_string()) fail(path + ":" + std::to_string(no) + ": not a JSON string");
    prompts.push_back(j.get<std::string>());
  }
  if (prompts.empty()) fail(path + ": no prompts");
  return prompts;
}

}  // namespace

void register_spec_eval(CLI::App& app) {
  struct Opts {
    std::string model, drafter = "ngram", prompts_file;
    std::vector<int> ks = {4, 6, 8};
    std::vector<std::string> prompts;
    int n = 64, threads = 1;
    bool trace = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "spec-eval", "Measure a drafter's acceptance against a target model (greedy, one process)");
  cmd->add_option("-m,--model", o->model, "Target model (GGUF file or Hugging Face folder)")
      ->required();
  cmd->add_option("--drafter", o->drafter, "ngram (prompt lookup) or draft:MODEL (default ngram)");
  cmd->add_option("-k,--drafts", o->ks, "Drafts per pass, one run each (default 4,6,8)")
      ->delimiter(',')
      ->check(CLI::Range(1, 64));
  cmd->add_option("--prompts", o->prompts_file, "A file of prompts, one JSON string per line");
  cmd->add_option("-p,--prompt", o->prompts, "A prompt (repeatable)");
  cmd->add_option("-n,--n-predict", o->n, "Tokens to generate per prompt (default 64)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("-t,--threads", o->threads, "Threads (default 1)")->check(CLI::Range(1, 1024));
  cmd->add_flag("--trace", o->trace,
                "Print, per prompt, the drafter's guess at every point of the greedy text: -1 "
                "(none) or how many of its drafts (at most the largest -k) hold");
  cmd->callback([o] {
    std::vector<std::string> prompts = o->prompts;
    if (!o->prompts_file.empty())
      for (std::string& p : read_prompts(o->prompts_file)) prompts.push_back(std::move(p));
    if (prompts.empty()) fail("give --prompts FILE or -p TEXT");
    auto model = load_model(o->model);
    auto tok = load_tokenizer(o->model, model->config().n_vocab);
    ThreadPool pool(o->threads);
    std::shared_ptr<DraftModel> draft;
    if (o->drafter.rfind("draft:", 0) == 0) {
      auto d = DraftModel::Load(o->drafter.substr(6), model->config().n_vocab, o->threads);
      if (!d.ok()) fail("--drafter: " + d.status().message());
      draft = *d;
    } else if (o->drafter != "ngram") {
      fail("--drafter: '" + o->drafter + "' is neither ngram nor draft:MODEL");
    }
    std::vector<std::vector<int32_t>> encoded, plain;
    Totals base;
    for (const std::string& p : prompts) {
      encoded.push_back(tok->encode(p));
      plain.push_back(decode(*model, pool, encoded.back(), o->n, nullptr, 0, base));
    }
    // A fresh drafter per prompt (a draft model keeps a cache of its context).
    auto new_drafter = [&](size_t i, int k) -> std::unique_ptr<Drafter> {
      if (!draft) return std::make_unique<NgramDrafter>();
      SamplingParams greedy;
      greedy.temperature = 0;
      return std::make_unique<ModelDrafter>(draft, greedy,
                                            static_cast<int>(encoded[i].size()) + o->n + k + 2);
    };
    if (o->trace) {
      const int k = *std::max_element(o->ks.begin(), o->ks.end());
      for (size_t i = 0; i < encoded.size(); ++i) {
        std::vector<int32_t> text = encoded[i];
        text.insert(text.end(), plain[i].begin(), plain[i].end());
        // From the prompt and the first token: the first question a gateway asks.
        const int from = static_cast<int>(encoded[i].size()) + 1;
        auto trace = draft_trace(*new_drafter(i, k), text, from, k);
        check(trace.status());
        const nlohmann::json line = {{"bench", "spec_trace"}, {"model", o->model},
                                     {"drafter", o->drafter},  {"k", k},
                                     {"prompt", i},            {"prompt_tokens", encoded[i].size()},
                                     {"from", from},           {"trace", *trace}};
        std::printf("%s\n", line.dump().c_str());
      }
      return;
    }
    for (int k : o->ks) {
      Totals t;
      bool identical = true;
      for (size_t i = 0; i < encoded.size(); ++i) {
        identical &= decode(*model, pool, encoded[i], o->n, new_drafter(i, k).get(), k, t) == plain[i];
      }
      const nlohmann::json line = {
          {"bench", "spec_eval"},
          {"model", o->model},
          {"drafter", o->drafter},
          {"k", k},
          {"prompts", prompts.size()},
          {"tokens", t.tokens},
          {"acceptance_rate", t.drafted > 0 ? static_cast<double>(t.accepted) / t.drafted : 0.0},
          {"mean_accepted_length",
           t.passes_with_drafts > 0 ? static_cast<double>(t.accepted) / t.passes_with_drafts : 0.0},
          {"passes_with_drafts",
           t.passes_with_drafts > 0 ? static_cast<double>(t.passes_with_drafts) / t.passes : 0.0},
          {"tokens_per_target_pass", static_cast<double>(t.tokens) / t.passes},
          {"tokens_per_s", t.tokens / t.seconds},
          {"plain_tokens_per_s", base.tokens / base.seconds},
          {"speedup", (t.tokens / t.seconds) / (base.tokens / base.seconds)},
          {"identical_to_plain", identical}};
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
      if (!identical) fail("speculative output differs from plain greedy decoding");
    }
  });
}

}  // namespace swarm::cli
