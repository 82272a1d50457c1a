// A model's prefill and decode speed on each compute backend, one JSON line per
// device: what moving the layers to a GPU (--device vulkan) buys over the CPU on
// this machine. Decode is greedy on the device's own logits, one token a step
// through Model::forward (embed, every layer in one run_layers, head), as a
// single-stage node runs it.
//
// Usage: backend_bench --model PATH [--devices cpu,vulkan] [--prompt 64]
//                      [--decode 32] [--threads N]
// On lavapipe (Mesa's software device) the Vulkan numbers are only for the record.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/model.h"

namespace swarm {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

nlohmann::json bench(const std::string& path, const std::string& device, int prompt_len,
                     int decode, int threads) {
  nlohmann::json j = {{"bench", "backend"}, {"model", path}, {"device", device}};
  LoadOptions o;
  o.device = device;
  const double t_load = now();
  auto m = Model::Load(path, o);
  if (!m.ok()) {
    j["error"] = m.status().ToString();
    return j;
  }
  const Model& model = **m;
  j["backend"] = model.backend().name();
  j["load_s"] = now() - t_load;
  ThreadPool pool(threads);
  const int V = model.config().n_vocab;
  std::vector<int32_t> prompt(prompt_len);
  for (int i = 0; i < prompt_len; ++i) prompt[i] = (7 + 31 * i) % V;
  // A warm-up run first: pipelines compile, caches and buffers are first touched.
  for (int rep = 0; rep < 2; ++rep) {
    auto cache = model.new_cache(prompt_len + decode);
    const double t0 = now();
    auto logits = model.forward(prompt, *cache, pool);
    const double t1 = now();
    if (!logits.ok()) {
      j["error"] = logits.status().ToString();
      return j;
    }
    std::vector<int32_t> next = {static_cast<int32_t>(
        std::max_element(logits->end() - V, logits->end()) - (logits->end() - V))};
    for (int i = 0; i < decode; ++i) {
      auto l = model.forward(next, *cache, pool);
      if (!l.ok()) {
        j["error"] = l.status().ToString();
        return j;
      }
      next[0] = static_cast<int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
    }
    const double t2 = now();
    j["prompt_tokens"] = prompt_len;
    j["prefill_tok_s"] = prompt_len / (t1 - t0);
    j["decode_tokens"] = decode;
    j["decode_tok_s"] = decode / (t2 - t1);
  }
  return j;
}

int run(int argc, char** argv) {
  std::string model;
  std::vector<std::string> devices = {"cpu", "vulkan"};
  int prompt_len = 64, decode = 32;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) model = argv[++i];
    else if (a == "--devices" && i + 1 < argc) devices = split(argv[++i]);
    else if (a == "--prompt" && i + 1 < argc) prompt_len = std::clamp(std::stoi(argv[++i]), 1, 32768);
    else if (a == "--decode" && i + 1 < argc) decode = std::clamp(std::stoi(argv[++i]), 1, 32768);
    else if (a == "--threads" && i + 1 < argc) threads = std::clamp(std::stoi(argv[++i]), 1, 1024);
    else model.clear(), i = argc;
  }
  if (model.empty()) {
    std::fprintf(stderr,
                 "usage: %s --model PATH [--devices cpu,vulkan] [--prompt 64] [--decode 32] "
                 "[--threads N]\n",
                 argv[0]);
    return 2;
  }
  for (const std::string& d : devices)
    std::printf("%s\n", bench(model, d, prompt_len, decode, threads).dump().c_str());
  return 0;
}

}  // namespace
}  // namespace swarm

int main(int argc, char** argv) { return swarm::run(argc, argv); }
