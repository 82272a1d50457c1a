// swarm tokenize -m MODEL TEXT [--no-bos] [--special]
// The token ids of TEXT, comma-separated, as the model's tokenizer gives them
// (BOS first when the model adds one). --special matches special tokens
// written in the text (<|im_start|>, <s>) as single tokens.
#include <cstdio>

#include "cli/common.h"
#include "engine/tokenizer.h"

namespace swarm::cli {

void register_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, text;
    bool no_bos = false, special = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text, comma-separated");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("text", o->text, "Text to tokenize")->required();
  cmd->add_flag("--no-bos", o->no_bos, "Do not add the BOS token even if the model adds one");
  cmd->add_flag("--special", o->special, "Match special tokens written in the text");
  cmd->callback([o] {
    auto tok = Tokenizer::Load(o->model);
    check(tok.status());
    const std::vector<int32_t> ids =
        (*tok)->encode(o->text, !o->no_bos && (*tok)->add_bos_default(), o->special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) line += ',';
      line += std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
  });
}

}  // namespace swarm::cli
