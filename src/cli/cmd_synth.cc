// swarm synth --shape NAME --type TYPE -o file.gguf [--seed S]
#include <chrono>
#include <cstdio>

#include "cli/common.h"
#include "engine/synth.h"

namespace swarm::cli {

void register_synth(CLI::App& app) {
  struct Opts {
    std::string shape, type = "Q8_0", out;
    uint64_t seed = 1;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  std::string names;
  for (const SynthShape& s : synth_shapes()) names += (names.empty() ? "" : ", ") + s.name;
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight GGUF with a real model's exact shapes");
  cmd->add_option("--shape", o->shape, "One of: " + names)->required();
  cmd->add_option("--type", o->type, "F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M or Q6_K (default Q8_0)");
  cmd->add_option("-o,--output", o->out, "Output .gguf path")->required();
  cmd->add_option("--seed", o->seed, "Weights are a function of the seed alone, whatever the type (default 1)");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->callback([o, names] {
    const SynthShape* shape = find_synth_shape(o->shape);
    if (shape == nullptr) fail("--shape " + o->shape + " is unknown (choose one of: " + names + ")");
    ThreadPool pool(o->threads);
    const auto t0 = std::chrono::steady_clock::now();
    check(synthesize_gguf(*shape, o->type, o->seed, o->out, pool, /*progress=*/true));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "wrote %s (%s, %s, seed %llu) in %.1f s\n", o->out.c_str(), shape->name.c_str(),
                 o->type.c_str(), static_cast<unsigned long long>(o->seed), s);
  });
}

}  // namespace swarm::cli
