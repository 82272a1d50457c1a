// Tokenizer: checking a spec and building its indexes, splitting text at
// special tokens, decoding, streaming. The merge algorithms live in
// tokenizer_spm.cc and tokenizer_bpe.cc, the file formats in tokenizer_load.cc.
#include "engine/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "engine/pretokenizer.h"
#include "engine/unicode.h"

namespace swarm {

namespace {

// End-of-turn tokens of the common chat formats; llama.cpp treats these as
// end of generation when the vocabulary has them as control tokens.
constexpr const char* kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",
    "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>", "<｜end▁of▁sentence｜>",
    "<|return|>", "<|call|>",
};
// What llama.cpp picks as EOT when the file names none, in this order.
constexpr const char* kEotTexts[] = {"<|eot_id|>",           "<|im_end|>",    "<|end|>",
                                     "<end_of_turn>",        "<|endoftext|>", "<EOT>",
                                     "<｜end▁of▁sentence｜>"};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// "<0x0A>" -> 10; -1 if `t` is not of that form.
int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  unsigned v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[static_cast<size_t>(i)];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= static_cast<unsigned>(c - '0');
    else if (c >= 'A' && c <= 'F')
      v |= static_cast<unsigned>(c - 'A' + 10);
    else if (c >= 'a' && c <= 'f')
      v |= static_cast<unsigned>(c - 'a' + 10);
    else
      return -1;
  }
  return static_cast<int>(v);
}

std::string replace_all(const std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t i = 0;
  while (true) {
    const size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i);
    out.append(to);
    i = j + from.size();
  }
  out.append(s, i);
  return out;
}

// Byte-level BPE: GPT-2 alphabet characters back to bytes; characters outside
// the alphabet are kept as they are.
std::string unmap_bytes(const std::string& t) {
  std::string out;
  size_t i = 0;
  while (i < t.size()) {
    size_t n = unicode::valid_char_len(std::string_view(t).substr(i));
    if (n == 0) n = 1;
    const int b = unicode::unicode_to_byte(std::string_view(t).substr(i, n));
    if (b >= 0)
      out.push_back(static_cast<char>(b));
    else
      out.append(t, i, n);
    i += n;
  }
  return out;
}

}  // namespace

Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerSpec spec) {
  const size_t n = spec.tokens.size();
  if (n == 0) return Status::InvalidArgument("tokenizer: empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX))
    return Status::InvalidArgument("tokenizer: vocabulary too large");
  if (!spec.scores.empty() && spec.scores.size() != n)
    return Status::Corruption("tokenizer: " + std::to_string(spec.scores.size()) + " scores for " +
                              std::to_string(n) + " tokens");
  if (!spec.types.empty() && spec.types.size() != n)
    return Status::Corruption("tokenizer: " + std::to_string(spec.types.size()) +
                              " token types for " + std::to_string(n) + " tokens");
  const auto valid_id = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
  for (int32_t* id : {&spec.bos, &spec.eos, &spec.eot, &spec.eom, &spec.unk, &spec.pad})
    if (!valid_id(*id)) *id = -1;  // a file naming an id it does not have: treat as none

  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->kind_ = spec.kind;
  t->tokens_ = std::move(spec.tokens);
  t->scores_ = std::move(spec.scores);
  if (t->scores_.empty()) t->scores_.assign(n, 0.0f);
  t->types_ = std::move(spec.types);
  if (t->types_.empty()) t->types_.assign(n, TokenType::kNormal);
  t->ignore_merges_ = spec.ignore_merges;
  t->bpe_add_prefix_space_ = spec.bpe_add_prefix_space;
  t->add_space_prefix_ = spec.add_space_prefix;
  t->bos_ = spec.bos;
  t->eos_ = spec.eos;
  t->unk_ = spec.unk;
  t->add_bos_ = spec.add_bos && spec.bos >= 0;

  const bool spm = spec.kind == TokenizerKind::kSpm;
  t->pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = t->tokens_[i];
    const TokenType type = t->types_[i];
    const auto id = static_cast<int32_t>(i);
    t->all_.emplace(text, id);
    if (type != TokenType::kControl && type != TokenType::kUnknown && type != TokenType::kByte)
      t->mergeable_.emplace(text, id);
    const int byte = parse_byte_token(text);
    if (type == TokenType::kByte && byte >= 0) {
      t->pieces_[i] = std::string(1, static_cast<char>(byte));
    } else if (type == TokenType::kControl || type == TokenType::kUnknown ||
               type == TokenType::kUserDefined) {
      t->pieces_[i] = spm ? replace_all(text, "\xE2\x96\x81", " ") : text;
    } else {
      t->pieces_[i] = spm ? replace_all(text, "\xE2\x96\x81", " ") : unmap_bytes(text);
    }
  }

  for (int b = 0; b < 256; ++b) {
    int32_t id = -1;
    if (spm) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      auto it = t->all_.find(std::string_view(name));
      if (it != t->all_.end()) id = it->second;
    } else {
      auto it = t->mergeable_.find(unicode::byte_to_unicode(static_cast<uint8_t>(b)));
      if (it != t->mergeable_.end()) id = it->second;
    }
    t->byte_tokens_[b] = id;
  }

  if (!spm) {
    auto pre = PreTokenizer::Create(spec.pre_regexes);
    if (!pre.ok()) return pre.status();
    t->pre_ = std::move(pre.value());
    int32_t rank = 0;
    for (const auto& [a, b] : spec.merges) {
      const auto ia = t->mergeable_.find(a), ib = t->mergeable_.find(b),
                 im = t->mergeable_.find(a + b);
      if (ia == t->mergeable_.end() || ib == t->mergeable_.end() || im == t->mergeable_.end()) {
        ++rank;  // a merge into a token the vocabulary lacks can never apply
        continue;
      }
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                           static_cast<uint32_t>(ib->second);
      t->merges_.emplace(key, std::make_pair(rank++, im->second));
    }
  }

  // Tokens matched whole in text: control/unknown (with parse_special) and
  // user-defined (always), longest first so that the longest match wins.
  t->lstrip_.assign(n, false);
  t->rstrip_.assign(n, false);
  for (int32_t id : spec.lstrip)
    if (valid_id(id)) t->lstrip_[static_cast<size_t>(id)] = true;
  for (int32_t id : spec.rstrip)
    if (valid_id(id)) t->rstrip_[static_cast<size_t>(id)] = true;
  for (size_t i = 0; i < n; ++i) {
    const TokenType type = t->types_[i];
    if (t->tokens_[i].empty()) continue;
    if (type == TokenType::kControl || type == TokenType::kUnknown ||
        type == TokenType::kUserDefined)
      t->specials_by_byte_[static_cast<uint8_t>(t->tokens_[i][0])].push_back(
          static_cast<int32_t>(i));
  }
  for (auto& v : t->specials_by_byte_)
    std::stable_sort(v.begin(), v.end(), [&](int32_t a, int32_t b) {
      return t->tokens_[static_cast<size_t>(a)].size() > t->tokens_[static_cast<size_t>(b)].size();
    });

  // End of generation.
  t->eot_ = spec.eot;
  if (t->eot_ < 0) {
    for (const char* s : kEotTexts) {
      const int32_t id = t->find_token(s);
      if (id >= 0 && t->types_[static_cast<size_t>(id)] != TokenType::kNormal) {
        t->eot_ = id;
        break;
      }
    }
  }
  std::vector<int32_t> eog = {spec.eos, t->eot_, spec.eom};
  eog.insert(eog.end(), spec.extra_eog.begin(), spec.extra_eog.end());
  for (const char* s : kEogTexts) {
    const int32_t id = t->find_token(s);
    if (id >= 0 && t->types_[static_cast<size_t>(id)] != TokenType::kNormal) eog.push_back(id);
  }
  for (int32_t id : eog)
    if (valid_id(id) && std::find(t->eog_.begin(), t->eog_.end(), id) == t->eog_.end())
      t->eog_.push_back(id);
  return t;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  std::error_code ec;
  if (std::filesystem::is_directory(model_path, ec)) return FromHfFolder(model_path);
  Result<GgufFile> f = read_gguf(model_path);
  if (!f.ok()) return f.status();
  return FromGguf(*f);
}

// ---------------------------------------------------------------- lookups

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || id >= vocab_size()) return kEmpty;
  return tokens_[static_cast<size_t>(id)];
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUndefined;
  return types_[static_cast<size_t>(id)];
}

int32_t Tokenizer::find_token(std::string_view text) const {
  auto it = all_.find(text);
  return it == all_.end() ? -1 : it->second;
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && std::find(eog_.begin(), eog_.end(), id) != eog_.end();
}

// ---------------------------------------------------------------- encode

std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text,
                                                      bool parse_special) const {
  std::vector<Fragment> frags;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    int32_t match = -1;
    for (int32_t id : specials_by_byte_[static_cast<uint8_t>(text[i])]) {
      if (!parse_special && types_[static_cast<size_t>(id)] != TokenType::kUserDefined) continue;
      if (text.substr(i).starts_with(tokens_[static_cast<size_t>(id)])) {
        match = id;
        break;
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    size_t text_end = i;
    if (lstrip_[static_cast<size_t>(match)])
      while (text_end > start && is_space(text[text_end - 1])) --text_end;
    if (text_end > start) frags.push_back({-1, text.substr(start, text_end - start)});
    frags.push_back({match, {}});
    i += tokens_[static_cast<size_t>(match)].size();
    if (rstrip_[static_cast<size_t>(match)])
      while (i < text.size() && is_space(text[i])) ++i;
    start = i;
  }
  if (start < text.size()) frags.push_back({-1, text.substr(start)});
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  bool prev_special =
      true;  // SPM: the first text, and text after a special token, get the dummy prefix
  for (const Fragment& f : partition(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    if (kind_ == TokenizerKind::kSpm)
      encode_spm(f.text, add_space_prefix_ && prev_special, &out);
    else
      encode_bpe(f.text, &out);
    prev_special = false;
  }
  return out;
}

void Tokenizer::push_bytes(std::string_view bytes, std::vector<int32_t>* out) const {
  for (char c : bytes) {
    const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
    if (id >= 0)
      out->push_back(id);
    else if (unk_ >= 0)
      out->push_back(unk_);
  }
}

// ---------------------------------------------------------------- decode

const std::string* Tokenizer::decode_piece(int32_t id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) return nullptr;
  const TokenType type = types_[static_cast<size_t>(id)];
  if (skip_special && (type == TokenType::kControl || type == TokenType::kUnknown)) return nullptr;
  return &pieces_[static_cast<size_t>(id)];
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  const std::string* p = decode_piece(id, /*skip_special=*/false);
  return p == nullptr ? std::string() : *p;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    const std::string* p = decode_piece(id, skip_special);
    if (p == nullptr) continue;
    std::string_view v = *p;
    // The dummy prefix: the first piece's leading space was added by encode.
    if (first && kind_ == TokenizerKind::kSpm && add_space_prefix_ && v.starts_with(' '))
      v.remove_prefix(1);
    first = false;
    out.append(v);
  }
  return out;
}

std::string TokenStreamDecoder::push(int32_t id) {
  const std::string* p = tok_.decode_piece(id, skip_special_);
  if (p == nullptr) return {};
  std::string_view v = *p;
  if (first_ && tok_.kind_ == TokenizerKind::kSpm && tok_.add_space_prefix_ && v.starts_with(' '))
    v.remove_prefix(1);
  first_ = false;
  pending_.append(v);
  const size_t hold = unicode::incomplete_tail(pending_);
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string TokenStreamDecoder::flush() {
  std::string out = std::move(pending_);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace swarm
