// swarm generate -m MODEL [--tokens 1,2,3] [-n N] [-t N]
// Greedy generation from a prompt of token ids, streamed to stdout as produced,
// then prompt and generation speed on stderr.
#include <chrono>
#include <cstdio>

#include "cli/common.h"

namespace swarm::cli {

void register_generate(CLI::App& app) {
  struct Opts {
    std::string model, tokens;
    int n = 32, threads = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens from a prompt on this machine");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--tokens", o->tokens, "Prompt as comma-separated token ids (default: the BOS token)");
  cmd->add_option("-n,--n-predict", o->n, "Tokens to generate (default 32)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->callback([o] {
    auto model = load_model(o->model);
    const ModelConfig& c = model->config();
    std::vector<int32_t> prompt;
    if (o->tokens.empty()) {
      auto it = model->source().metadata.find("tokenizer.ggml.bos_token_id");
      prompt.push_back(it == model->source().metadata.end() ? 1 : std::stoi(it->second));
    } else {
      auto t = parse_token_list(o->tokens);
      check(t.status());
      prompt = *t;
    }
    const int max_len = static_cast<int>(prompt.size()) + o->n;
    if (max_len > c.n_ctx_train)
      fail("prompt (" + std::to_string(prompt.size()) + ") + -n " + std::to_string(o->n) +
           " tokens exceed the model's context of " + std::to_string(c.n_ctx_train));
    ThreadPool pool(o->threads);
    auto cache = model->new_cache(max_len);
    const auto t0 = std::chrono::steady_clock::now();
    auto logits = model->forward(prompt, *cache, pool);
    check(logits.status());
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<float> last(logits->end() - c.n_vocab, logits->end());
    for (int i = 0; i < o->n; ++i) {
      const int32_t tok = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
      std::printf("%s%d", i ? "," : "", tok);
      std::fflush(stdout);
      if (i + 1 == o->n) break;
      auto next = model->forward({tok}, *cache, pool);
      check(next.status());
      last = std::move(next).value();
    }
    std::printf("\n");
    std::fflush(stdout);
    const auto t2 = std::chrono::steady_clock::now();
    const double tp = std::chrono::duration<double>(t1 - t0).count();
    const double tg = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr, "prompt: %zu tokens, %.1f tok/s; generation: %d tokens, %.1f tok/s\n", prompt.size(),
                 prompt.size() / tp, o->n, o->n > 0 ? o->n / tg : 0.0);
  });
}

}  // namespace swarm::cli
