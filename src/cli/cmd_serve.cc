// swarm serve -m MODEL [--listen HOST:PORT] [-t N] [-c CTX] [-n N] [--chat-template NAME]
//             [--model-name NAME ...] [--parallel N] [--kv-memory BYTES] [--max-queue N]
//             [--queue-timeout S] [--api-keys FILE] [HTTP limits: doc/http-api.md]
// One model in this process behind the OpenAI-compatible HTTP API, like
// llama-server: concurrent requests are batched. Prints "listening on
// HOST:PORT" once connections are accepted; SIGINT or SIGTERM stops it. With
// --api-keys, requests need one of the file's keys (401 otherwise); nothing is
// charged, as no node does the work.
#include <cstdio>

#include "api/openai_server.h"
#include "cli/api_serving.h"
#include "cli/common.h"
#include "cli/serving_metrics.h"
#include "engine/chat_template.h"
#include "engine/kv_cache.h"
#include "engine/tokenizer.h"
#include "net/model_id.h"
#include "pipeline/local_backend.h"

namespace swarm::cli {
namespace {

struct ServeOptions {
  std::string model, listen = "127.0.0.1:8080", chat_template, kv_memory, api_keys;
  std::vector<std::string> names;
  int threads = 0, ctx = 0, n_predict = -1, parallel = 64, max_queue = 256;
  double queue_timeout_s = 60, slowdown = 1;
  bool no_mmap = false;
  std::string device;
  HttpFlags http;
};

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve a model on this machine over an OpenAI-compatible HTTP API");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--listen", o->listen,
                  "HOST:PORT to listen on; port 0 picks a free one (default 127.0.0.1:8080)");
  cmd->add_flag("--no-mmap", o->no_mmap, kNoMmapHelp);
  cmd->add_option("--device", o->device, kDeviceHelp);
  cmd->add_option("-t,--threads", o->threads, "Kernel threads (default: all cores)");
  cmd->add_option("-c,--ctx-size", o->ctx,
                  "Context length per request (default: the model's, at most 8192)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("-n,--n-predict", o->n_predict,
                  "Tokens to generate when a request gives no max_tokens (default -1: until the "
                  "context is full)")
      ->check(CLI::Range(-1, 1 << 24));
  cmd->add_option("--chat-template", o->chat_template,
                  "Override the template family (" + chat_family_names() + ")");
  cmd->add_option("--model-name", o->names,
                  "Name to serve the model under (repeatable; default: the file's name)");
  cmd->add_option("--parallel", o->parallel, "Requests batched together at most (default 64)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--kv-memory", o->kv_memory,
                  "KV cache budget over the requests in the batch, e.g. 2G (default: no limit; "
                  "each request reserves its prompt + max_tokens)");
  cmd->add_option("--max-queue", o->max_queue,
                  "Requests that may wait for a batch slot or KV memory; more get 503 (default 256)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--queue-timeout", o->queue_timeout_s,
                  "Seconds a request may wait for room before a 503 (default 60)")
      ->check(CLI::Range(0.001, 1e6));
  cmd->add_option("--api-keys", o->api_keys,
                  "File of API keys, one a line: KEY CREDITS [NAME] (doc/trust.md); requests "
                  "without one of them get 401. Credits are not charged here");
  cmd->add_option("--slowdown", o->slowdown,
                  "Make compute take F times as long, F >= 1 (emulates a slower machine)")
      ->check(CLI::Range(1.0, 1000.0));
  add_http_flags(cmd, o->http);
  cmd->callback([o] {
    keep_freed_memory_for_reuse();
    auto hp = parse_host_port(o->listen);
    if (!hp.ok()) fail("--listen: " + hp.status().message());
    uint64_t kv_memory = 0;
    if (!o->kv_memory.empty()) {
      auto kv = parse_bytes(o->kv_memory);
      if (!kv.ok()) fail("--kv-memory: " + kv.status().message());
      kv_memory = *kv;
    }
    const sigset_t signals = block_stop_signals();

    LoadOptions lo;
    lo.no_mmap = o->no_mmap;
    lo.context = o->ctx;
    auto model = load_model_on(o->model, lo, o->device);
    auto tok = load_tokenizer(o->model, model->config().n_vocab);
    if (!model->has_embed() || !model->has_head())
      fail(o->model + ": serve needs the embedding and the output head");

    // The weights' content hash (cached beside the file after the first
    // time): /props names it, so skill providers can tell who shares weights.
    auto content_id = net::model_content_id(model->source());
    if (!content_id.ok()) fail(o->model + ": " + content_id.status().message());

    ApiOptions api;
    api.model_id = *content_id;
    api.model_names =
        o->names.empty() ? std::vector<std::string>{default_model_name(o->model)} : o->names;
    api.tokenizer = tok.get();
    api.chat_template = model_chat_template(model->source());
    api.chat_template_override = o->chat_template;
    api.default_max_tokens = o->n_predict;
    api.http = http_limits(o->http);
    apply_api_flags(o->http, &api);
    api.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    std::unique_ptr<trust::Ledger> ledger;
    if (!o->api_keys.empty()) {
      ledger = open_ledger_with_keys(":memory:", o->api_keys);
      api.ledger = ledger.get();
      api.charge = false;
    }

    LocalBackend backend(
        std::move(model),
        LocalBackendOptions{.threads = o->threads,
                            .context_length = o->ctx,
                            .max_sequences = o->parallel,
                            .kv_memory_bytes = kv_memory,
                            .max_queue = o->max_queue,
                            .queue_timeout = std::chrono::milliseconds(
                                static_cast<int64_t>(o->queue_timeout_s * 1000 + 0.5)),
                            .grammar_vocab = GrammarVocab::from_tokenizer(*tok),
                            .slowdown = o->slowdown});
    if (kv_memory > 0) {
      const Model& m = backend.model();
      const uint64_t per_token = KvCache::bytes_for(m.config().n_layer, m.kv_dim(), 1);
      const uint64_t tokens = kv_memory / per_token;
      std::fprintf(stderr,
                   "KV budget %llu bytes: %llu tokens in all (a request reserves its prompt + "
                   "max_tokens)%s\n",
                   static_cast<unsigned long long>(kv_memory),
                   static_cast<unsigned long long>(tokens),
                   tokens < static_cast<uint64_t>(backend.context_length())
                       ? "; less than one full context: requests must give max_tokens (or serve "
                         "with -n)"
                       : "");
    }
    api.metrics = [&backend, kv_memory] { return local_backend_metrics(backend, kv_memory); };
    serve_until_signal(api, backend, o->listen, signals);
  });
}

}  // namespace swarm::cli
