// Reading a tokenizer out of its files: GGUF's tokenizer.ggml.* metadata, a
// Hugging Face tokenizer.json, a SentencePiece tokenizer.model (a protobuf
// ModelProto, read with protobuf's CodedInputStream), and the special ids and
// add-BOS setting from tokenizer_config.json / generation_config.json /
// config.json.
#include <google/protobuf/io/coded_stream.h>

#include <cstring>
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

// ---------------------------------------------------------------- GGUF

// Byte-level BPE vocabularies that llama.cpp (llama-vocab.cpp) starts with BOS
// and tokenizes with ignore_merges (a word that is itself a token is taken
// whole) when the file does not say: Llama 3's and Mistral's Tekken, as their
// Hugging Face tokenizers do. Every other byte-level BPE vocabulary (GPT-2,
// Qwen2, ...) adds no BOS by default. Of the pre-tokenizers llama.cpp puts in
// this family, these are the ones PreTokenizer knows.
bool is_llama3_like_bpe(const std::string& pre) {
  return pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "tekken";
}

Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& f) {
  const std::string& path = f.path;
  Result<std::string> model = f.get_string("tokenizer.ggml.model");
  if (!model.ok())
    return Status::NotFound(path + ": no tokenizer (tokenizer.ggml.model is missing)");
  TokenizerSpec spec;
  if (*model == "llama") {
    spec.kind = TokenizerKind::kSpm;
  } else if (*model == "gpt2") {
    spec.kind = TokenizerKind::kBpe;
  } else if (*model == "no_vocab" || *model == "none") {
    return Status::Unsupported(path + ": the model has no vocabulary");
  } else {
    return Status::Unsupported(path + ": tokenizer.ggml.model '" + *model +
                               "' is not supported (llama and gpt2 are)");
  }

  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->type != GgufValueType::ARRAY ||
      tokens->elem_type != GgufValueType::STRING)
    return Status::Corruption(path +
                              ": tokenizer.ggml.tokens is missing or not an array of strings");
  spec.tokens = tokens->strings;
  const size_t n = spec.tokens.size();

  if (const GgufValue* v = f.find("tokenizer.ggml.scores"); v != nullptr) {
    if (v->type != GgufValueType::ARRAY || v->floats.size() != n)
      return Status::Corruption(path + ": tokenizer.ggml.scores does not have one float per token");
    spec.scores.assign(v->floats.begin(), v->floats.end());
  }
  if (const GgufValue* v = f.find("tokenizer.ggml.token_type"); v != nullptr) {
    if (v->type != GgufValueType::ARRAY || v->ints.size() != n)
      return Status::Corruption(path +
                                ": tokenizer.ggml.token_type does not have one integer per token");
    spec.types.reserve(n);
    for (int64_t t : v->ints)
      spec.types.push_back(t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kNormal);
  }
  Result<std::string> pre = f.get_string("tokenizer.ggml.pre");
  const std::string pre_name = pre.ok() ? *pre : "default";
  if (spec.kind == TokenizerKind::kBpe) {
    const GgufValue* m = f.find("tokenizer.ggml.merges");
    if (m == nullptr || m->type != GgufValueType::ARRAY || m->elem_type != GgufValueType::STRING)
      return Status::Corruption(path +
                                ": tokenizer.ggml.merges is missing or not an array of strings");
    spec.merges.reserve(m->strings.size());
    for (const std::string& s : m->strings) {
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        return Status::Corruption(path + ": merge '" + s + "' is not 'a b'");
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    }
    auto regexes = PreTokenizer::RegexesFor(pre_name);
    if (!regexes.ok()) return Status::Unsupported(path + ": " + regexes.status().message());
    spec.pre_regexes = *regexes;
    spec.ignore_merges = is_llama3_like_bpe(pre_name);
  }

  const auto get_id = [&](const char* key, int32_t def) -> int32_t {
    Result<int64_t> v = f.get_int(std::string("tokenizer.ggml.") + key);
    if (!v.ok()) return def;
    return *v >= 0 && static_cast<uint64_t>(*v) < n ? static_cast<int32_t>(*v) : -1;
  };
  const auto get_bool = [&](const char* key, bool def) -> bool {
    const GgufValue* v = f.find(std::string("tokenizer.ggml.") + key);
    return v != nullptr && v->is_integer() ? v->i != 0 : def;
  };
  const bool spm = spec.kind == TokenizerKind::kSpm;
  // llama.cpp's defaults for SentencePiece vocabularies: <unk> 0, <s> 1, </s> 2.
  spec.bos = get_id("bos_token_id", spm ? 1 : -1);
  spec.eos = get_id("eos_token_id", spm ? 2 : -1);
  spec.unk = get_id("unknown_token_id", spm ? 0 : -1);
  spec.eot = get_id("eot_token_id", -1);
  spec.eom = get_id("eom_token_id", -1);
  spec.pad = get_id("padding_token_id", -1);
  // Without tokenizer.ggml.add_bos_token, llama.cpp's default for the
  // vocabulary: SentencePiece adds BOS, byte-level BPE only in the Llama 3
  // family. (llama.cpp also has WordPiece, which adds [CLS], Unigram/T5, which
  // adds EOS instead, and RWKV, which adds neither; those vocabularies are
  // refused above.) A BPE file naming no BOS id gets none: llama.cpp would
  // fall back to id 11 (GPT-2's ","), which is not copied here.
  spec.add_bos = get_bool("add_bos_token", spm || is_llama3_like_bpe(pre_name));
  spec.add_space_prefix = get_bool("add_space_prefix", spm);
  return Tokenizer::Create(std::move(spec));
}

// ---------------------------------------------------------------- HF files

// tokenizer_config.json writes special tokens as "<s>" or {"content": "<s>", ...}.
std::optional<std::string> token_content(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return std::nullopt;
}

std::vector<int32_t> id_list(const json& cfg, const char* key) {
  std::vector<int32_t> ids;
  auto it = cfg.find(key);
  if (it == cfg.end()) return ids;
  if (it->is_number_integer()) ids.push_back(it->get<int32_t>());
  if (it->is_array())
    for (const json& v : *it)
      if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  return ids;
}

int32_t find_text(const TokenizerSpec& spec, const std::string& text) {
  for (size_t i = 0; i < spec.tokens.size(); ++i)
    if (spec.tokens[i] == text) return static_cast<int32_t>(i);
  return -1;
}

// An added token (tokenizer.json's added_tokens, tokenizer_config.json's
// added_tokens_decoder): its id may lie past the model's vocabulary.
void add_token(TokenizerSpec* spec, int64_t id, const json& t) {
  if (id < 0 || id > (1 << 24) || !t.is_object()) return;
  auto content = t.find("content");
  if (content == t.end() || !content->is_string()) return;
  const size_t i = static_cast<size_t>(id);
  if (spec->tokens.size() <= i) {
    const size_t old = spec->tokens.size();
    spec->tokens.resize(i + 1);
    for (size_t k = old; k <= i; ++k) spec->tokens[k] = "[PAD" + std::to_string(k) + "]";
    spec->types.resize(i + 1, TokenType::kUnused);
    if (!spec->scores.empty()) spec->scores.resize(i + 1, 0.0f);
  }
  spec->tokens[i] = content->get<std::string>();
  spec->types[i] = t.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
  if (t.value("lstrip", false)) spec->lstrip.push_back(static_cast<int32_t>(id));
  if (t.value("rstrip", false)) spec->rstrip.push_back(static_cast<int32_t>(id));
}

// Special ids and add_bos from the JSON files around the tokenizer.
void apply_hf_config(const json& tok_cfg, const json& gen_cfg, const json& model_cfg,
                     TokenizerSpec* spec) {
  if (tok_cfg.contains("added_tokens_decoder") && tok_cfg["added_tokens_decoder"].is_object())
    for (const auto& [key, t] : tok_cfg["added_tokens_decoder"].items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (end != key.c_str() && *end == '\0') add_token(spec, id, t);
    }
  const auto lookup = [&](const char* key, int32_t* out) {
    if (auto c = token_content(tok_cfg, key)) {
      const int32_t id = find_text(*spec, *c);
      if (id >= 0) *out = id;
    }
  };
  lookup("bos_token", &spec->bos);
  lookup("eos_token", &spec->eos);
  lookup("unk_token", &spec->unk);
  lookup("pad_token", &spec->pad);
  for (const json* cfg : {&gen_cfg, &model_cfg}) {
    const std::vector<int32_t> eos = id_list(*cfg, "eos_token_id");
    if (spec->eos < 0 && !eos.empty()) spec->eos = eos[0];
    spec->extra_eog.insert(spec->extra_eog.end(), eos.begin(), eos.end());
    const std::vector<int32_t> bos = id_list(*cfg, "bos_token_id");
    if (spec->bos < 0 && !bos.empty()) spec->bos = bos[0];
  }
  if (auto it = tok_cfg.find("add_bos_token"); it != tok_cfg.end() && it->is_boolean())
    spec->add_bos = it->get<bool>();
}

// ---------------------------------------------------------------- tokenizer.json

// Collects the Split/ByteLevel/Digits regexes of a pre_tokenizer tree.
Status parse_pre_tokenizer(const json& p, TokenizerSpec* spec, bool* byte_level) {
  if (p.is_null()) return Status::Ok();
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& q : p.value("pretokenizers", json::array()))
      SWARM_RETURN_IF_ERROR(parse_pre_tokenizer(q, spec, byte_level));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    *byte_level = true;
    if (p.value("add_prefix_space", false)) spec->bpe_add_prefix_space = true;
    if (p.value("use_regex", true)) {
      auto re = PreTokenizer::RegexesFor("gpt2");
      spec->pre_regexes.push_back(re->front());
    }
    return Status::Ok();
  }
  if (type == "Split") {
    if (p.value("behavior", "") != "Isolated" || p.value("invert", false))
      return Status::Unsupported("tokenizer.json: Split pre-tokenizer with behavior '" +
                                 p.value("behavior", "") + "' is not supported (Isolated is)");
    const json pat = p.value("pattern", json::object());
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      spec->pre_regexes.push_back(pat["Regex"].get<std::string>());
    } else if (pat.contains("String") && pat["String"].is_string()) {
      spec->pre_regexes.push_back("\\Q" + pat["String"].get<std::string>() + "\\E");
    } else {
      return Status::Corruption("tokenizer.json: Split pre-tokenizer without a pattern");
    }
    return Status::Ok();
  }
  if (type == "Digits") {
    spec->pre_regexes.push_back(p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    return Status::Ok();
  }
  return Status::Unsupported("tokenizer.json: pre-tokenizer '" + type + "' is not supported");
}

Status parse_tokenizer_json(const json& tj, TokenizerSpec* spec) {
  const json model = tj.value("model", json::object());
  if (model.value("type", "") != "BPE")
    return Status::Unsupported("tokenizer.json: model type '" + model.value("type", "") +
                               "' is not supported (BPE is)");
  const json vocab = model.value("vocab", json::object());
  if (!vocab.is_object() || vocab.empty())
    return Status::Corruption("tokenizer.json: model.vocab is empty");
  int64_t max_id = -1;
  for (const auto& [k, v] : vocab.items()) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 24))
      return Status::Corruption("tokenizer.json: bad id for token '" + k + "'");
    max_id = std::max(max_id, v.get<int64_t>());
  }
  spec->tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  spec->types.assign(static_cast<size_t>(max_id + 1), TokenType::kUnused);
  for (size_t i = 0; i < spec->tokens.size(); ++i)
    spec->tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [k, v] : vocab.items()) {
    spec->tokens[v.get<size_t>()] = k;
    spec->types[v.get<size_t>()] = TokenType::kNormal;
  }
  for (const json& t : tj.value("added_tokens", json::array()))
    if (t.is_object() && t.contains("id") && t["id"].is_number_integer())
      add_token(spec, t["id"].get<int64_t>(), t);

  for (const json& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        return Status::Corruption("tokenizer.json: merge '" + s + "' is not 'a b'");
      spec->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return Status::Corruption("tokenizer.json: a merge is neither 'a b' nor [a, b]");
    }
  }
  spec->ignore_merges = model.value("ignore_merges", false);
  bool byte_level = false;
  SWARM_RETURN_IF_ERROR(parse_pre_tokenizer(tj.value("pre_tokenizer", json()), spec, &byte_level));
  const json dec = tj.value("decoder", json());
  if (dec.is_object() && dec.value("type", "") == "ByteLevel") byte_level = true;
  if (!byte_level)
    return Status::Unsupported(
        "tokenizer.json: not a byte-level BPE (a SentencePiece-style "
        "tokenizer.json needs its tokenizer.model beside it)");

  // A post-processor that puts a special token first adds BOS (Llama 3).
  std::vector<json> procs;
  const json post = tj.value("post_processor", json());
  if (post.is_object() && post.value("type", "") == "Sequence") {
    for (const json& p : post.value("processors", json::array())) procs.push_back(p);
  } else if (post.is_object()) {
    procs.push_back(post);
  }
  for (const json& p : procs) {
    if (p.value("type", "") != "TemplateProcessing") continue;
    const json single = p.value("single", json::array());
    if (!single.is_array() || single.empty() || !single[0].contains("SpecialToken")) continue;
    const std::string name = single[0]["SpecialToken"].value("id", "");
    const int32_t id = find_text(*spec, name);
    if (id >= 0) {
      spec->add_bos = true;
      spec->bos = id;
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- tokenizer.model

using google::protobuf::io::CodedInputStream;

bool skip_field(CodedInputStream* in, uint32_t tag) {
  switch (tag & 7) {
    case 0: {
      uint64_t v;
      return in->ReadVarint64(&v);
    }
    case 1:
      return in->Skip(8);
    case 2: {
      uint32_t len;
      return in->ReadVarint32(&len) && in->Skip(static_cast<int>(len));
    }
    case 5:
      return in->Skip(4);
    default:
      return false;  // groups: not used by sentencepiece_model.proto
  }
}

// Reads a length-delimited submessage with `fn(field, tag)`, which returns
// false for fields it does not read (skipped) and sets *ok = false on errors.
template <typename Fn>
bool read_message(CodedInputStream* in, Fn fn) {
  uint32_t len;
  if (!in->ReadVarint32(&len)) return false;
  const auto limit = in->PushLimit(static_cast<int>(len));
  while (true) {
    const uint32_t tag = in->ReadTag();
    if (tag == 0) break;
    bool ok = true;
    if (!fn(tag >> 3, tag, &ok)) {
      if (!skip_field(in, tag)) return false;
    } else if (!ok) {
      return false;
    }
  }
  const bool clean = in->ConsumedEntireMessage();
  in->PopLimit(limit);
  return clean;
}

Status parse_sentencepiece(const std::string& bytes, const std::string& what, TokenizerSpec* spec,
                           bool* add_dummy_prefix) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  in.SetTotalBytesLimit(static_cast<int>(bytes.size()) + 1);
  int64_t model_type = 0;
  const auto bad = [&](const char* m) { return Status::Corruption(what + ": " + m); };
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) break;
    const uint32_t field = tag >> 3;
    bool read = true;
    if (field == 1 && (tag & 7) == 2) {  // repeated SentencePiece pieces
      std::string piece;
      float score = 0;
      uint32_t type = 1;
      read = read_message(&in, [&](uint32_t f, uint32_t t, bool* ok) {
        if (f == 1 && (t & 7) == 2) {
          uint32_t len;
          *ok = in.ReadVarint32(&len) && in.ReadString(&piece, static_cast<int>(len));
        } else if (f == 2 && (t & 7) == 5) {
          uint32_t raw;
          *ok = in.ReadLittleEndian32(&raw);
          std::memcpy(&score, &raw, 4);
        } else if (f == 3 && (t & 7) == 0) {
          *ok = in.ReadVarint32(&type);
        } else {
          return false;
        }
        return true;
      });
      if (!read) return bad("a vocabulary piece is corrupt");
      spec->tokens.push_back(std::move(piece));
      spec->scores.push_back(score);
      spec->types.push_back(type >= 1 && type <= 6 ? static_cast<TokenType>(type)
                                                   : TokenType::kNormal);
    } else if (field == 2 && (tag & 7) == 2) {  // TrainerSpec
      read = read_message(&in, [&](uint32_t f, uint32_t t, bool* ok) {
        if ((t & 7) != 0 || (f != 3 && f != 40 && f != 41 && f != 42 && f != 43)) return false;
        uint64_t v;
        *ok = in.ReadVarint64(&v);
        const auto id = static_cast<int32_t>(static_cast<int64_t>(v));  // int32 fields, -1 = none
        if (f == 3) model_type = static_cast<int64_t>(v);
        if (f == 40) spec->unk = id;
        if (f == 41) spec->bos = id;
        if (f == 42) spec->eos = id;
        if (f == 43) spec->pad = id;
        return true;
      });
      if (!read) return bad("trainer_spec is corrupt");
    } else if (field == 3 && (tag & 7) == 2) {  // NormalizerSpec
      read = read_message(&in, [&](uint32_t f, uint32_t t, bool* ok) {
        if (f != 3 || (t & 7) != 0) return false;
        uint64_t v;
        *ok = in.ReadVarint64(&v);
        *add_dummy_prefix = v != 0;
        return true;
      });
      if (!read) return bad("normalizer_spec is corrupt");
    } else if (!skip_field(&in, tag)) {
      return bad("not a SentencePiece model");
    }
  }
  if (!in.ConsumedEntireMessage()) return bad("not a SentencePiece model");
  if (spec->tokens.empty()) return bad("no vocabulary pieces");
  if (model_type == 1)
    return Status::Unsupported(what +
                               ": a SentencePiece unigram model (only BPE models are supported)");
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  return from_gguf(file);
}

Result<TokenizerSpec> read_sentencepiece_model(const std::string& path) {
  Result<std::string> bytes = read_side_file(path);
  if (!bytes.ok()) return bytes.status();
  TokenizerSpec spec;
  spec.kind = TokenizerKind::kSpm;
  // sentencepiece_model.proto's defaults.
  spec.unk = 0;
  spec.bos = 1;
  spec.eos = 2;
  bool add_dummy_prefix = true;
  SWARM_RETURN_IF_ERROR(parse_sentencepiece(*bytes, path, &spec, &add_dummy_prefix));
  spec.add_space_prefix = add_dummy_prefix;
  return spec;
}

Result<TokenizerSpec> read_hf_tokenizer_spec(const std::string& dir_str) {
  const fs::path dir(dir_str);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::NotFound(dir_str + ": not a folder");
  Result<json> tok_cfg = read_optional_json_object(dir / "tokenizer_config.json");
  if (!tok_cfg.ok()) return tok_cfg.status();
  Result<json> gen_cfg = read_optional_json_object(dir / "generation_config.json");
  if (!gen_cfg.ok()) return gen_cfg.status();
  Result<json> model_cfg = read_optional_json_object(dir / "config.json");
  if (!model_cfg.ok()) return model_cfg.status();

  const fs::path tj_path = dir / "tokenizer.json", sp_path = dir / "tokenizer.model";
  const bool has_tj = fs::is_regular_file(tj_path, ec), has_sp = fs::is_regular_file(sp_path, ec);
  Status tj_status = Status::NotFound(dir_str + ": no tokenizer.json or tokenizer.model");
  if (has_tj) {
    Result<json> tj = read_optional_json_object(tj_path);
    if (!tj.ok()) return tj.status();
    TokenizerSpec spec;
    spec.kind = TokenizerKind::kBpe;
    // nlohmann's typed getters throw on a field of the wrong type: a bad file
    // is a Status, not an exception.
    try {
      tj_status = parse_tokenizer_json(*tj, &spec);
      if (tj_status.ok()) apply_hf_config(*tok_cfg, *gen_cfg, *model_cfg, &spec);
    } catch (const json::exception& e) {
      return Status::Corruption(tj_path.string() + ": " + e.what());
    }
    if (tj_status.ok()) return spec;
    tj_status = Status(tj_status.code() == Status::Code::kUnsupported
                           ? Status::Unsupported(tj_path.string() + ": " + tj_status.message())
                           : Status::Corruption(tj_path.string() + ": " + tj_status.message()));
  }
  if (!has_sp) return tj_status;

  Result<TokenizerSpec> sp = read_sentencepiece_model(sp_path.string());
  if (!sp.ok()) return sp.status();
  TokenizerSpec spec = std::move(sp).value();
  spec.add_bos = true;  // LlamaTokenizer's default; tokenizer_config.json may say otherwise
  try {
    apply_hf_config(*tok_cfg, *gen_cfg, *model_cfg, &spec);
  } catch (const json::exception& e) {
    return Status::Corruption(dir_str + ": tokenizer_config.json: " + e.what());
  }
  return spec;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromHfFolder(const std::string& dir) {
  Result<TokenizerSpec> spec = read_hf_tokenizer_spec(dir);
  if (!spec.ok()) return spec.status();
  return Create(std::move(spec).value());
}

}  // namespace swarm
