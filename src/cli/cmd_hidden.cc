// swarm hidden -m MODEL --tokens ... --layers A:B [--input in.f32] [-o out.f32]
// The residual stream after running layers [A, B). With --input, the stream
// entering layer A comes from that file (as a stage of a pipeline receives it)
// and only layers A..B are loaded; without it, the tokens are embedded and run
// through layers [0, A) first.
#include <cstdio>

#include "cli/common.h"
#include "engine/mapped_file.h"

namespace swarm::cli {

void register_hidden(CLI::App& app) {
  struct Opts {
    std::string model, tokens, layers, input, out;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("hidden", "Residual stream after a range of layers");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--tokens", o->tokens, "Comma-separated token ids")->required();
  cmd->add_option("--layers", o->layers, "Layer range A:B")->required();
  cmd->add_option("--input", o->input, "Raw float32 [n_tokens, d_model] entering layer A");
  cmd->add_option("-o,--output", o->out, "Write raw float32 [n_tokens, d_model] here");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->callback([o] {
    auto tokens = parse_token_list(o->tokens);
    check(tokens.status());
    auto range = parse_layer_range(o->layers);
    check(range.status());
    const auto [a, b] = *range;
    LoadOptions lo;
    lo.first_layer = o->input.empty() ? 0 : a;
    lo.last_layer = b;
    lo.embed = o->input.empty() ? 1 : 0;
    lo.head = 0;
    auto model = load_model(o->model, lo);
    const int d = model->config().n_embd;
    const int n = static_cast<int>(tokens->size());
    std::vector<float> hidden(static_cast<size_t>(n) * d);
    ThreadPool pool(o->threads);
    auto cache = model->new_cache(n);
    if (o->input.empty()) {
      check(model->embed(tokens->data(), n, hidden.data()));
      // Layers before A keep their own cache: positions restart for every range.
      auto before = model->new_cache(n);
      check(model->run_layers(hidden.data(), {{before.get(), n}}, 0, a, pool));
    } else {
      auto size = file_size(o->input);
      check(size.status());
      if (*size != hidden.size() * sizeof(float))
        fail(o->input + ": holds " + std::to_string(*size) + " bytes; " + std::to_string(n) + " tokens of d_model " +
             std::to_string(d) + " need " + std::to_string(hidden.size() * sizeof(float)));
      std::FILE* f = std::fopen(o->input.c_str(), "rb");
      if (f == nullptr || std::fread(hidden.data(), sizeof(float), hidden.size(), f) != hidden.size())
        fail(o->input + ": cannot read");
      std::fclose(f);
      // This stage sees the whole sequence: its positions start at 0.
    }
    check(model->run_layers(hidden.data(), {{cache.get(), n}}, a, b, pool));
    if (!o->out.empty()) {
      write_f32(o->out, hidden.data(), hidden.size());
      return;
    }
    for (int t = 0; t < n; ++t) {
      std::printf("%d:", t);
      for (int i = 0; i < std::min(d, 8); ++i) std::printf(" %.5f", hidden[static_cast<size_t>(t) * d + i]);
      std::printf(" ...\n");
    }
  });
}

}  // namespace swarm::cli
