#include "engine/hf_vocab.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/json_file.h"
#include "engine/pretokenizer.h"
#include "engine/tokenizer.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// "<s>" or {"content": "<s>", ...}.
std::optional<std::string> token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// convert_hf_to_gguf.py's does_token_look_special: added tokens some models
// forget to mark special.
bool looks_special(const std::string& t) {
  const auto wrapped = [&](const std::string& open, const std::string& close) {
    return t.size() >= open.size() + close.size() && t.compare(0, open.size(), open) == 0 &&
           t.compare(t.size() - close.size(), close.size(), close) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") || wrapped("<unused", ">");
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
    s.replace(i, from.size(), to);
  return s;
}

// Text that tells the supported pre-tokenizers apart: contractions in both
// cases, digit runs, whitespace runs and newlines, letters of several scripts
// and case changes, emoji and punctuation runs (after llama.cpp's chktxt).
const char* kCheckText =
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\xf0\x9f\x9a\x80 (normal) "
    "\xf0\x9f\x98\xb6\xe2\x80\x8d"
    "\xf0\x9f\x8c\xab\xef\xb8\x8f (multiple emojis concatenated) \xe2\x9c\x85 3 33 333 3333 33333 "
    "333333 "
    "3333333 3.3 3..3 3...3 \xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8"
    "apple\xe5\xb7\xa5\xe4\xbd\x9c"
    "1314151\xe5\xa4\xa9 "
    "------======= \xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 "
    "''''''```````\"\"\"\"......!!!!!!?????? "
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? "
    "We'Ve a'lL "
    "HelloWorld camelCase ALLCAPS x/y/z\r\n\r\nend";

// The GGUF pre-tokenizer names the engine supports, in order of preference.
const char* const kPreNames[] = {"gpt-2", "llama-bpe", "qwen2", "tekken", "gpt-4o", "smollm"};

std::vector<std::string> split(const std::vector<std::string>& regexes, const std::string& text) {
  Result<std::unique_ptr<PreTokenizer>> pre = PreTokenizer::Create(regexes);
  if (!pre.ok()) return {};
  std::vector<std::string> pieces;
  for (std::string_view p : (*pre)->split(text)) pieces.emplace_back(p);
  return pieces;
}

// A name fits when its regexes split the check text into the same words and
// the whole tokenizer, as the GGUF loader will rebuild it under that name,
// gives the same ids (a small vocabulary may hide a different split in the
// ids alone; ignore_merges or a prefix space show only in the ids).
Result<std::string> detect_pre(const TokenizerSpec& spec, const std::string& what) {
  Result<std::unique_ptr<Tokenizer>> own = Tokenizer::Create(spec);
  if (!own.ok()) return Status::Corruption(what + ": " + own.status().message());
  const std::vector<int32_t> want_ids = (*own)->encode(kCheckText, false, false);
  const std::vector<std::string> want_words = split(spec.pre_regexes, kCheckText);
  std::string tried;
  for (const char* name : kPreNames) {
    TokenizerSpec s = spec;
    s.pre_regexes = *PreTokenizer::RegexesFor(name);
    s.ignore_merges = std::string(name) == "llama-bpe";
    s.bpe_add_prefix_space = false;
    const std::vector<std::string> words = split(s.pre_regexes, kCheckText);
    Result<std::unique_ptr<Tokenizer>> t = Tokenizer::Create(std::move(s));
    if (t.ok() && !words.empty() && words == want_words &&
        (*t)->encode(kCheckText, false, false) == want_ids)
      return std::string(name);
    tried += (tried.empty() ? "" : ", ") + std::string(name);
  }
  return Status::Unsupported(
      what + ": its pre-tokenizer splits text unlike every one GGUF readers know (" + tried + ")");
}

Status gpt2_vocab(const TokenizerSpec& spec, const std::string& what, GgufVocab* v) {
  v->model = "gpt2";
  Result<std::string> pre = detect_pre(spec, what);
  if (!pre.ok()) return pre.status();
  v->pre = *pre;
  v->tokens = spec.tokens;
  v->token_type.resize(spec.tokens.size());
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    TokenType t = spec.types.empty() ? TokenType::kNormal : spec.types[i];
    if (t == TokenType::kUserDefined) {
      if (looks_special(v->tokens[i])) {
        t = TokenType::kControl;
      } else {
        v->tokens[i] = replace_all(v->tokens[i], "\xe2\x96\x81", " ");  // pre-normalized "▁"
      }
    }
    v->token_type[i] = static_cast<int32_t>(t);
  }
  // A space inside a merge part (tokenizers' list format allows it) is written
  // as U+0120, so that "a b" stays unambiguous.
  for (const auto& [a, b] : spec.merges)
    v->merges.push_back(replace_all(a, " ", "\xc4\xa0") + " " + replace_all(b, " ", "\xc4\xa0"));
  return Status::Ok();
}

// convert_hf_to_gguf.py's _create_vocab_sentencepiece: the pieces as the model
// file has them (user-defined pieces count as normal), then
// tokenizer_config.json's added tokens on ids the model leaves unused.
Status spm_vocab(const fs::path& dir, const json& tok_cfg, GgufVocab* v) {
  Result<TokenizerSpec> sp = read_sentencepiece_model((dir / "tokenizer.model").string());
  if (!sp.ok()) return sp.status();
  v->model = "llama";
  v->pre = "default";
  v->tokens = sp->tokens;
  v->scores = sp->scores;
  for (TokenType t : sp->types)
    v->token_type.push_back(
        static_cast<int32_t>(t == TokenType::kUserDefined ? TokenType::kNormal : t));
  if (!sp->add_space_prefix) v->add_space_prefix = false;
  if (auto it = tok_cfg.find("added_tokens_decoder"); it != tok_cfg.end() && it->is_object()) {
    for (const auto& [key, t] : it->items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      const std::optional<std::string> content = token_content(t);
      if (end == key.c_str() || *end != '\0' || id < 0 || !content) continue;
      const size_t i = static_cast<size_t>(id);
      if (i < v->tokens.size() && v->token_type[i] != static_cast<int32_t>(TokenType::kUnused))
        continue;
      if (i >= v->tokens.size()) {
        if (i > (1u << 24)) continue;
        for (size_t k = v->tokens.size(); k <= i; ++k) {
          v->tokens.push_back("[PAD" + std::to_string(k) + "]");
          v->scores.push_back(-10000.0f);
          v->token_type.push_back(static_cast<int32_t>(TokenType::kUnused));
        }
      }
      const bool special = (t.is_object() && t.value("special", false)) || looks_special(*content);
      v->tokens[i] = special ? *content : replace_all(*content, "\xe2\x96\x81", " ");
      v->token_type[i] =
          static_cast<int32_t>(special ? TokenType::kControl : TokenType::kUserDefined);
      v->scores[i] = -1000.0f;
    }
  }
  return Status::Ok();
}

// gguf-py's SpecialVocab: which ids are special and what the tokenizer adds.
void special_tokens(const json& tok_json, const json& tok_cfg, const json& model_cfg,
                    GgufVocab* v) {
  std::map<std::string, int32_t> added;
  if (auto it = tok_json.find("added_tokens"); it != tok_json.end() && it->is_array())
    for (const json& t : *it)
      if (t.is_object() && t.contains("id") && t["id"].is_number_integer() &&
          t.contains("content") && t["content"].is_string())
        added.emplace(t["content"].get<std::string>(), t["id"].get<int32_t>());
  const auto cfg_token = [&](const char* key) -> std::optional<std::string> {
    auto it = tok_cfg.find(key);
    return it == tok_cfg.end() ? std::nullopt : token_content(*it);
  };

  // A post-processor template that starts with BOS adds it, one that ends
  // with EOS adds that.
  std::vector<json> procs;
  if (auto post = tok_json.find("post_processor"); post != tok_json.end() && post->is_object()) {
    if (post->contains("processors") && (*post)["processors"].is_array()) {
      for (const json& p : (*post)["processors"]) procs.push_back(p);
    } else {
      procs.push_back(*post);
    }
  }
  for (const json& p : procs) {
    if (!p.is_object() || p.value("type", "") != "TemplateProcessing") continue;
    const json single = p.value("single", json::array());
    if (!single.is_array() || single.size() < 2) continue;
    const auto special_id = [](const json& item) -> std::optional<std::string> {
      if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].is_object())
        return std::nullopt;
      return token_content(item["SpecialToken"].value("id", json()));
    };
    if (auto first = special_id(single.front())) v->add_bos = first == cfg_token("bos_token");
    if (auto last = special_id(single.back())) v->add_eos = last == cfg_token("eos_token");
  }

  struct Kind {
    const char* name;
    int32_t* id;
    std::optional<bool>* add;
  };
  std::optional<bool> add_unused;
  const Kind kinds[] = {{"bos", &v->bos, &v->add_bos},
                        {"eos", &v->eos, &v->add_eos},
                        {"unk", &v->unk, &add_unused},
                        {"sep", &v->sep, &add_unused},
                        {"pad", &v->pad, &add_unused}};
  const int32_t n = static_cast<int32_t>(v->tokens.size());
  for (const Kind& k : kinds) {
    const std::string key = k.name;
    if (auto it = tok_cfg.find("add_" + key + "_token"); it != tok_cfg.end() && it->is_boolean())
      *k.add = it->get<bool>();
    if (auto content = cfg_token((key + "_token").c_str())) {
      auto a = added.find(*content);
      if (a != added.end() && a->second >= 0 && a->second < n) *k.id = a->second;
    }
    if (*k.id < 0) {
      auto it = model_cfg.find(key + "_token_id");
      if (it != model_cfg.end() && it->is_number_integer()) {
        const int64_t id = it->get<int64_t>();
        if (id >= 0 && id < n) *k.id = static_cast<int32_t>(id);
      }
    }
  }
}

Status chat_templates(const fs::path& dir, const json& tok_cfg, GgufVocab* v) {
  json tmpl = tok_cfg.value("chat_template", json());
  if (tmpl.is_null()) {
    std::error_code ec;
    if (fs::is_regular_file(dir / "chat_template.jinja", ec)) {
      Result<std::string> text = read_side_file(dir / "chat_template.jinja");
      if (!text.ok()) return text.status();
      tmpl = *text;
    } else {
      Result<json> j = read_optional_json_object(dir / "chat_template.json");
      if (!j.ok()) return j.status();
      tmpl = j->value("chat_template", json());
    }
  }
  if (tmpl.is_string()) {
    v->chat_template = tmpl.get<std::string>();
  } else if (tmpl.is_array()) {
    for (const json& t : tmpl) {
      if (!t.is_object() || !t.contains("name") || !t.contains("template") ||
          !t["name"].is_string() || !t["template"].is_string())
        return Status::Corruption(
            (dir / "tokenizer_config.json").string() +
            ": chat_template list entries must be {\"name\", \"template\"} strings");
      std::string name = t["name"].get<std::string>();
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      if (name == "default") {
        v->chat_template = t["template"].get<std::string>();
      } else {
        v->named_chat_templates.emplace_back(name, t["template"].get<std::string>());
      }
    }
  } else if (!tmpl.is_null()) {
    return Status::Corruption((dir / "tokenizer_config.json").string() +
                              ": chat_template is neither a string nor a list");
  }
  return Status::Ok();
}

Result<GgufVocab> read(const fs::path& dir, int n_vocab) {
  const std::string dir_str = dir.string();
  Result<json> tok_cfg = read_optional_json_object(dir / "tokenizer_config.json");
  if (!tok_cfg.ok()) return tok_cfg.status();
  Result<json> model_cfg = read_optional_json_object(dir / "config.json");
  if (!model_cfg.ok()) return model_cfg.status();

  // The engine's own reading decides the kind: a byte-level tokenizer.json,
  // else tokenizer.model.
  Result<TokenizerSpec> spec = read_hf_tokenizer_spec(dir_str);
  if (!spec.ok()) return spec.status();
  GgufVocab v;
  json tok_json = json::object();
  if (spec->kind == TokenizerKind::kBpe) {
    Result<json> tj = read_optional_json_object(dir / "tokenizer.json");
    if (!tj.ok()) return tj.status();
    tok_json = std::move(tj).value();
    SWARM_RETURN_IF_ERROR(gpt2_vocab(*spec, (dir / "tokenizer.json").string(), &v));
  } else {
    SWARM_RETURN_IF_ERROR(spm_vocab(dir, *tok_cfg, &v));
  }
  if (static_cast<int64_t>(v.tokens.size()) > n_vocab)
    return Status::InvalidArgument(
        dir_str + ": the tokenizer has " + std::to_string(v.tokens.size()) +
        " tokens but config.json's vocab_size is " + std::to_string(n_vocab));
  for (size_t i = v.tokens.size(); i < static_cast<size_t>(n_vocab); ++i) {
    v.tokens.push_back("[PAD" + std::to_string(i) + "]");
    v.token_type.push_back(static_cast<int32_t>(TokenType::kUnused));
    if (!v.scores.empty()) v.scores.push_back(-10000.0f);
  }
  special_tokens(tok_json, *tok_cfg, *model_cfg, &v);
  SWARM_RETURN_IF_ERROR(chat_templates(dir, *tok_cfg, &v));
  return v;
}

}  // namespace

Result<GgufVocab> read_hf_vocab(const std::string& dir, int n_vocab) {
  // nlohmann's typed getters throw on a field of the wrong type.
  try {
    return read(fs::path(dir), n_vocab);
  } catch (const std::exception& e) {
    return Status::Corruption(dir + ": " + e.what());
  }
}

}  // namespace swarm
