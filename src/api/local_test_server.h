// For the in-process HTTP tests: what `swarm serve` runs (an OpenAiServer over
// a LocalBackend of one model file), listening on 127.0.0.1 at a free port.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "api/openai_server.h"
#include "engine/test_data.h"
#include "pipeline/local_backend.h"

namespace swarm::testing {

struct LocalTestServer {
  // Declared in the order they are built: destroyed server first.
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LocalBackend> backend;
  std::unique_ptr<OpenAiServer> server;
  int port = 0;

  // `model` is a testdata path (find_testdata); the server answers to "tiny".
  // nullptr when the model is missing or anything fails to start.
  static std::unique_ptr<LocalTestServer> Start(const std::string& model, int context_length) {
    const std::string path = find_testdata(model);
    if (path.empty()) return nullptr;
    auto out = std::make_unique<LocalTestServer>();
    auto tok = Tokenizer::Load(path);
    auto m = Model::Load(path);
    if (!tok.ok() || !m.ok()) return nullptr;
    out->tokenizer = std::move(tok).value();
    // With the token bytes a grammar needs, as `swarm serve` gives them.
    out->backend = std::make_unique<LocalBackend>(
        std::move(m).value(),
        LocalBackendOptions{.threads = 1,
                            .context_length = context_length,
                            .grammar_vocab = GrammarVocab::from_tokenizer(*out->tokenizer)});
    ApiOptions o;
    o.model_names = {"tiny"};
    o.tokenizer = out->tokenizer.get();
    auto server = OpenAiServer::Create(o, *out->backend);
    if (!server.ok()) return nullptr;
    out->server = std::move(server).value();
    auto port = out->server->listen("127.0.0.1", 0);
    if (!port.ok()) return nullptr;
    out->port = *port;
    return out;
  }
};

// A test suite whose tests share one LocalTestServer, started once per suite:
// `Derived` (the suite itself) names the model, kServerModel, and the
// context, kServerContext. A model that is missing fails every test.
template <class Derived>
class LocalServerSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    local_ = LocalTestServer::Start(Derived::kServerModel, Derived::kServerContext).release();
    if (local_ == nullptr) return;
    tok_ = local_->tokenizer.get();
    backend_ = local_->backend.get();
    server_ = local_->server.get();
    port_ = local_->port;
  }
  static void TearDownTestSuite() { delete local_; }
  void SetUp() override { ASSERT_NE(server_, nullptr) << Derived::kServerModel << " did not load"; }

  static inline LocalTestServer* local_ = nullptr;
  static inline Tokenizer* tok_ = nullptr;
  static inline LocalBackend* backend_ = nullptr;
  static inline OpenAiServer* server_ = nullptr;
  static inline int port_ = 0;
};

}  // namespace swarm::testing
