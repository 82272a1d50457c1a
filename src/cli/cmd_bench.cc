// swarm bench -m MODEL [-t N] [--prompt 128] [--gen 64] [--json]
// Prefill and decode tokens/s, and decode's weight traffic as a fraction of the
// machine's measured memory read bandwidth (the roofline for a memory-bound step).
// swarm bench -m MODEL --batch-sizes 1,2,4,8,16 [--prefill-chunks 16,64] [--json]
// Instead: a stage's compute time per layer as a function of batch size, t(b),
// the points the simulator takes for this machine (cli/batch_timing.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cli/batch_timing.h"
#include "cli/common.h"
#include "engine/matmul.h"
#include "engine/membw.h"
#include "engine/progress.h"

namespace swarm::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// One line per point: JSON, or a table row.
void print_batch_timings(const Model& model, ThreadPool& pool, const std::vector<int>& batches,
                         const std::vector<int>& chunks, int context, int rounds, bool json) {
  const ModelConfig& c = model.config();
  const auto timings = measure_batch_timings(model, pool, batches, chunks, context, rounds);
  if (!json) std::printf("%-8s %6s %14s %12s %12s\n", "kind", "tokens", "layer_ms", "head_ms", "embed_ms");
  for (const BatchTiming& t : timings) {
    const char* kind = t.kind == BatchTiming::Kind::kDecode ? "decode" : "prefill";
    if (json)
      std::printf(
          "{\"bench\":\"batch_time\",\"model\":\"%s\",\"type\":\"%s\",\"threads\":%d,"
          "\"kind\":\"%s\",\"tokens\":%d,\"context\":%d,\"n_layer\":%d,\"layer_s\":%.9f,"
          "\"head_s\":%.9f,\"embed_s\":%.9f}\n",
          c.name.c_str(), model.main_type().c_str(), pool.size(), kind, t.tokens, context, c.n_layer,
          t.layer_seconds, t.head_seconds, t.embed_seconds);
    else
      std::printf("%-8s %6d %14.4f %12.4f %12.4f\n", kind, t.tokens, 1e3 * t.layer_seconds,
                  1e3 * t.head_seconds, 1e3 * t.embed_seconds);
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  struct Opts {
    std::string model;
    int threads = 0, prompt = 128, gen = 64, reps = 3;
    bool json = false, no_mmap = false;
    std::string device;
    std::vector<int> batch_sizes, prefill_chunks;
    int context = 64;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode speed against memory bandwidth");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_option("-p,--prompt", o->prompt, "Prompt tokens for prefill (default 128)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-n,--gen", o->gen, "Tokens to decode (default 64)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-r,--repetitions", o->reps, "Runs; the best is reported (default 3); with --batch-sizes, rounds (at least 5), medians")->check(CLI::Range(1, 100));
  cmd->add_option("--batch-sizes", o->batch_sizes,
                  "Measure t(b) instead: per-layer time of a decode step of b sequences, for each b")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  cmd->add_option("--prefill-chunks", o->prefill_chunks,
                  "With --batch-sizes: also per-layer time of one prompt chunk of p tokens, for each p")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--context", o->context, "With --batch-sizes: cached positions per sequence (default 64)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("--json", o->json, "Print one JSON line");
  cmd->add_flag("--no-mmap", o->no_mmap, kNoMmapHelp);
  cmd->add_option("--device", o->device, kDeviceHelp);
  cmd->callback([o] {
    LoadOptions lo;
    lo.no_mmap = o->no_mmap;
    auto model = load_model_on(o->model, lo, o->device);
    const ModelConfig& c = model->config();
    ThreadPool pool(o->threads);
    if (!o->batch_sizes.empty()) {
      print_batch_timings(*model, pool, o->batch_sizes, o->prefill_chunks, o->context,
                          std::max(o->reps, 5), o->json);
      return;
    }
    // A bandwidth pass after every decode step: on a shared machine bandwidth drifts
    // by the second, so the fraction is the median, over steps, of a step's weight
    // traffic over the pass right after it. (The best run against the best pass, as
    // this once reported, compares a quiet moment of the probe with a whole run of
    // decode, and moved by a quarter from one minute to the next.)
    // A second pass, over the weights' own pages, gives the roofline for the memory
    // decode actually reads: a file's cached pages can read a quarter slower than
    // fresh memory (see membw.h), and that is the page cache's doing, not decode's.
    ReadBandwidthProbe probe(pool);
    probe.measure(2);
    const double bytes = static_cast<double>(model->weight_bytes_per_token());
    const auto weight_spans = model->mapped_spans();
    std::vector<double> passes, pair_ratios, weight_passes, weight_ratios;

    std::mt19937 rng(42);
    std::vector<int32_t> prompt(o->prompt);
    for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % c.n_vocab);
    const int d = c.n_embd;
    double best_prefill = 0, best_decode = 0;
    std::vector<float> hidden(static_cast<size_t>(o->prompt) * d), logits(c.n_vocab);
    // On a terminal: which run of how many, and its steps (a prefill, then each
    // decoded token), updated outside the timed spans.
    const auto steps_per_run = static_cast<uint64_t>(o->gen) + 1;
    ProgressBar bar("bench run 1/" + std::to_string(o->reps), steps_per_run * o->reps, stderr,
                    "steps");
    uint64_t steps = 0;
    for (int rep = 0; rep < o->reps; ++rep) {
      if (rep > 0)
        bar.set_label("bench run " + std::to_string(rep + 1) + "/" + std::to_string(o->reps));
      auto cache = model->new_cache(o->prompt + o->gen);
      // Prefill: the whole prompt as one batch; logits only for its last token.
      auto t0 = std::chrono::steady_clock::now();
      check(model->embed(prompt.data(), o->prompt, hidden.data()));
      check(model->run_layers(hidden.data(), {{cache.get(), o->prompt}}, 0, c.n_layer, pool));
      check(model->head(hidden.data() + static_cast<size_t>(o->prompt - 1) * d, 1, logits.data(), pool));
      best_prefill = std::max(best_prefill, o->prompt / seconds_since(t0));
      bar.update(++steps);
      // Decode: one token at a time, each through every layer and the head.
      double decode_seconds = 0;
      int32_t tok = prompt.back();
      for (int i = 0; i < o->gen; ++i) {
        t0 = std::chrono::steady_clock::now();
        check(model->embed(&tok, 1, hidden.data()));
        check(model->run_layers(hidden.data(), {{cache.get(), 1}}, 0, c.n_layer, pool));
        check(model->head(hidden.data(), 1, logits.data(), pool));
        tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        const double step = seconds_since(t0);
        decode_seconds += step;
        passes.push_back(probe.pass());
        pair_ratios.push_back(bytes / step / passes.back());
        weight_passes.push_back(read_pass(pool, weight_spans));
        weight_ratios.push_back(bytes / step / weight_passes.back());
        bar.update(++steps);
      }
      best_decode = std::max(best_decode, o->gen / decode_seconds);
    }
    bar.finish();
    const double bw = median(passes);
    const double decode_bw = best_decode * bytes;
    const double fraction = median(pair_ratios);
    const double weights_bw = median(weight_passes), weights_fraction = median(weight_ratios);
    // Weights on 4 KiB pages decode markedly slower; say how many were not.
    const double huge_share = static_cast<double>(model->huge_page_bytes()) / static_cast<double>(model->mapped_bytes());
    if (o->json) {
      std::printf(
          "{\"bench\":\"engine\",\"model\":\"%s\",\"type\":\"%s\",\"device\":\"%s\",\"threads\":%d,\"isa\":\"%s\","
          "\"prompt\":%d,\"gen\":%d,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,"
          "\"bytes_per_token\":%.0f,\"read_bw_gbs\":%.2f,\"read_bw_best_gbs\":%.2f,"
          "\"decode_gbs\":%.2f,\"decode_bw_fraction\":%.3f,\"decode_bw_fraction_of_best\":%.3f,"
          "\"weights_read_gbs\":%.2f,\"decode_weights_read_fraction\":%.3f,"
          "\"weights\":\"%s\",\"huge_page_share\":%.3f}\n",
          c.name.c_str(), model->main_type().c_str(), model->backend().name().c_str(), pool.size(),
          matmul_isa(), o->prompt, o->gen,
          best_prefill, best_decode, bytes, bw / 1e9, probe.best() / 1e9, decode_bw / 1e9, fraction,
          decode_bw / probe.best(), weights_bw / 1e9, weights_fraction,
          o->no_mmap ? "read" : "mmap", huge_share);
    } else {
      std::printf("model      %s (%s)\ndevice     %s\nthreads    %d (%s kernels)\n", c.name.c_str(),
                  model->main_type().c_str(), model->backend().name().c_str(),
                  pool.size(), matmul_isa());
      std::printf("prefill    %.1f tok/s (%d tokens)\n", best_prefill, o->prompt);
      std::printf("decode     %.1f tok/s (%d tokens), %.2f GB/token, %.1f GB/s\n", best_decode, o->gen, bytes / 1e9,
                  decode_bw / 1e9);
      std::printf(
          "memory     %.1f GB/s read (median of %zu passes between decode steps; best %.1f)\n",
          bw / 1e9, passes.size(), probe.best() / 1e9);
      std::printf("roofline   decode reaches %.0f%% of it (median over steps of a step's traffic\n"
                  "           against the pass after it)\n",
                  100 * fraction);
      std::printf(
          "           the weights' own pages read at %.1f GB/s; decode reaches %.0f%% of that\n",
          weights_bw / 1e9, 100 * weights_fraction);
      std::printf("weights    %s, %.0f%% on 2 MiB pages\n", o->no_mmap ? "read into memory" : "mapped", 100 * huge_share);
    }
  });
}

}  // namespace swarm::cli
