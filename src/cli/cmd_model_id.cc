// swarm model-id -m MODEL [--layers A:B --proof] [--verify PROOF.json] [--no-cache]
// Prints the model's id (the Merkle root over its header and every tensor, see
// doc/protocol.md, "Model id") and its layout id as one JSON line, with how many
// bytes were hashed and how fast (0 when the cache beside the model answered).
// With --proof, prints instead the proof that the tensors of layers A:B (all
// layers by default) belong to the id; with --verify, checks such a proof
// against this model's id and exits non-zero if it fails.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/common.h"
#include "engine/model_loader.h"
#include "net/model_id.h"

namespace swarm::cli {

void register_model_id(CLI::App& app) {
  struct Opts {
    std::string model, layers, verify;
    bool proof = false, no_cache = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("model-id", "Print a model's id (a hash of its weights) and layout id");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--layers", o->layers, "A:B, the layers --proof covers (default: all)");
  cmd->add_flag("--proof", o->proof, "Print the JSON proof that layers A:B belong to the id");
  cmd->add_option("--verify", o->verify,
                  "Check the JSON proof in this file against the model's id");
  cmd->add_flag("--no-cache", o->no_cache,
                "Hash the weights even if the cache file beside the model is valid");
  cmd->add_option("-t,--threads", o->threads, "Hashing threads (default: cores, at most 8)")
      ->check(CLI::Range(0, 256));
  cmd->callback([o] {
    // Logs (the hashing speed) go to stderr; stdout carries only the answer.
    spdlog::set_default_logger(spdlog::stderr_color_mt("model-id"));
    auto source = open_model_source(o->model);
    check(source.status());
    net::ModelIdOptions mo;
    mo.use_cache = !o->no_cache;
    mo.threads = o->threads;
    const auto t0 = std::chrono::steady_clock::now();
    auto id = net::compute_model_identity(*source, mo);
    check(id.status());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o->verify.empty()) {
      std::ifstream in(o->verify, std::ios::binary);
      if (!in) fail("--verify: cannot read " + o->verify);
      std::stringstream text;
      text << in.rdbuf();
      auto proof = net::parse_layer_proof(text.str());
      check(proof.status());
      check(net::verify_layer_proof(*proof, id->ids.model_id));
      std::printf("proof of layers %d:%d (%zu tensors) verifies against model id %s\n",
                  proof->first_layer, proof->last_layer, proof->tensors.size(),
                  id->ids.model_id.c_str());
      return;
    }
    if (o->proof) {
      std::pair<int, int> range{0, source->config.n_layer};
      if (!o->layers.empty()) {
        auto r = parse_layer_range(o->layers);
        if (!r.ok()) fail("--layers: " + r.status().message());
        range = *r;
      }
      auto proof = net::prove_layers(*id, source->config, range.first, range.second);
      if (!proof.ok()) fail("--layers: " + proof.status().message());
      std::printf("%s\n", net::layer_proof_json(*proof).c_str());
      return;
    }
    if (!o->layers.empty()) fail("--layers: only with --proof");
    const nlohmann::json j = {
        {"model", o->model},
        {"model_id", id->ids.model_id},
        {"layout_id", id->ids.layout_id},
        {"tensors", id->tensors.size()},
        {"from_cache", id->from_cache},
        {"cache", id->cache_path},
        {"bytes_hashed", id->bytes_hashed},
        {"seconds", seconds},
        {"mb_per_s", id->bytes_hashed > 0 && seconds > 0
                         ? static_cast<double>(id->bytes_hashed) / 1e6 / seconds
                         : 0.0},
    };
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  });
}

}  // namespace swarm::cli
