// Text <-> token ids, the way llama.cpp and Hugging Face tokenizers do it, for
// the two tokenizer kinds our models use:
//  - SentencePiece-style BPE (GGUF `tokenizer.ggml.model = llama`, HF
//    `tokenizer.model`): merges by score, a dummy-prefix space, spaces as "▁",
//    byte fallback tokens <0xNN> for characters not in the vocabulary;
//  - byte-level BPE (GGUF `gpt2`, HF `tokenizer.json`): a pre-tokenizer regex
//    splits the text into words, each word's bytes become GPT-2's printable
//    alphabet, and ranked merges join them.
//
// Contracts:
//  - encode never fails: any byte string (invalid UTF-8 included) gives valid
//    ids, and decode(encode(x, add_bos, /*parse_special=*/false)) == x for every
//    byte string x. SPM: the dummy-prefix space encode adds before the text is
//    the one decode removes from the first piece (a text starting with a space
//    gets two "▁" and keeps one space). Exceptions, shared with llama.cpp and
//    HF: SPM cannot tell "▁" (U+2581) in the text from a space, and text right
//    after a user-defined added token gets a prefix space of its own.
//  - special tokens (control tokens: BOS, <|im_start|>, ...) are matched in the
//    text only with parse_special; user-defined added tokens always are.
//  - a Tokenizer is immutable after loading: every method is const and safe
//    to call from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/gguf.h"
#include "engine/status.h"

namespace swarm {

class PreTokenizer;

enum class TokenizerKind { kSpm, kBpe };

// Token attributes, numbered as GGUF's tokenizer.ggml.token_type (and
// SentencePiece's piece types) number them.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Everything a tokenizer is made of, as the loaders read it from a file.
// Tokenizer::Create checks it; tests build small ones by hand.
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::kSpm;
  // Token texts as the vocabulary stores them: SPM with "▁" for spaces,
  // byte-level BPE in GPT-2's alphabet; added tokens as they appear in text.
  std::vector<std::string> tokens;
  std::vector<float> scores;     // SPM merge priorities (higher first); may be empty for BPE
  std::vector<TokenType> types;  // empty: all normal
  // BPE merges, highest priority first: "a b" joins adjacent tokens a and b.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<std::string> pre_regexes;  // BPE pre-tokenizer (PreTokenizer::RegexesFor)
  bool ignore_merges = false;            // BPE: a word that is a token is taken whole (Llama 3)
  bool bpe_add_prefix_space = false;     // BPE: HF ByteLevel add_prefix_space
  bool add_space_prefix = true;          // SPM: the dummy prefix
  // Special ids; -1 = the model has none.
  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, pad = -1;
  bool add_bos = false;                 // the model's default for encode()
  std::vector<int32_t> extra_eog;       // more end-of-generation ids (HF generation_config)
  std::vector<int32_t> lstrip, rstrip;  // added tokens that eat whitespace before/after them
};

// The spec Tokenizer::FromHfFolder builds from a Hugging Face folder, for
// tools that store a tokenizer in another format (`swarm convert`).
Result<TokenizerSpec> read_hf_tokenizer_spec(const std::string& dir);
// A SentencePiece tokenizer.model alone: pieces, scores and piece types as the
// file gives them, its special ids and dummy-prefix setting.
Result<TokenizerSpec> read_sentencepiece_model(const std::string& path);

class Tokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);
  // From a GGUF file's tokenizer.ggml.* metadata.
  static Result<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);
  // From a Hugging Face folder: tokenizer.json (byte-level BPE) or
  // tokenizer.model (SentencePiece), with tokenizer_config.json,
  // generation_config.json and config.json for special ids and add_bos.
  static Result<std::unique_ptr<Tokenizer>> FromHfFolder(const std::string& dir);
  // A GGUF file or a Hugging Face folder.
  static Result<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`. add_bos: put the BOS token first (if the model has
  // one); pass add_bos_default() for what the model wants. parse_special: match
  // control tokens such as <|im_start|> written in the text (chat templates);
  // false for user text, where they are encoded as ordinary characters.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // encode(text, add_bos_default(), false).
  std::vector<int32_t> encode(std::string_view text) const { return encode(text, add_bos_, false); }

  // Text of `ids`. skip_special: leave out control and unknown tokens (BOS,
  // EOS, <|im_end|>); otherwise they appear as their text. Ids out of range
  // are left out. SPM: the first piece's leading space (the dummy prefix) is
  // removed. Bytes come out exactly as encoded, so the result is valid UTF-8
  // whenever the encoded text was.
  std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;

  // The bytes one token stands for (control tokens: their text; SPM: "▁" as
  // a space, <0xNN> as the byte). May be part of a UTF-8 character. "" for
  // ids out of range.
  std::string token_to_piece(int32_t id) const;
  // The token as the vocabulary stores it ("▁the", "Ġthe", "<0x0A>").
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  // The id of a vocabulary string, -1 if none.
  int32_t find_token(std::string_view text) const;

  TokenizerKind kind() const { return kind_; }
  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }
  bool add_bos_default() const { return add_bos_; }
  // End of generation: EOS, EOT, EOM and the end-of-turn tokens of the common
  // chat formats (<|im_end|>, <|eot_id|>, <|end|>, <end_of_turn>, ...).
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_; }

 private:
  friend class TokenStreamDecoder;
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Fragment {
    int32_t token;  // >= 0: a matched special token; -1: text
    std::string_view text;
  };

  Tokenizer() = default;
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view text, bool prefix_space, std::vector<int32_t>* out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>* out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>* out) const;
  void push_bytes(std::string_view bytes, std::vector<int32_t>* out) const;
  // The piece decode() emits for `id` (nullptr: nothing).
  const std::string* decode_piece(int32_t id, bool skip_special) const;

  TokenizerKind kind_ = TokenizerKind::kSpm;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<std::string> pieces_;  // decoded bytes of each token
  // Text -> id for tokens that merges may produce (not control/unknown).
  std::unordered_map<std::string, int32_t, TransparentHash, std::equal_to<>> mergeable_;
  std::unordered_map<std::string, int32_t, TransparentHash, std::equal_to<>> all_;
  int32_t byte_tokens_[256];  // SPM <0xNN>, BPE the byte's alphabet character; -1 if missing
  // BPE: (left id << 32 | right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::unique_ptr<PreTokenizer> pre_;
  bool ignore_merges_ = false;
  bool bpe_add_prefix_space_ = false;
  bool add_space_prefix_ = true;
  // Tokens matched in text by partition(), by first byte, longest first.
  std::vector<int32_t> specials_by_byte_[256];
  std::vector<bool> lstrip_, rstrip_;
  int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1;
  bool add_bos_ = false;
  std::vector<int32_t> eog_;
};

// Turns generated tokens into text as they come: push() returns the text that
// is complete so far, holding back the bytes of a UTF-8 character split across
// tokens (e.g. an emoji made of four <0xNN> tokens) until its last byte
// arrives. The concatenation of every push() and the final flush() equals
// tokenizer.decode(all ids, skip_special). Bytes that can never become a
// valid character are passed through as they are. To stream a continuation
// of a prompt, push the prompt's ids first and drop what they return: then
// spacing (SPM's dummy prefix) and characters split across the boundary come
// out as decode() of the whole sequence gives them.
class TokenStreamDecoder {
 public:
  // `tokenizer` must outlive this decoder.
  explicit TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special = true)
      : tok_(tokenizer), skip_special_(skip_special) {}
  std::string push(int32_t id);
  // What is still held back (an incomplete character at the end); resets.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace swarm
