// The `swarm` binary as users and scripts call it: outputs, exit codes, and the
// messages bad input gets.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sys/stat.h>

#include "engine/test_data.h"
#include "engine/test_process.h"
#include "engine/tokenizer.h"
#include "net/identity.h"

namespace {

using swarm::testing::find_testdata;
using swarm::testing::read_raw;

using swarm::testing::CmdResult;
using swarm::testing::shell_quote;

CmdResult swarm(const std::string& args) { return swarm::testing::run_swarm(args); }

std::string temp(const std::string& name) {
  return ::testing::TempDir() + "/cli_" + std::to_string(::getpid()) + "_" + name;
}

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    ASSERT_FALSE(model_.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
    ids_ = read_raw<int32_t>(find_testdata("tiny-llama/ref/Q8_0/p0_ids.i32"));
  }
  std::string model_;
  std::vector<int32_t> ids_;
};

TEST_F(CliTest, LogitsWritesRawFloat32MatchingReference) {
  const std::string out = temp("logits.f32");
  CmdResult r = swarm("logits -m " + model_ + " --tokens " + join(ids_) + " -o " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<float> got = read_raw<float>(out), want = read_raw<float>(find_testdata("tiny-llama/ref/Q8_0/p0_logits.f32"));
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(got.size(), ids_.size() * 1024);
  double s = 0, err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    s = std::max(s, std::fabs(static_cast<double>(want[i])));
    err = std::max(err, std::fabs(static_cast<double>(got[i]) - want[i]));
  }
  EXPECT_LE(err, 0.04 * s);
  std::remove(out.c_str());
}

TEST_F(CliTest, HiddenChainedThroughFilesEqualsOneRun) {
  const std::string whole = temp("h.f32"), first = temp("h1.f32"), second = temp("h2.f32");
  const std::string tokens = " --tokens " + join(ids_);
  ASSERT_EQ(swarm("hidden -m " + model_ + tokens + " --layers 0:4 -o " + whole).code, 0);
  ASSERT_EQ(swarm("hidden -m " + model_ + tokens + " --layers 0:1 -o " + first).code, 0);
  CmdResult r = swarm("hidden -m " + model_ + tokens + " --layers 1:4 --input " + first + " -o " + second);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<float> a = read_raw<float>(whole), b = read_raw<float>(second);
  ASSERT_EQ(a.size(), ids_.size() * 256);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // An input of the wrong size is refused with both sizes named.
  r = swarm("hidden -m " + model_ + " --tokens 1,2 --layers 1:4 --input " + first);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(first), std::string::npos) << r.out;
  for (const std::string& p : {whole, first, second}) std::remove(p.c_str());
}

TEST_F(CliTest, GenerateStreamsTheRequestedNumberOfTokens) {
  CmdResult r = swarm("generate -m " + model_ + " --tokens " + join(ids_) + " -n 6 -t 1 --temp 0 --ids");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string first_line = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(std::count(first_line.begin(), first_line.end(), ','), 5) << r.out;
  EXPECT_NE(r.out.find("tok/s"), std::string::npos);
  // Greedy: the first generated token is the reference's.
  const std::vector<int32_t> greedy = read_raw<int32_t>(find_testdata("tiny-llama/ref/Q8_0/p0_greedy.i32"));
  EXPECT_EQ(first_line.substr(0, first_line.find(',')), std::to_string(greedy[0]));
}

// Text in, text out: the reference prompt, continued greedily, decodes to the
// text of the reference's greedy tokens; chat mode renders a template.
TEST_F(CliTest, GenerateTextIsTheDecodedGreedyContinuation) {
  CmdResult ids = swarm("generate -m " + model_ + " --tokens " + join(ids_) + " -n 8 -t 1 --temp 0 --ids");
  ASSERT_EQ(ids.code, 0) << ids.out;
  CmdResult text = swarm("generate -m " + model_ + " -p \"The licensee may copy and distribute verbatim copies of "
                         "the Program's source code\" -n 8 -t 1 --temp 0");
  ASSERT_EQ(text.code, 0) << text.out;
  // Decode the ids with the library's streaming decoder: the CLI must print exactly that.
  auto tok = swarm::Tokenizer::Load(model_);
  ASSERT_TRUE(tok.ok());
  swarm::TokenStreamDecoder decoder(**tok);
  for (int32_t id : ids_) decoder.push(id);  // the text continues the prompt
  std::string want;
  const std::string id_line = ids.out.substr(0, ids.out.find('\n'));
  for (size_t i = 0; i <= id_line.size();) {
    const size_t comma = std::min(id_line.find(',', i), id_line.size());
    want += decoder.push(std::stoi(id_line.substr(i, comma - i)));
    i = comma + 1;
  }
  want += decoder.flush();
  EXPECT_EQ(text.out.substr(0, text.out.find('\n')), want);
  EXPECT_NE(text.out.find("tok/s"), std::string::npos);
  CmdResult chat = swarm("generate -m " + model_ + " --chat Hello --system Brief -n 4 -t 1 --seed 5");
  ASSERT_EQ(chat.code, 0) << chat.out;
  EXPECT_NE(chat.out.find("chat template"), std::string::npos) << chat.out;
  // The same seed gives the same text.
  CmdResult again = swarm("generate -m " + model_ + " --chat Hello --system Brief -n 4 -t 1 --seed 5");
  EXPECT_EQ(chat.out.substr(0, chat.out.find('\n')), again.out.substr(0, again.out.find('\n')));
}

TEST_F(CliTest, BenchPrintsOneJsonLine) {
  CmdResult r = swarm("bench -m " + model_ + " -p 8 -n 4 -r 1 -t 1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  for (const char* key :
       {"model", "type", "threads", "prefill_tok_s", "decode_tok_s", "decode_bw_fraction",
        "read_bw_gbs", "read_bw_best_gbs", "decode_bw_fraction_of_best", "weights_read_gbs",
        "decode_weights_read_fraction"})
    EXPECT_TRUE(j.contains(key)) << key << " missing from " << r.out;
  EXPECT_EQ(j["type"], "Q8_0");
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0);
  EXPECT_GT(j["decode_bw_fraction"].get<double>(), 0);
  // The bandwidth is the median of the passes taken between decode steps: never
  // above the best of them.
  EXPECT_GT(j["read_bw_gbs"].get<double>(), 0);
  EXPECT_LE(j["read_bw_gbs"].get<double>(), j["read_bw_best_gbs"].get<double>());
  EXPECT_GT(j["weights_read_gbs"].get<double>(), 0);
  EXPECT_GT(j["decode_weights_read_fraction"].get<double>(), 0);
}

TEST_F(CliTest, TokenizePrintsTheReferenceIds) {
  const std::string text = "The licensee may copy and distribute verbatim copies of the Program's source code";
  CmdResult r = swarm("tokenize -m " + model_ + " " + shell_quote(text));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, join(ids_) + "\n");
  r = swarm("tokenize -m " + model_ + " --no-bos " + shell_quote(text));
  EXPECT_EQ(r.out, join(std::vector<int32_t>(ids_.begin() + 1, ids_.end())) + "\n");
  // <s> is BOS only with --special.
  r = swarm("tokenize -m " + model_ + " --no-bos --special '<s>'");
  EXPECT_EQ(r.out, "1\n");
  r = swarm("tokenize -m " + model_ + " --no-bos '<s>'");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out, "1\n");
}

TEST_F(CliTest, BadInputGetsAClearErrorAndNonZeroExit) {
  struct Case { std::string args, must_mention; };
  for (const Case& c : std::vector<Case>{
           {"logits -m /nonexistent/model.gguf --tokens 1", "/nonexistent/model.gguf"},
           {"logits -m " + model_ + " --tokens 1,x,3", "'x'"},
           {"logits -m " + model_ + " --tokens 1,99999", "99999"},
           {"hidden -m " + model_ + " --tokens 1 --layers 3:1", "3:1"},
           {"hidden -m " + model_ + " --tokens 1 --layers 0:9", "0:9"},
           {"synth --shape no-such-model -o /tmp/x.gguf", "no-such-model"},
           {"generate -m " + model_ + " -p 'a long prompt that cannot fit' -c 3", "context holds 3"},
           {"generate -m " + model_ + " --chat hi --chat-template no-such-family", "no-such-family"},
           {"generate -m /nonexistent.gguf -p hi", "/nonexistent.gguf"},
           {"logits -m " + std::string(SWARM_SOURCE_DIR) + "/README.md --tokens 1", "README.md"},
           {"tokenize -m /nonexistent/model.gguf hello", "/nonexistent/model.gguf"},
           {"serve -m " + model_ + " --listen nonsense", "nonsense"},
           {"serve -m " + model_ + " --listen 127.0.0.1:70000", "70000"},
           {"serve -m " + model_ + " --listen 127.0.0.1:0 --chat-template no-such-family", "no-such-family"},
           {"serve -m /nonexistent.gguf --listen 127.0.0.1:0", "/nonexistent.gguf"},
           {"node -m " + model_ + " --slowdown 0.5", "--slowdown: Value 0.5 not in range 1"},
           {"node -m " + model_ + " --slowdown fast", "--slowdown: Value fast"},
       }) {
    CmdResult r = swarm(c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.out.find(c.must_mention), std::string::npos) << c.args << " said: " << r.out;
  }
}

// `swarm convert` end to end: the file it writes tokenizes and computes as the
// folder does, and bad input exits non-zero, names the problem, leaves no file.
TEST(CliConvert, ConvertedFileTokenizesAndComputesLikeTheFolder) {
  ASSERT_FALSE(find_testdata("tiny-qwen2/hf/model.safetensors").empty()) << "tiny-qwen2/hf is missing from tests/data";
  const std::string hf = find_testdata("tiny-qwen2/hf"), out = temp("qwen2-F32.gguf");
  CmdResult r = swarm("convert " + hf + " -o " + out + " --type F32");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("tokenizer gpt2 (qwen2)"), std::string::npos) << r.out;
  const std::string text = shell_quote("Hello world! 12345 <|im_start|>");
  for (const std::string flags : {"", "--special "}) {
    CmdResult a = swarm("tokenize -m " + hf + " " + flags + text), b = swarm("tokenize -m " + out + " " + flags + text);
    EXPECT_EQ(a.code, 0) << a.out;
    EXPECT_EQ(b.out, a.out);
  }
  const std::string la = temp("hf.f32"), lb = temp("gguf.f32");
  ASSERT_EQ(swarm("logits -m " + hf + " --tokens 5,77,300,2 -o " + la).code, 0);
  ASSERT_EQ(swarm("logits -m " + out + " --tokens 5,77,300,2 -o " + lb).code, 0);
  ASSERT_EQ(read_raw<float>(la).size(), 4u * 1024);
  EXPECT_EQ(read_raw<float>(la), read_raw<float>(lb));  // qwen2 is not permuted: the same floats
  for (const std::string& f : {out, la, lb}) std::remove(f.c_str());

  const std::string bad = temp("bad.gguf");
  r = swarm("convert " + hf + " -o " + bad + " --type Q4_K");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("Q4_K"), std::string::npos) << r.out;
  r = swarm("convert /nonexistent/folder -o " + bad);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("/nonexistent/folder"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(bad));
}

// keygen needs no model: it writes a private key file and prints the node id.
TEST(CliKeygen, CreatesAPrivateKeyAndRefusesToReplaceItWithoutForce) {
  const std::string home = temp("keygen_home");
  std::filesystem::remove_all(home);
  const char* old_home = std::getenv("HOME");
  const std::string saved_home = old_home ? old_home : "";
  ::setenv("HOME", home.c_str(), 1);
  ::unsetenv("XDG_CONFIG_HOME");
  auto mode_of = [](const std::string& p) {
    struct stat st;
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  };
  // The node id is the output's one line of 40 hex digits (stderr says where it wrote).
  auto first_line = [](const std::string& s) {
    size_t at = 0;
    while (at < s.size()) {
      const size_t end = std::min(s.find('\n', at), s.size());
      const std::string line = s.substr(at, end - at);
      if (line.size() == 40 && line.find_first_not_of("0123456789abcdef") == std::string::npos) return line;
      at = end + 1;
    }
    return std::string("(no node id in output)");
  };

  const std::string key = home + "/.config/swarm/node.key";
  CmdResult r = swarm("keygen");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string id = first_line(r.out);
  EXPECT_EQ(mode_of(key), 0600u);
  EXPECT_EQ(mode_of(home + "/.config/swarm"), 0700u);
  auto loaded = swarm::net::Identity::Load(key);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(id, loaded->node_id());

  r = swarm("keygen");  // the existing identity is kept
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(key), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--force"), std::string::npos) << r.out;
  EXPECT_EQ(swarm::net::Identity::Load(key)->node_id(), id);

  r = swarm("keygen --force");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(first_line(r.out), id);
  EXPECT_EQ(swarm::net::Identity::Load(key)->node_id(), first_line(r.out));

  const std::string other = home + "/elsewhere/a.key";
  r = swarm("keygen -o " + other);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(mode_of(other), 0600u);
  ASSERT_EQ(::chmod(other.c_str(), 0644), 0);
  r = swarm("keygen -o " + other);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("0644"), std::string::npos) << r.out;

  if (old_home) ::setenv("HOME", saved_home.c_str(), 1);
  std::filesystem::remove_all(home);
}

}  // namespace

namespace {

// Greedy speculative decoding with the shipped pair, in one process: whatever the
// drafts, the output is the plain greedy output (spec-eval fails otherwise), and a
// draft model trained on the same text gets some of its drafts accepted.
TEST(CliSpecEval, ShippedDraftSpeculatesLosslesslyForTheShippedTarget) {
  const std::string dir = std::string(SWARM_SOURCE_DIR) + "/models/";
  for (const std::string& drafter : std::vector<std::string>{"ngram", "draft:" + dir + "kjv-draft-Q8_0.gguf"}) {
    CmdResult r = swarm("spec-eval -m " + dir + "kjv-target-Q8_0.gguf --drafter " + drafter +
                        " -k 3,6 -n 24 -p 'And God said' -p 'Psalms 2\n1 Why do the heathen'");
    ASSERT_EQ(r.code, 0) << r.out;
    int lines = 0;
    for (size_t at = 0; at < r.out.size(); at = r.out.find('\n', at) + 1) {
      auto j = nlohmann::json::parse(r.out.substr(at, r.out.find('\n', at) - at), nullptr, false);
      if (!j.is_object()) break;
      ++lines;
      EXPECT_TRUE(j["identical_to_plain"].get<bool>());
      EXPECT_EQ(j["tokens"], 48);
      if (drafter != "ngram") {
        EXPECT_GT(j["acceptance_rate"].get<double>(), 0.0) << r.out;
      }
    }
    EXPECT_EQ(lines, 2) << r.out;
  }
  CmdResult bad = swarm("spec-eval -m " + dir + "kjv-target-Q8_0.gguf --drafter magic -p x");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("--drafter: 'magic'"), std::string::npos) << bad.out;
}

// --trace: per prompt, the drafter's guess after every context length from
// the prompt and the first token on: the draft model always has one (never
// -1), at most the largest -k of which hold, and some do.
TEST(CliSpecEval, TraceSaysWhatTheDrafterDraftsAtEveryPointOfTheText) {
  const std::string dir = std::string(SWARM_SOURCE_DIR) + "/models/";
  CmdResult r = swarm("spec-eval -m " + dir + "kjv-target-Q8_0.gguf --drafter draft:" + dir +
                      "kjv-draft-Q8_0.gguf -k 3,6 -n 24 --trace -p 'And God said'");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')), nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["k"], 6);
  EXPECT_EQ(j["from"].get<int>(), j["prompt_tokens"].get<int>() + 1);
  const std::vector<int> trace = j["trace"].get<std::vector<int>>();
  EXPECT_EQ(trace.size(), 23u) << r.out;  // lengths prompt + 1 .. prompt + 23
  int held = 0;
  for (int t : trace) {
    EXPECT_GE(t, 0) << r.out;
    EXPECT_LE(t, 6) << r.out;
    held += t;
  }
  EXPECT_GT(held, 0) << r.out;
}

}  // namespace
