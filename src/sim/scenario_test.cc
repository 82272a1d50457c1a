#include "sim/scenario.h"

#include <gtest/gtest.h>

#include "sim/layer_time.h"

namespace swarm::sim {
namespace {

const char* kMinimal = R"(
[model]
layers = 8
d_model = 64
bytes_per_layer = 1e6
[network]
regions = ["lab"]
rtt_ms = [[20]]
[[classes]]
name = "cpu"
count = 2
memory_gb = 1
uplink_mbps = 100
downlink_mbps = 100
layer_time_points = [[1, 0.002]]
[requests]
streams = 1
prompt = 10
output = 10
)";

// The error for kMinimal with `from` replaced by `to`.
std::string error_after(const std::string& from, const std::string& to) {
  std::string text = kMinimal;
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  Result<Scenario> s = parse_scenario(text);
  EXPECT_FALSE(s.ok()) << "accepted: " << to;
  return s.ok() ? "" : s.status().message();
}

TEST(ScenarioTest, ParsesTheMinimalScenario) {
  Result<Scenario> s = parse_scenario(kMinimal);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->model.n_layer, 8);
  EXPECT_EQ(s->classes.size(), 1u);
  EXPECT_EQ(s->classes[0].count, 2);
  EXPECT_DOUBLE_EQ(s->network.rtt_s[0][0], 0.020);
  EXPECT_DOUBLE_EQ(s->classes[0].uplink_bps, 100e6);
  EXPECT_EQ(s->requests.prompt.kind, "fixed");
  EXPECT_DOUBLE_EQ(s->requests.prompt.value, 10);
}

TEST(ScenarioTest, ErrorsNameTheField) {
  EXPECT_NE(error_after("layers = 8", "layers = 0").find("model.layers"), std::string::npos);
  EXPECT_NE(error_after("layers = 8\n", "").find("model.layers is required"), std::string::npos);
  EXPECT_NE(error_after("memory_gb = 1", "memory_gb = -1").find("classes[0].memory_gb"),
            std::string::npos);
  EXPECT_NE(error_after("rtt_ms = [[20]]", "rtt_ms = [[20, 30]]").find("network.rtt_ms[0]"),
            std::string::npos);
  EXPECT_NE(error_after("prompt = 10", "prompt = { kind = \"zipf\" }").find("requests.prompt.kind"),
            std::string::npos);
  EXPECT_NE(error_after("count = 2", "count = 2\ncolour = 3")
                .find("classes[0].colour is not a known field"),
            std::string::npos);
  EXPECT_NE(error_after("streams = 1", "streams = 0").find("requests.arrival_rate"),
            std::string::npos);
  // Memory that holds no layer is refused, naming the class.
  EXPECT_NE(error_after("memory_gb = 1", "memory_gb = 0.001").find("holds no layer"),
            std::string::npos);
  // Without measured points, the hardware's figures are required.
  EXPECT_NE(
      error_after("layer_time_points = [[1, 0.002]]", "").find("classes[0].memory_bandwidth_gbs"),
      std::string::npos);
  EXPECT_NE(error_after("[model]", "[model\n").find("TOML syntax at line"), std::string::npos);
  // A drafter's trace: -1 or the drafts that hold, each entry named.
  EXPECT_NE(error_after("output = 10", "output = 10\n[speculation]\ntrace = [3, -2]")
                .find("speculation.trace[1] must be -1"),
            std::string::npos);
  EXPECT_NE(error_after("output = 10", "output = 10\n[speculation]\ntrace = 3")
                .find("speculation.trace must be an array"),
            std::string::npos);
  EXPECT_NE(error_after("output = 10", "output = 10\nwarmup_output = -1")
                .find("requests.warmup_output"),
            std::string::npos);
  EXPECT_NE(error_after("output = 10", "output = 10\n[speculation]\nmode = \"ngram\"")
                .find("speculation.mode = 'ngram' is not auto or always"),
            std::string::npos);
}

// The drafter's trace, a warm-up request and speculation that always runs, as
// bench/sim_validate.sh writes them; by default the controller decides, as the
// gateway's `--speculate auto`.
TEST(ScenarioTest, ParsesATraceAWarmUpAndTheMode) {
  std::string text = kMinimal;
  text += "warmup_output = 4\n[speculation]\nenabled = true\nmax_drafts = 16\ntrace = [-1, 0, 13, 2]\n";
  Result<Scenario> s = parse_scenario(text);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->requests.warmup_output, 4);
  EXPECT_EQ(s->speculation.max_drafts, 16);
  EXPECT_EQ(s->speculation.trace, (std::vector<int>{-1, 0, 13, 2}));
  EXPECT_FALSE(s->speculation.always);
  s = parse_scenario(text + "mode = \"always\"\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE(s->speculation.always);
}

TEST(ScenarioTest, ParsesTheSharedMachine) {
  Result<Scenario> s = parse_scenario(std::string(kMinimal) + "[machine]\ncores = 2\ngateway_step_us = 250\n");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->machine_cores, 2);
  EXPECT_DOUBLE_EQ(s->machine_gateway_step_s, 250e-6);
  s = parse_scenario(std::string(kMinimal) + "[machine]\ncores = 2\ngateway_step_us = -1\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("gateway_step_us"), std::string::npos) << s.status().message();
}

TEST(ScenarioTest, RooflineComputeTimeAndCapacity) {
  NodeClass c;
  c.memory_bytes = 80e9;
  c.usable_memory_fraction = 0.8;
  c.memory_bandwidth = 2e12;
  c.peak_flops = 300e12;
  c.memory_efficiency = 0.5;
  c.compute_efficiency = 0.5;
  ModelShape m;
  m.n_layer = 126;
  m.bytes_per_layer = 3e9;
  m.flops_per_token_layer = 6e9;
  const LayerTime t(c, m);
  EXPECT_DOUBLE_EQ(t.seconds(1), 3e9 / 1e12);   // memory-bound: 3 ms
  EXPECT_DOUBLE_EQ(t.seconds(64), 3e9 / 1e12);  // 2.56 ms of FLOPs hide under the 3 ms read
  EXPECT_DOUBLE_EQ(t.seconds(128), 128 * 6e9 / 150e12);  // compute-bound: 5.12 ms
  EXPECT_EQ(capacity_layers(c, m), 21);                  // 64 GB / 3 GB
}

TEST(ScenarioTest, ShippedScenariosParse) {
  for (const char* name : {"two-stage-test", "small-swarm", "seed-405b", "central-a100-405b"}) {
    Result<Scenario> s =
        load_scenario(std::string(SWARM_SOURCE_DIR) + "/sim/scenarios/" + name + ".toml");
    EXPECT_TRUE(s.ok()) << name << ": " << s.status().message();
  }
  Result<Scenario> seed =
      load_scenario(std::string(SWARM_SOURCE_DIR) + "/sim/scenarios/seed-405b.toml");
  ASSERT_TRUE(seed.ok());
  int nodes = 0;
  for (const NodeClass& c : seed->classes) nodes += c.count;
  EXPECT_EQ(nodes, 3200);
  EXPECT_EQ(seed->model.n_layer, 126);
  EXPECT_EQ(seed->model.d_model, 16384);
}

}  // namespace
}  // namespace swarm::sim
