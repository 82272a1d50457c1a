// swarm generate -m MODEL (-p TEXT | --chat TEXT [--system TEXT] | --tokens IDS)
//                [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [-t N]
// Generates on this machine and streams text to stdout as it is produced; prompt
// and generation speed go to stderr afterwards.
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/common.h"
#include "engine/chat_template.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace swarm::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt, chat, system, tokens, chat_template;
  std::vector<std::string> stop;
  int n = 128, threads = 0, ctx = 0;
  int64_t seed = -1;
  bool ids = false, no_mmap = false;
  std::string device;
  SamplingParams sampling;
};

// The prompt as token ids: raw text, a chat turn rendered with the model's
// template, or ids given directly.
std::vector<int32_t> build_prompt(const GenerateOptions& o, const Model& model, const Tokenizer& tok) {
  if (!o.tokens.empty()) {
    auto t = parse_token_list(o.tokens);
    check(t.status());
    return *t;
  }
  if (o.chat.empty()) return tok.encode(o.prompt, tok.add_bos_default(), /*parse_special=*/false);
  std::string note;
  auto family = choose_chat_family(model_chat_template(model.source()), o.chat_template, &note);
  check(family.status());
  std::fprintf(stderr, "%s\n", note.c_str());
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.chat});
  const std::string bos = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
  auto text = render_chat(*family, messages, /*add_generation_prompt=*/true, bos, eos);
  check(text.status());
  // The template's own markers (<|im_start|>, [INST]) are special tokens; the
  // user's text was put inside it verbatim.
  return tok.encode(*text, tok.add_bos_default(), /*parse_special=*/true);
}

// Text as bytes: a token may decode to a NUL byte, which fputs would drop along
// with the rest of the piece.
void write_text(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

}  // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt on this machine");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  auto* p = cmd->add_option("-p,--prompt", o->prompt, "Prompt text, continued as is");
  auto* c = cmd->add_option("--chat", o->chat, "A user message, rendered with the model's chat template");
  auto* t = cmd->add_option("--tokens", o->tokens, "Prompt as comma-separated token ids");
  p->excludes(c)->excludes(t);
  c->excludes(t);
  cmd->add_option("--system", o->system, "System message for --chat")->needs(c);
  cmd->add_option("--chat-template", o->chat_template, "Override the template family (" + chat_family_names() + ")");
  cmd->add_option("-n,--n-predict", o->n, "Tokens to generate at most (default 128)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-c,--ctx-size", o->ctx, "Context length (default: the model's, at most 8192)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--temp", o->sampling.temperature, "Temperature; 0 is greedy (default 0.8)");
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k; 0 is off (default 40)");
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p; 1 is off (default 0.95)");
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p; 0 is off (default 0.05)");
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty; 1 is off (default 1)");
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "Presence penalty (default 0)");
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "Frequency penalty (default 0)");
  cmd->add_option("--seed", o->seed, "Sampling seed; -1 picks one (default -1)");
  cmd->add_option("--stop", o->stop, "Stop when this text is produced (repeatable)");
  cmd->add_flag("--ids", o->ids, "Print token ids instead of text");
  cmd->add_flag("--no-mmap", o->no_mmap, kNoMmapHelp);
  cmd->add_option("--device", o->device, kDeviceHelp);
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->callback([o] {
    LoadOptions lo;
    lo.no_mmap = o->no_mmap;
    lo.context = o->ctx;
    auto model = load_model_on(o->model, lo, o->device);
    const ModelConfig& cfg = model->config();
    auto tok = load_tokenizer(o->model, cfg.n_vocab);
    const std::vector<int32_t> prompt = build_prompt(*o, *model, *tok);
    if (prompt.empty()) fail("the prompt is empty (give -p, --chat or --tokens)");
    const int ctx = o->ctx > 0 ? o->ctx : std::min(cfg.n_ctx_train, 8192);
    if (static_cast<int>(prompt.size()) >= ctx)
      fail("the prompt is " + std::to_string(prompt.size()) + " tokens but the context holds " + std::to_string(ctx) +
           " (see -c)");
    const int n = std::min(o->n, ctx - static_cast<int>(prompt.size()));

    SamplingParams sp = o->sampling;
    sp.seed = o->seed >= 0 ? static_cast<uint64_t>(o->seed) : std::random_device{}();
    sp.stop = o->stop;
    sp.stop_tokens = tok->eog_ids();
    sp.max_tokens = n;
    check(sp.validate(cfg.n_vocab));
    Sampler sampler(sp, cfg.n_vocab);
    for (int32_t id : prompt) sampler.accept(id);  // penalties see the prompt, as llama.cpp's do
    TokenStreamDecoder decoder(*tok);
    for (int32_t id : prompt) decoder.push(id);  // so the text continues the prompt's spacing
    StopMatcher stops(sp.stop);

    ThreadPool pool(o->threads);
    auto cache = model->new_cache(ctx);
    const auto t0 = std::chrono::steady_clock::now();
    auto logits = model->forward(prompt, *cache, pool);
    check(logits.status());
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<float> last(logits->end() - cfg.n_vocab, logits->end());
    int generated = 0;
    while (!sampler.reached_max_tokens(generated)) {
      const int32_t id = sampler.sample(last.data(), static_cast<int>(prompt.size()) + generated);
      sampler.accept(id);
      ++generated;
      if (sampler.is_stop_token(id)) break;
      if (o->ids) {
        std::printf("%s%d", generated > 1 ? "," : "", id);
      } else {
        write_text(stops.push(decoder.push(id)));
        if (stops.stopped()) break;
      }
      std::fflush(stdout);
      if (sampler.reached_max_tokens(generated)) break;
      auto next = model->forward({id}, *cache, pool);
      check(next.status());
      last = std::move(next).value();
    }
    if (!o->ids && !stops.stopped()) write_text(stops.push(decoder.flush()));
    if (!o->ids) write_text(stops.flush());
    std::printf("\n");
    std::fflush(stdout);
    const auto t2 = std::chrono::steady_clock::now();
    const double tp = std::chrono::duration<double>(t1 - t0).count();
    const double tg = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr, "prompt: %zu tokens, %.1f tok/s; generation: %d tokens, %.1f tok/s\n", prompt.size(),
                 prompt.size() / tp, generated, generated > 0 ? generated / tg : 0.0);
  });
}

}  // namespace swarm::cli
