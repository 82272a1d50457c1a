// POST /v1/embeddings over HTTP on 127.0.0.1 with the test model: OpenAI's
// shape, vectors of unit norm equal to the model's mean-pooled final hidden
// states (computed here straight from Model), the same for the same input
// however it is given (text, ids, alone or in a batch, float or base64), caps
// and errors naming the field, and a 404 from a backend without weights.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sodium.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "api/local_test_server.h"
#include "api/openai_server.h"
#include "engine/pooling.h"
#include "engine/test_data.h"
#include "pipeline/local_backend.h"

namespace swarm {
namespace {

using nlohmann::json;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";

struct Reply {
  int status = -1;
  json j;
};

Reply post(int port, const json& body, const std::string& path = "/v1/embeddings") {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.j = json::parse(r->body, nullptr, false);
  return out;
}

// A backend with no weights (as a gateway's): no embeddings.
class NoWeights : public GenerationBackend {
 public:
  Result<GenerationResult> generate(const GenerationRequest&, const TokenCallback&) override {
    return GenerationResult{};
  }
  int context_length() const override { return 64; }
};

class EmbeddingsHttpTest : public testing::LocalServerSuite<EmbeddingsHttpTest> {
 public:
  static constexpr const char* kServerModel = kModel;
  static constexpr int kServerContext = 64;

 protected:

  // What the model gives for `ids`, straight from its parts.
  static std::vector<float> direct(const std::vector<int32_t>& ids) {
    const Model& m = backend_->model();
    const int d = m.config().n_embd;
    const int64_t n = static_cast<int64_t>(ids.size());
    ThreadPool pool(1);
    auto cache = m.new_cache(static_cast<int>(n));
    std::vector<float> h(n * d), normed(n * d);
    EXPECT_TRUE(m.embed(ids.data(), n, h.data()).ok());
    EXPECT_TRUE(m.run_layers(h.data(), {{cache.get(), static_cast<int>(n)}}, 0, m.config().n_layer, pool).ok());
    EXPECT_TRUE(m.final_norm(h.data(), n, normed.data()).ok());
    return mean_pool_normalized(normed.data(), n, d);
  }

};

std::vector<float> floats(const json& e) { return e.get<std::vector<float>>(); }

TEST_F(EmbeddingsHttpTest, ShapeNormAndTheModelsNumbers) {
  const Reply r = post(port_, {{"model", "tiny"}, {"input", {"The cat sat.", "A dog ran.", "The cat sat."}}});
  ASSERT_EQ(r.status, 200) << r.j.dump();
  EXPECT_EQ(r.j["object"], "list");
  EXPECT_EQ(r.j["model"], "tiny");
  ASSERT_EQ(r.j["data"].size(), 3u);
  const int d = backend_->model().config().n_embd;
  std::vector<std::vector<float>> v;
  for (size_t i = 0; i < 3; ++i) {
    const json& e = r.j["data"][i];
    EXPECT_EQ(e["object"], "embedding");
    EXPECT_EQ(e["index"], i);
    v.push_back(floats(e["embedding"]));
    ASSERT_EQ(v.back().size(), static_cast<size_t>(d));
    double norm = 0;
    for (float x : v.back()) norm += static_cast<double>(x) * x;
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-5);
  }
  EXPECT_EQ(v[0], v[2]);  // identical inputs, identical vectors
  EXPECT_NE(v[0], v[1]);
  const std::vector<int32_t> ids = tok_->encode("The cat sat.", tok_->add_bos_default(), false);
  EXPECT_EQ(v[0], direct(ids));
  const int64_t tokens = static_cast<int64_t>(
      2 * ids.size() + tok_->encode("A dog ran.", tok_->add_bos_default(), false).size());
  EXPECT_EQ(r.j["usage"]["prompt_tokens"], tokens);
  EXPECT_EQ(r.j["usage"]["total_tokens"], tokens);

  // The same input as one string, as token ids, as a list of id lists, in base64.
  EXPECT_EQ(floats(post(port_, {{"input", "The cat sat."}}).j["data"][0]["embedding"]), v[0]);
  EXPECT_EQ(floats(post(port_, {{"input", ids}}).j["data"][0]["embedding"]), v[0]);
  EXPECT_EQ(floats(post(port_, {{"input", {ids, ids}}}).j["data"][1]["embedding"]), v[0]);
  const Reply b64 = post(port_, {{"input", "The cat sat."}, {"encoding_format", "base64"}});
  ASSERT_EQ(b64.status, 200);
  const std::string text = b64.j["data"][0]["embedding"];
  std::vector<unsigned char> bytes(text.size());
  size_t len = 0;
  ASSERT_EQ(sodium_base642bin(bytes.data(), bytes.size(), text.data(), text.size(), nullptr, &len,
                              nullptr, sodium_base64_VARIANT_ORIGINAL),
            0);
  ASSERT_EQ(len, d * sizeof(float));
  std::vector<float> decoded(d);
  std::memcpy(decoded.data(), bytes.data(), len);
  EXPECT_EQ(decoded, v[0]);
}

TEST_F(EmbeddingsHttpTest, BadInputsAreRefusedNamingTheField) {
  struct Case {
    json body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {json::object(), "input"},
      {{{"input", ""}}, "input"},
      {{{"input", json::array()}}, "input"},
      {{{"input", {"ok", 5}}}, "input[1]"},
      {{{"input", {1, -1}}}, "input"},
      {{{"input", {{1, 2}, {1, 1 << 20}}}}, "input[1]"},
      {{{"input", "x"}, {"encoding_format", "int8"}}, "encoding_format"},
      {{{"input", "x"}, {"dimensions", 8}}, "dimensions"},
      {{{"input", std::vector<int>(65, 1)}}, "input"},  // over the context of 64
      {{{"input", std::vector<std::string>(2049, "a")}}, "input"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body.dump().substr(0, 200));
    const Reply r = post(port_, c.body);
    EXPECT_EQ(r.status, 400) << r.j.dump().substr(0, 400);
    EXPECT_EQ(r.j["error"]["param"], c.param) << r.j.dump().substr(0, 400);
  }
}

TEST_F(EmbeddingsHttpTest, ABackendWithoutWeightsAnswers404) {
  NoWeights none;
  ApiOptions o;
  o.model_names = {"gw"};
  o.tokenizer = tok_;
  auto server = OpenAiServer::Create(o, none);
  ASSERT_TRUE(server.ok());
  const int port = *(*server)->listen("127.0.0.1", 0);
  const Reply r = post(port, {{"input", "hello"}});
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.j["error"]["message"].get<std::string>().find("swarm serve"), std::string::npos);
}

}  // namespace
}  // namespace swarm
