// swarm logits -m MODEL --tokens 1,2,3 [-o out.f32]
// Logits at every position. With -o: raw float32 [n_tokens, vocab]; without:
// each position's five most likely next tokens.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "cli/common.h"

namespace swarm::cli {

void register_logits(CLI::App& app) {
  struct Opts {
    std::string model, tokens, out, device;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("logits", "Logits at every position of a token sequence");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--tokens", o->tokens, "Comma-separated token ids")->required();
  cmd->add_option("-o,--output", o->out, "Write raw float32 [n_tokens, vocab] here");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_option("--device", o->device, kDeviceHelp);
  cmd->callback([o] {
    auto tokens = parse_token_list(o->tokens);
    check(tokens.status());
    auto model = load_model_on(o->model, LoadOptions{}, o->device);
    ThreadPool pool(o->threads);
    auto cache = model->new_cache(static_cast<int>(tokens->size()));
    auto logits = model->forward(*tokens, *cache, pool);
    check(logits.status());
    const int vocab = model->config().n_vocab;
    if (!o->out.empty()) {
      write_f32(o->out, logits->data(), logits->size());
      return;
    }
    std::vector<int> idx(vocab);
    for (size_t t = 0; t < tokens->size(); ++t) {
      const float* row = logits->data() + t * vocab;
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [row](int a, int b) { return row[a] > row[b]; });
      std::printf("%zu (token %d):", t, (*tokens)[t]);
      for (int k = 0; k < 5; ++k) std::printf(" %d=%.4f", idx[k], row[idx[k]]);
      std::printf("\n");
    }
  });
}

}  // namespace swarm::cli
