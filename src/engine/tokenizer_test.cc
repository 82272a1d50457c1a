// Tokenizer tests: the reference prompts' ids (from HF transformers, in the
// manifests) from every GGUF file and HF folder we have; round trips over a
// corpus of Unicode edge cases and over random bytes; the streaming decoder;
// special tokens; small hand-made vocabularies whose merges we can follow; and
// errors for files that are not tokenizers.
#include "engine/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/gguf_writer.h"
#include "engine/pretokenizer.h"
#include "engine/test_data.h"
#include "engine/unicode.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using swarm::testing::find_testdata;

const char* const kModels[] = {"tiny-llama", "tiny-qwen2"};

json read_manifest(const std::string& model) {
  const std::string p = find_testdata(model + "/manifest.json");
  if (p.empty()) return json();
  std::ifstream in(p);
  return json::parse(in);
}

// Every GGUF of `model` its manifest lists that tests/data has: all but F32
// (the reference set ships float32 weights as the HF folder only).
std::vector<std::pair<std::string, std::string>> gguf_files(const std::string& model,
                                                            const json& manifest) {
  std::vector<std::pair<std::string, std::string>> files;  // (type, path)
  for (const auto& [type, entry] : manifest["gguf"].items()) {
    const std::string p = find_testdata(model + "/gguf/" + entry["file"].get<std::string>());
    if (!p.empty()) files.emplace_back(type, p);
  }
  return files;
}

std::unique_ptr<Tokenizer> load_or_die(const std::string& path) {
  auto t = Tokenizer::Load(path);
  EXPECT_TRUE(t.ok()) << path << ": " << t.status().ToString();
  return t.ok() ? std::move(t.value()) : nullptr;
}

// The tokenizer of each model, from whichever GGUF is present.
std::unique_ptr<Tokenizer> model_tokenizer(const std::string& model) {
  const json m = read_manifest(model);
  if (m.is_null()) return nullptr;
  auto files = gguf_files(model, m);
  if (files.empty()) return nullptr;
  return load_or_die(files.front().second);
}

void expect_prompts(const Tokenizer& tok, const json& manifest, const std::string& what,
                    const std::string& ref_dir) {
  const auto& texts = manifest["prompts_text"];
  const auto& prompts = manifest["hf"]["prompts"];
  ASSERT_EQ(texts.size(), prompts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i].get<std::string>();
    const auto want = prompts[i]["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, tok.add_bos_default(), /*parse_special=*/false);
    EXPECT_EQ(got, want) << what << " prompt " << i;
    // The raw reference file says the same.
    if (!ref_dir.empty()) {
      const std::string f = ref_dir + "/p" + std::to_string(i) + "_ids.i32";
      if (swarm::testing::path_exists(f)) {
        EXPECT_EQ(got, swarm::testing::read_raw<int32_t>(f)) << f;
      }
    }
    // And the ids decode back to the prompt.
    EXPECT_EQ(tok.decode(want), text) << what << " prompt " << i;
  }
}

// ---------------------------------------------------------------- reference ids

TEST(TokenizerRef, GgufFilesGiveTheReferenceIds) {
  int checked = 0;
  for (const char* model : kModels) {
    const json m = read_manifest(model);
    ASSERT_FALSE(m.is_null()) << model << ": no manifest in tests/data";
    for (const auto& [type, path] : gguf_files(model, m)) {
      auto tok = load_or_die(path);
      ASSERT_NE(tok, nullptr);
      const std::string ref = fs::path(path).parent_path().parent_path().string() + "/ref/" + type;
      expect_prompts(*tok, m, path, ref);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 10);  // tiny-llama in 6 types, tiny-qwen2 in 4
}

TEST(TokenizerRef, HfFoldersGiveTheReferenceIds) {
  int checked = 0;
  for (const char* model : kModels) {
    const std::string dir = find_testdata(std::string(model) + "/hf");
    ASSERT_FALSE(dir.empty()) << model << "/hf is missing from tests/data";
    const json m = read_manifest(model);
    auto tok = load_or_die(dir);
    ASSERT_NE(tok, nullptr);
    expect_prompts(*tok, m, dir, fs::path(dir).parent_path().string() + "/ref/hf");
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

TEST(TokenizerRef, SpecialIdsAndAddBosAsTheModelsSay) {
  for (const char* model : kModels) {
    std::vector<std::unique_ptr<Tokenizer>> toks;
    toks.push_back(model_tokenizer(model));
    const std::string dir = find_testdata(std::string(model) + "/hf");
    if (!dir.empty()) toks.push_back(load_or_die(dir));
    for (const auto& t : toks) {
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->vocab_size(), 1024);
      if (std::string(model) == "tiny-llama") {
        EXPECT_EQ(t->kind(), TokenizerKind::kSpm);
        EXPECT_TRUE(t->add_bos_default());
        EXPECT_EQ(t->bos(), 1);
        EXPECT_EQ(t->eos(), 2);
        EXPECT_TRUE(t->is_eog(2));
        EXPECT_FALSE(t->is_eog(1));
        EXPECT_EQ(t->token_to_piece(13), "\n");  // <0x0A>
      } else {
        EXPECT_EQ(t->kind(), TokenizerKind::kBpe);
        EXPECT_FALSE(t->add_bos_default());
        EXPECT_EQ(t->eos(), 2);
        EXPECT_TRUE(t->is_eog(2));   // <|im_end|>
        EXPECT_TRUE(t->is_eog(0));   // <|endoftext|>
        EXPECT_FALSE(t->is_eog(1));  // <|im_start|>
        EXPECT_EQ(t->eot(), 2);
        EXPECT_EQ(t->token_to_piece(223), " ");  // "Ġ"
      }
      EXPECT_FALSE(t->is_eog(500));
    }
  }
}

// ---------------------------------------------------------------- add-BOS defaults

GgufValue gguf_u32(int64_t v) {
  GgufValue x;
  x.type = GgufValueType::UINT32;
  x.i = v;
  return x;
}
GgufValue gguf_bool(bool v) {
  GgufValue x;
  x.type = GgufValueType::BOOL;
  x.i = v ? 1 : 0;
  return x;
}
GgufValue gguf_string(const std::string& v) {
  GgufValue x;
  x.type = GgufValueType::STRING;
  x.str = v;
  return x;
}

// `src`'s metadata without its tensors, with the keys in `drop` left out and
// those in `set` put in (replacing any of the same name), written to a new GGUF
// file and read back: a file of the kind a converter writes when it leaves a
// key out.
GgufFile rewritten_gguf(const std::string& src, const std::vector<std::string>& drop,
                        const std::vector<std::pair<std::string, GgufValue>>& set) {
  auto in = read_gguf(src);
  EXPECT_TRUE(in.ok()) << src << ": " << in.status().ToString();
  if (!in.ok()) return {};
  const auto listed = [](const std::string& key, const auto& keys) {
    for (const auto& k : keys)
      if (key == k) return true;
    return false;
  };
  std::vector<std::string> replaced;
  for (const auto& kv : set) replaced.push_back(kv.first);
  GgufWriter w;
  for (const auto& [key, value] : in->kv)
    if (!listed(key, drop) && !listed(key, replaced)) w.set_value(key, value);
  for (const auto& [key, value] : set) w.set_value(key, value);
  static int n = 0;
  const std::string path = ::testing::TempDir() + "/add_bos_" + std::to_string(::getpid()) + "_" +
                           std::to_string(n++) + ".gguf";
  EXPECT_TRUE(w.begin(path).ok());
  EXPECT_TRUE(w.finish().ok());
  auto out = read_gguf(path);
  std::remove(path.c_str());
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? std::move(out.value()) : GgufFile{};
}

std::unique_ptr<Tokenizer> from_gguf_or_die(const GgufFile& f) {
  auto t = Tokenizer::FromGguf(f);
  EXPECT_TRUE(t.ok()) << f.path << ": " << t.status().ToString();
  return t.ok() ? std::move(t.value()) : nullptr;
}

const char kAddBos[] = "tokenizer.ggml.add_bos_token";

// A SentencePiece GGUF without tokenizer.ggml.add_bos_token still starts with
// BOS, as llama.cpp and Hugging Face's LlamaTokenizer do: the reference ids
// (from transformers) begin with <s>.
TEST(TokenizerAddBos, SpmWithoutTheKeyAddsBos) {
  const std::string src = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
  ASSERT_FALSE(src.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
  const GgufFile f = rewritten_gguf(src, {kAddBos}, {});
  ASSERT_EQ(f.find(kAddBos), nullptr);
  auto tok = from_gguf_or_die(f);
  ASSERT_NE(tok, nullptr);
  EXPECT_TRUE(tok->add_bos_default());
  EXPECT_EQ(tok->encode("Hello").front(), 1);
  expect_prompts(*tok, read_manifest("tiny-llama"), "tiny-llama without add_bos_token", "");

  // The key, where present, wins.
  tok = from_gguf_or_die(rewritten_gguf(src, {}, {{kAddBos, gguf_bool(false)}}));
  ASSERT_NE(tok, nullptr);
  EXPECT_FALSE(tok->add_bos_default());
  EXPECT_NE(tok->encode("Hello").front(), 1);
}

// Byte-level BPE without the key: Qwen2's and GPT-2's pre-tokenizers add no
// BOS (the Qwen2 reference ids from transformers start with the text itself),
// Llama 3's and Tekken's do, as llama.cpp decides from tokenizer.ggml.pre; the
// key, where present, wins either way.
TEST(TokenizerAddBos, BpeDefaultFollowsThePreTokenizer) {
  const std::string src = find_testdata("tiny-qwen2/gguf/tiny-qwen2-Q4_K_M.gguf");
  ASSERT_FALSE(src.empty()) << "tiny-qwen2-Q4_K_M.gguf is missing from tests/data";

  // The file as llama.cpp's converter wrote it: pre-tokenizer qwen2, no key.
  const GgufFile qwen = rewritten_gguf(src, {kAddBos}, {});
  ASSERT_EQ(qwen.find(kAddBos), nullptr);
  ASSERT_TRUE(qwen.get_string("tokenizer.ggml.pre").ok());
  auto tok = from_gguf_or_die(qwen);
  ASSERT_NE(tok, nullptr);
  EXPECT_FALSE(tok->add_bos_default());
  expect_prompts(*tok, read_manifest("tiny-qwen2"), "tiny-qwen2 without add_bos_token", "");

  // No pre-tokenizer named at all (llama.cpp's "default", GPT-2's): no BOS.
  tok = from_gguf_or_die(rewritten_gguf(src, {kAddBos, "tokenizer.ggml.pre"}, {}));
  ASSERT_NE(tok, nullptr);
  EXPECT_FALSE(tok->add_bos_default());

  // The same vocabulary declared Llama 3-style, with a BOS id (1 here): BOS
  // first, then the text's own ids.
  const int32_t bos = 1;
  for (const char* pre : {"llama-bpe", "llama3", "llama-v3", "tekken"}) {
    const std::pair<std::string, GgufValue> pre_kv = {"tokenizer.ggml.pre", gguf_string(pre)};
    const std::pair<std::string, GgufValue> bos_kv = {"tokenizer.ggml.bos_token_id", gguf_u32(bos)};
    tok = from_gguf_or_die(rewritten_gguf(src, {kAddBos}, {pre_kv, bos_kv}));
    ASSERT_NE(tok, nullptr);
    EXPECT_TRUE(tok->add_bos_default()) << pre;
    const std::vector<int32_t> ids = tok->encode("Hello world");
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), bos) << pre;
    EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.end()),
              tok->encode("Hello world", /*add_bos=*/false, /*parse_special=*/false))
        << pre;

    tok = from_gguf_or_die(rewritten_gguf(src, {}, {pre_kv, bos_kv, {kAddBos, gguf_bool(false)}}));
    ASSERT_NE(tok, nullptr);
    EXPECT_FALSE(tok->add_bos_default()) << pre;
  }

  // An explicit true on a Qwen2 vocabulary is obeyed too.
  tok = from_gguf_or_die(rewritten_gguf(
      src, {}, {{"tokenizer.ggml.bos_token_id", gguf_u32(bos)}, {kAddBos, gguf_bool(true)}}));
  ASSERT_NE(tok, nullptr);
  EXPECT_TRUE(tok->add_bos_default());
  EXPECT_EQ(tok->encode("Hello").front(), bos);
}

// ---------------------------------------------------------------- round trips

std::vector<std::string> unicode_corpus() {
  std::vector<std::string> c = {
      "",
      "a",
      " ",
      "  leading spaces",
      "trailing spaces   ",
      "Hello, world!",
      "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",  // 你好，世界
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD",  // 日本語のテキ
      "\xF0\x9F\x98\x80",                                                          // 😀
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",  // family ZWJ
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD thumbs with skin tone",
      "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88 flag",
      "e\xCC\x81 combining acute, a\xCC\x8A\xCC\x81 two marks",
      "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xD8\xB3\xD9\x84\xD8\xA7\xD9\x85 RTL \xE2\x80\x8F mark",
      std::string("nul\0inside", 10),
      std::string("\0", 1),
      "control \x01\x02\x1B[0m \x7F bytes",
      "tabs\tand\r\nCRLF\n",
      std::string(300, ' '),
      std::string(200, '\n'),
      "x" + std::string(100, ' ') + "y" + std::string(50, '\t') + "z",
      std::string(500, '7'),
      "12345678901234567890 3.14159 -42 1e10",
      "'s 're 'VE 'll don't I'M",
      "<|im_start|>user\nhi<|im_end|>",
      "<s> [INST] not special [/INST] </s>",
      "\xEF\xBB\xBF BOM and \xEF\xBF\xBD replacement",
      "\xE2\x80\x8B zero width \xE2\x80\x8C \xE2\x80\x8D",
      "\xF4\x8F\xBF\xBF max code point, \xEE\x80\x80 private use",
      "mixed \xCE\xB1\xCE\xB2\xCE\xB3 \xD0\xBA\xD0\xB8\xD1\x80 "
      "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\x82\xE0\xA4\xA6\xE0\xA5\x80",
  };
  // Random valid UTF-8: code points from every plane (no surrogates).
  std::mt19937 rng(7);
  for (int k = 0; k < 40; ++k) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      uint32_t cp;
      switch (rng() % 4) {
        case 0:
          cp = rng() % 0x80;
          break;
        case 1:
          cp = 0x80 + rng() % 0x780;
          break;
        case 2:
          cp = 0x800 + rng() % 0xF800;
          break;
        default:
          cp = 0x10000 + rng() % 0x100000;
          break;
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x20;
      unicode::append_utf8(cp, &s);
    }
    c.push_back(s);
  }
  return c;
}

// SentencePiece cannot tell "▁" (U+2581) written in the text from a space.
std::string without_sp_space(std::string s) {
  for (size_t p; (p = s.find("\xE2\x96\x81")) != std::string::npos;) s.replace(p, 3, "_");
  return s;
}

void expect_valid_ids(const Tokenizer& tok, const std::vector<int32_t>& ids,
                      const std::string& what) {
  for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size()) << what << ": id " << id;
}

TEST(TokenizerRoundTrip, UnicodeCorpusBothKinds) {
  for (const char* model : kModels) {
    auto tok = model_tokenizer(model);
    ASSERT_NE(tok, nullptr) << model;
    for (std::string text : unicode_corpus()) {
      if (tok->kind() == TokenizerKind::kSpm) text = without_sp_space(text);
      for (bool bos : {false, true}) {
        const auto ids = tok->encode(text, bos, /*parse_special=*/false);
        expect_valid_ids(*tok, ids, model);
        EXPECT_EQ(tok->decode(ids), text) << model << " bos=" << bos << " ids=" << ids.size();
      }
    }
  }
}

// The SentencePiece contract, spelled out: encode puts one "▁" before the text
// (also before text starting with a space), decode takes exactly one away.
TEST(TokenizerRoundTrip, SpmDummyPrefix) {
  auto tok = model_tokenizer("tiny-llama");
  ASSERT_NE(tok, nullptr);
  const auto a = tok->encode("Hello", false, false);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(tok->token_text(a[0]).rfind("\xE2\x96\x81", 0), 0u) << tok->token_text(a[0]);
  const auto b = tok->encode(" Hello", false, false);
  EXPECT_NE(a, b);
  EXPECT_EQ(tok->decode(b), " Hello");
  EXPECT_TRUE(tok->encode("", false, false).empty());
  EXPECT_EQ(tok->encode("", true, false), std::vector<int32_t>{1});
  // token_to_piece keeps the space: it is the piece, not a decoded text.
  EXPECT_EQ(tok->token_to_piece(a[0])[0], ' ');
  // BOS is skipped by default and shown when asked.
  EXPECT_EQ(tok->decode(tok->encode("Hi", true, false), /*skip_special=*/false), "<s> Hi");
}

TEST(TokenizerFuzz, RandomBytesNeverBreakIt) {
  std::mt19937 rng(1234);
  for (const char* model : kModels) {
    auto tok = model_tokenizer(model);
    ASSERT_NE(tok, nullptr) << model;
    for (int k = 0; k < 1000; ++k) {
      std::string bytes(rng() % 200, '\0');
      for (char& c : bytes) c = static_cast<char>(rng() % 256);
      if (k % 4 == 0)  // bias towards bytes that look like UTF-8 and tokens
        for (char& c : bytes) c = static_cast<char>("\xF0\x9F\x98\x80\xC3\xA9 a<|>\n"[rng() % 13]);
      if (tok->kind() == TokenizerKind::kSpm) bytes = without_sp_space(bytes);
      for (bool special : {false, true}) {
        const auto ids = tok->encode(bytes, true, special);
        expect_valid_ids(*tok, ids, model);
        // Byte fallback / the byte-level alphabet keep every byte, valid or not.
        if (!special) {
          ASSERT_EQ(tok->decode(ids), bytes) << model << " case " << k;
        }
        // Random ids decode without trouble, and streaming agrees with decode.
        std::vector<int32_t> random_ids(rng() % 32);
        for (int32_t& id : random_ids)
          id = static_cast<int32_t>(rng() % (tok->vocab_size() + 10)) - 5;
        TokenStreamDecoder d(*tok, special);
        std::string streamed;
        for (int32_t id : random_ids) streamed += d.push(id);
        streamed += d.flush();
        ASSERT_EQ(streamed, tok->decode(random_ids, special));
      }
    }
  }
}

// ---------------------------------------------------------------- streaming

TEST(TokenizerStream, SplitEmojiComesOutWhole) {
  for (const char* model : kModels) {
    auto tok = model_tokenizer(model);
    ASSERT_NE(tok, nullptr);
    const std::string emoji = "\xF0\x9F\x98\x80";
    const auto ids = tok->encode("a " + emoji + " b", false, false);
    // The emoji is not in either vocabulary: it takes several tokens.
    TokenStreamDecoder d(*tok);
    std::vector<std::string> outs;
    for (int32_t id : ids) outs.push_back(d.push(id));
    outs.push_back(d.flush());
    bool seen = false;
    std::string all;
    for (const std::string& o : outs) {
      EXPECT_TRUE(unicode::is_valid_utf8(o)) << model;
      if (o.find(emoji) != std::string::npos) seen = true;
      all += o;
    }
    EXPECT_TRUE(seen) << model << ": the emoji never came out in one piece";
    EXPECT_EQ(all, "a " + emoji + " b");
    EXPECT_GT(ids.size(), 4u);
  }
}

TEST(TokenizerStream, PushesConcatenateToDecode) {
  for (const char* model : kModels) {
    auto tok = model_tokenizer(model);
    ASSERT_NE(tok, nullptr);
    for (std::string text : unicode_corpus()) {
      if (tok->kind() == TokenizerKind::kSpm) text = without_sp_space(text);
      const auto ids = tok->encode(text, true, false);
      for (bool skip : {true, false}) {
        TokenStreamDecoder d(*tok, skip);
        std::string streamed;
        for (int32_t id : ids) {
          const std::string out = d.push(id);
          EXPECT_TRUE(unicode::is_valid_utf8(out)) << model;
          streamed += out;
        }
        streamed += d.flush();
        EXPECT_EQ(streamed, tok->decode(ids, skip)) << model;
      }
    }
  }
}

TEST(TokenizerStream, HoldsOnlyWhatCanStillBecomeACharacter) {
  EXPECT_EQ(unicode::incomplete_tail("a\xF0\x9F"), 2u);
  EXPECT_EQ(unicode::incomplete_tail("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(unicode::incomplete_tail("a\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(unicode::incomplete_tail("a\xC3"), 1u);
  EXPECT_EQ(unicode::incomplete_tail("a\xE0\x80"), 0u);  // overlong: never valid
  EXPECT_EQ(unicode::incomplete_tail("a\xED\xA0"), 0u);  // surrogate
  EXPECT_EQ(unicode::incomplete_tail("a\x80\x80"), 0u);  // stray continuation bytes
  EXPECT_EQ(unicode::incomplete_tail("\xFF"), 0u);
}

// ---------------------------------------------------------------- special tokens

TEST(TokenizerSpecial, ChatMLTokensOnlyWhenAsked) {
  auto tok = model_tokenizer("tiny-qwen2");
  ASSERT_NE(tok, nullptr);
  const std::string text = "<|im_start|>user\nHi<|im_end|>\n";
  const auto plain = tok->encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(tok->decode(plain), text);
  const auto special = tok->encode(text, false, true);
  ASSERT_GE(special.size(), 3u);
  EXPECT_EQ(special.front(), 1);
  EXPECT_EQ(std::count(special.begin(), special.end(), 2), 1);
  EXPECT_EQ(tok->decode(special, /*skip_special=*/false), text);
  EXPECT_EQ(tok->decode(special, /*skip_special=*/true), "user\nHi\n");
  // Just the token.
  EXPECT_EQ(tok->encode("<|im_start|>", false, true), std::vector<int32_t>{1});
  EXPECT_GT(tok->encode("<|im_start|>", false, false).size(), 1u);
}

TEST(TokenizerSpecial, SpmControlTokensOnlyWhenAsked) {
  auto tok = model_tokenizer("tiny-llama");
  ASSERT_NE(tok, nullptr);
  const auto plain = tok->encode("<s>[INST] hi [/INST]</s>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  const auto special = tok->encode("<s>[INST] hi [/INST]</s>", false, true);
  EXPECT_EQ(special.front(), 1);
  EXPECT_EQ(special.back(), 2);
  // Text after a special token gets the dummy prefix again (llama.cpp, HF legacy).
  const auto after = tok->encode("[INST]", false, false);
  EXPECT_EQ(std::vector<int32_t>(special.begin() + 1, special.begin() + 1 + after.size()), after);
}

// ---------------------------------------------------------------- hand-made vocabularies

TokenizerSpec tiny_spm() {
  TokenizerSpec s;
  s.kind = TokenizerKind::kSpm;
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    s.tokens.push_back(name);
    s.types.push_back(TokenType::kByte);
  }
  s.scores.assign(s.tokens.size(), 0.0f);
  const auto add = [&](const char* t, float score) {
    s.tokens.push_back(t);
    s.types.push_back(TokenType::kNormal);
    s.scores.push_back(score);
  };
  add("\xE2\x96\x81", -1);  // 259: ▁
  add("a", -2);             // 260
  add("b", -3);             // 261
  add("ab", -10);           // 262
  add("\xE2\x96\x81"
      "a",
      -5);        // 263: ▁a, preferred over ab
  add("bb", -4);  // 264
  s.bos = 1;
  s.eos = 2;
  s.unk = 0;
  s.add_bos = true;
  return s;
}

TEST(TokenizerSpm, MergesHighestScoreFirstAndFallsBackToBytes) {
  auto tok = Tokenizer::Create(tiny_spm());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // "▁abb": ▁a (-5) ... bb (-4) is higher: bb first, then ▁a; ab never forms.
  EXPECT_EQ((*tok)->encode("abb", false, false), (std::vector<int32_t>{263, 264}));
  // "é" is not in the vocabulary: its two bytes.
  EXPECT_EQ((*tok)->encode("\xC3\xA9", false, false),
            (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ((*tok)->decode((*tok)->encode("a \xC3\xA9", true, false)), "a \xC3\xA9");
}

TEST(TokenizerSpm, WithoutByteTokensUnknownCharactersAreUnk) {
  TokenizerSpec s;
  s.kind = TokenizerKind::kSpm;
  s.tokens = {"<unk>", "\xE2\x96\x81", "a"};
  s.types = {TokenType::kUnknown, TokenType::kNormal, TokenType::kNormal};
  s.unk = 0;
  auto tok = Tokenizer::Create(s);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ((*tok)->encode("a!", false, false), (std::vector<int32_t>{1, 2, 0}));
}

TokenizerSpec tiny_bpe() {
  TokenizerSpec s;
  s.kind = TokenizerKind::kBpe;
  for (int b = 0; b < 256; ++b)
    s.tokens.push_back(unicode::byte_to_unicode(static_cast<uint8_t>(b)));
  s.tokens.push_back(
      "\xC4\xA0"
      "a");                  // 256: Ġa
  s.tokens.push_back("bc");  // 257
  s.tokens.push_back("ab");  // 258
  s.tokens.push_back(
      "\xC4\xA0"
      "abc");                     // 259
  s.tokens.push_back("<tool>");   // 260, user-defined
  s.tokens.push_back("<|eot|>");  // 261, control
  s.types.assign(s.tokens.size(), TokenType::kNormal);
  s.types[260] = TokenType::kUserDefined;
  s.types[261] = TokenType::kControl;
  s.merges = {{"b", "c"},
              {"a", "b"},
              {"\xC4\xA0", "a"},
              {"\xC4\xA0"
               "a",
               "bc"}};
  s.pre_regexes = *PreTokenizer::RegexesFor("gpt2");
  s.eos = 261;
  s.rstrip = {260};
  return s;
}

TEST(TokenizerBpe, MergesLowestRankFirst) {
  auto tok = Tokenizer::Create(tiny_bpe());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // "abc": b+c (rank 0) before a+b (rank 1): a, bc.
  EXPECT_EQ((*tok)->encode("abc", false, false), (std::vector<int32_t>{'a', 257}));
  // " abc": bc, then Ġa, then Ġa+bc.
  EXPECT_EQ((*tok)->encode(" abc", false, false), (std::vector<int32_t>{259}));
  // "ab": a+b.
  EXPECT_EQ((*tok)->encode("ab", false, false), (std::vector<int32_t>{258}));
  // User-defined tokens are matched even in user text; rstrip eats the spaces after.
  EXPECT_EQ((*tok)->encode("x<tool>  ab", false, false), (std::vector<int32_t>{'x', 260, 258}));
  // Control tokens only with parse_special.
  EXPECT_EQ((*tok)->encode("<|eot|>", false, true), std::vector<int32_t>{261});
  EXPECT_GT((*tok)->encode("<|eot|>", false, false).size(), 1u);
  EXPECT_TRUE((*tok)->is_eog(261));
  EXPECT_FALSE((*tok)->add_bos_default());
}

TEST(TokenizerBpe, PreTokenizerFamilies) {
  const auto pieces = [](const std::string& pre, const std::string& text) {
    auto p = PreTokenizer::Create(*PreTokenizer::RegexesFor(pre));
    std::vector<std::string> out;
    for (auto v : (*p)->split(text)) out.emplace_back(v);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("gpt2", "Hello world 12345"), (V{"Hello", " world", " 12345"}));
  EXPECT_EQ(pieces("llama-bpe", "Hello world 12345"), (V{"Hello", " world", " ", "123", "45"}));
  EXPECT_EQ(pieces("qwen2", "I'M 12"), (V{"I", "'M", " ", "1", "2"}));
  EXPECT_EQ(pieces("qwen2", "a  \n\nb"), (V{"a", "  \n\n", "b"}));
  EXPECT_EQ(pieces("tekken", "HelloWorld"), (V{"Hello", "World"}));
  // Unicode letters are letters (PCRE2 UCP), not bytes.
  EXPECT_EQ(pieces("gpt2", "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD"),
            (V{"caf\xC3\xA9", " \xE4\xBD\xA0\xE5\xA5\xBD"}));
  // Invalid UTF-8 lands between matches and nothing is lost.
  const V bad = pieces("qwen2",
                       "ab\xFF\xFE"
                       "cd");
  std::string joined;
  for (const auto& s : bad) joined += s;
  EXPECT_EQ(joined,
            "ab\xFF\xFE"
            "cd");
  EXPECT_FALSE(PreTokenizer::RegexesFor("no-such-family").ok());
  EXPECT_FALSE(PreTokenizer::Create({"(unclosed"}).ok());
}

// ---------------------------------------------------------------- speed

// Guards against quadratic merging: 100 KB in one fragment (SPM) or one
// pre-tokenizer word (a long run of spaces, BPE). The bound is loose: a
// quadratic algorithm takes minutes here, a correct one milliseconds.
TEST(TokenizerSpeed, HundredKilobytesIsFast) {
  std::string prose;
  const std::string p1 = read_manifest("tiny-llama")["prompts_text"][1].get<std::string>();
  while (prose.size() < 100000) prose += p1;
  for (const char* model : kModels) {
    auto tok = model_tokenizer(model);
    ASSERT_NE(tok, nullptr);
    for (const std::string& text : {prose, std::string(100000, ' '), std::string(100000, 'a')}) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto ids = tok->encode(text, true, false);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      EXPECT_LT(s, 2.0) << model << ": " << text.size() << " bytes took " << s << " s";
      EXPECT_EQ(tok->decode(ids), text);
    }
  }
}

// ---------------------------------------------------------------- errors

class TokenizerFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tok_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
  }
  fs::path dir_;
};

TEST_F(TokenizerFiles, MissingOrBrokenFilesAreErrors) {
  EXPECT_FALSE(Tokenizer::Load((dir_ / "nope.gguf").string()).ok());
  EXPECT_EQ(Tokenizer::FromHfFolder(dir_.string()).status().code(), Status::Code::kNotFound);
  write("tokenizer.model", "\x0a\xff\xff\xff\x0f garbage");
  EXPECT_EQ(Tokenizer::FromHfFolder(dir_.string()).status().code(), Status::Code::kCorruption);
  write("tokenizer.model", "");
  EXPECT_FALSE(Tokenizer::FromHfFolder(dir_.string()).ok());
  write("tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  fs::remove(dir_ / "tokenizer.model");
  EXPECT_EQ(Tokenizer::FromHfFolder(dir_.string()).status().code(), Status::Code::kUnsupported);
  write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}},
      "added_tokens": [{"id": 1, "content": "<x>", "special": "yes"}],
      "pre_tokenizer": {"type": "ByteLevel"}})");
  EXPECT_EQ(Tokenizer::FromHfFolder(dir_.string()).status().code(), Status::Code::kCorruption);
  write("tokenizer.json", "{not json");
  EXPECT_FALSE(Tokenizer::FromHfFolder(dir_.string()).ok());
  EXPECT_FALSE(Tokenizer::Create(TokenizerSpec{}).ok());
}

TEST_F(TokenizerFiles, HfTokenizerJsonWithArrayMergesAndAddedTokens) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[unicode::byte_to_unicode(static_cast<uint8_t>(b))] = b;
  vocab["ab"] = 256;
  json tj = {
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({json::array({"a", "b"})})}}},
      {"added_tokens", json::array({{{"id", 257}, {"content", "<|begin|>"}, {"special", true}}})},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<|begin|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}},
  };
  write("tokenizer.json", tj.dump());
  auto tok = Tokenizer::FromHfFolder(dir_.string());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_TRUE((*tok)->add_bos_default());
  EXPECT_EQ((*tok)->bos(), 257);
  EXPECT_EQ((*tok)->encode("ab"), (std::vector<int32_t>{257, 256}));
}

// A model file whose vocabulary is empty cannot be spoken to: the error says so.
TEST(TokenizerErrors, EmptyVocabularyIsAClearError) {
  const std::string path = ::testing::TempDir() + "/empty_vocab_" + std::to_string(::getpid()) + ".gguf";
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_strings("tokenizer.ggml.tokens", {});
  w.set_f32s("tokenizer.ggml.scores", {});
  ASSERT_TRUE(w.begin(path).ok());
  ASSERT_TRUE(w.finish().ok());
  auto file = read_gguf(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto tok = Tokenizer::FromGguf(*file);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("vocabulary"), std::string::npos) << tok.status().message();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace swarm
