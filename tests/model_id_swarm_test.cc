// A node whose file has the test model's header but one weight byte changed
// (what a fine-tune or a tampered file looks like): its model id differs while
// its layout id matches, the gateway never routes through it and says why,
// naming it, and the node itself refuses a session opened for the other weights.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model_loader.h"
#include "net/model_id.h"
#include "swarm/v1/stage.grpc.pb.h"
#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::find_testdata;
using swarm::testing::layers;
using swarm::testing::read_file;
using swarm::testing::run_swarm;
using json = nlohmann::json;

constexpr char kOtherWeights[] =
    "same architecture and layout, other weights (a fine-tune or a modified file)";

class ModelIdSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  std::string tampered_copy() { return SwarmHarness::tampered_copy("blk.1.ffn_down.weight"); }
  // `swarm info ADDRESS` as JSON.
  json info(const std::string& address) {
    auto r = run_swarm("info " + address);
    EXPECT_EQ(r.code, 0) << r.out;
    return json::parse(r.out.substr(0, r.out.find('\n')), nullptr, false);
  }
  swarm::net::ModelIds honest_ids() {
    auto src = swarm::open_model_source(model_);
    EXPECT_TRUE(src.ok());
    auto ids = swarm::net::model_ids(*src);
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    return ids.ok() ? *ids : swarm::net::ModelIds{};
  }
};

TEST_F(ModelIdSwarmTest, GatewayRoutesAroundANodeWithOtherWeights) {
  const std::string prompt = "Once upon a time";
  const std::string want = single_process(prompt, 12);
  ASSERT_FALSE(want.empty());
  ChildProcess* honest = start_node(layers(0, 4));
  ChildProcess* liar = start_node(layers(0, 4), tampered_copy());
  ASSERT_TRUE(honest->ok() && liar->ok());
  const json hi = info(honest->address()), li = info(liar->address());
  ASSERT_TRUE(hi.is_object() && li.is_object());
  EXPECT_EQ(hi["model_id"], honest_ids().model_id);
  EXPECT_EQ(hi["layout_id"], honest_ids().layout_id);
  EXPECT_NE(hi["model_id"], li["model_id"]);
  EXPECT_EQ(hi["layout_id"], li["layout_id"]);

  // Both serve every layer: only the model id tells them apart.
  ASSERT_TRUE(start_gateway({"--peers", liar->address() + "," + honest->address()})->ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(complete(prompt, 12), want) << "request " << i;
  EXPECT_EQ(logged_chain(), std::vector<std::string>{honest->address()})
      << read_file(gateway_log());
  const std::string log = read_file(gateway_log());
  const size_t line = log.find("peer " + liar->address() + " serves model");
  ASSERT_NE(line, std::string::npos) << log;
  EXPECT_NE(log.substr(line, log.find('\n', line) - line).find(kOtherWeights), std::string::npos)
      << log;
  EXPECT_EQ(info(liar->address())["compute_us"], "0") << "the liar ran a step";
}

TEST_F(ModelIdSwarmTest, NoRouteNamesThePeersExcludedForOtherWeightsOrAnotherModel) {
  const std::string other = find_testdata("tiny-qwen2/gguf/tiny-qwen2-Q4_K_M.gguf");
  if (other.empty()) GTEST_SKIP() << "needs tiny-qwen2";
  ChildProcess* liar = start_node(layers(0, 4), tampered_copy());
  ChildProcess* qwen = start_node({}, other);
  ASSERT_TRUE(liar->ok() && qwen->ok());
  ASSERT_TRUE(start_gateway({"--peers", liar->address() + "," + qwen->address()})->ok());
  int status = 0;
  const std::string body = complete("Once upon a time", 4, &status);
  EXPECT_EQ(status, 503) << body;
  EXPECT_NE(body.find("no route"), std::string::npos) << body;
  const size_t at = body.find(liar->address() + " [0,4)");
  ASSERT_NE(at, std::string::npos) << body;
  EXPECT_NE(body.find(kOtherWeights, at), std::string::npos) << body;
  const size_t q = body.find(qwen->address());
  ASSERT_NE(q, std::string::npos) << body;
  EXPECT_NE(body.find("another model", q), std::string::npos) << body;
}

TEST_F(ModelIdSwarmTest, NodeRefusesASessionForOtherWeights) {
  ChildProcess* liar = start_node(layers(0, 4), tampered_copy());
  ASSERT_TRUE(liar->ok());
  const swarm::net::ModelIds ids = honest_ids();
  auto refusal = [&](const std::string& layout_id) {
    auto stub = swarm::v1::Stage::NewStub(
        grpc::CreateChannel(liar->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stream = stub->Session(&ctx);
    swarm::v1::StageRequest req;
    swarm::v1::OpenSession* o = req.mutable_open();
    o->set_session_id("s");
    o->set_model_id(ids.model_id);
    o->set_layout_id(layout_id);
    o->set_first_layer(0);
    o->set_last_layer(4);
    o->set_max_length(16);
    o->set_is_first(true);
    o->set_is_last(true);
    EXPECT_TRUE(stream->Write(req));
    swarm::v1::StageResponse res;
    EXPECT_TRUE(stream->Read(&res));
    stream->WritesDone();
    ctx.TryCancel();
    EXPECT_EQ(res.kind_case(), swarm::v1::StageResponse::kError) << res.DebugString();
    EXPECT_EQ(res.error().code(), grpc::StatusCode::FAILED_PRECONDITION);
    return res.error().message();
  };
  const std::string same_layout = refusal(ids.layout_id);
  EXPECT_NE(same_layout.find(kOtherWeights), std::string::npos) << same_layout;
  const std::string other_layout = refusal(std::string(64, 'e'));
  EXPECT_NE(other_layout.find("another model"), std::string::npos) << other_layout;
  EXPECT_EQ(other_layout.find("other weights"), std::string::npos) << other_layout;
}

TEST_F(ModelIdSwarmTest, ModelIdCommandPrintsIdsAndProvesLayers) {
  const std::string tampered = tampered_copy();
  auto r = run_swarm("model-id -m " + tampered);
  ASSERT_EQ(r.code, 0) << r.out;
  const json first = json::parse(r.out.substr(r.out.find('{')), nullptr, false);
  ASSERT_TRUE(first.is_object()) << r.out;
  EXPECT_EQ(first["layout_id"], honest_ids().layout_id);
  EXPECT_NE(first["model_id"], honest_ids().model_id);
  EXPECT_EQ(first["cache"], tampered + ".swarm-id");
  r = run_swarm("model-id -m " + tampered);
  const json second = json::parse(r.out.substr(r.out.find('{')), nullptr, false);
  EXPECT_EQ(second["from_cache"], true) << r.out;
  EXPECT_EQ(second["bytes_hashed"], 0) << r.out;
  EXPECT_EQ(second["model_id"], first["model_id"]);

  // A proof of the honest model's layers 1:3 verifies against it, not against the tampered file.
  r = run_swarm("model-id -m " + model_ + " --proof --layers 1:3");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string proof = dir_ + "/proof.json";
  std::ofstream(proof) << r.out.substr(r.out.find('{'));
  r = run_swarm("model-id -m " + model_ + " --verify " + proof);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("verifies"), std::string::npos) << r.out;
  r = run_swarm("model-id -m " + tampered + " --verify " + proof);
  EXPECT_NE(r.code, 0) << r.out;
}

}  // namespace
