// swarm convert HF_FOLDER -o OUT.gguf [--type F32|F16|BF16|Q8_0] [--name NAME]
#include <chrono>
#include <cstdio>

#include "cli/common.h"
#include "engine/gguf_convert.h"

namespace swarm::cli {

void register_convert(CLI::App& app) {
  struct Opts {
    std::string dir, out;
    ConvertOptions convert;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a Hugging Face model folder to GGUF");
  cmd->add_option("folder", o->dir,
                  "Folder with config.json, *.safetensors and the tokenizer files")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output .gguf path")->required();
  cmd->add_option("--type", o->convert.type,
                  "Type of the matrices: F32, F16, BF16 or Q8_0 (default F16); vectors stay F32");
  cmd->add_option("--name", o->convert.name, "general.name (default: the folder's name)");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->callback([o] {
    ThreadPool pool(o->threads);
    o->convert.progress = true;  // drawn only when stderr is a terminal
    const auto t0 = std::chrono::steady_clock::now();
    Result<ConvertSummary> s = convert_hf_to_gguf(o->dir, o->out, o->convert, pool);
    check(s.status());
    if (!s->skipped.empty())
      std::fprintf(stderr, "left out (no GGUF counterpart): %s\n", s->skipped.c_str());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(
        stderr, "wrote %s: %s, %d tensors, %llu parameters, %s, tokenizer %s, %.1f MB in %.1f s\n",
        o->out.c_str(), s->arch.c_str(), s->n_tensors, static_cast<unsigned long long>(s->n_params),
        o->convert.type.c_str(), s->tokenizer.c_str(), s->file_bytes / 1e6, secs);
  });
}

}  // namespace swarm::cli
