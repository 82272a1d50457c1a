// `swarm devices` on this machine: the CPU, and where Mesa's lavapipe is
// installed (make test installs it), its software Vulkan device with subgroup
// support; elsewhere a note naming what is missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/test_process.h"

namespace {

using json = nlohmann::json;

bool lavapipe_installed() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/share/vulkan/icd.d", ec))
    if (e.path().filename().string().rfind("lvp_icd", 0) == 0) return true;
  return false;
}

TEST(DevicesTest, ListsTheCpuAndTheVulkanDevicesThereAre) {
  auto r = swarm::testing::run_swarm("devices --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const json j = json::parse(r.out.substr(std::min(r.out.find('{'), r.out.size())), nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  ASSERT_FALSE(j["devices"].empty());
  const json& cpu = j["devices"][0];
  EXPECT_EQ(cpu["id"], "cpu");
  EXPECT_GE(cpu["threads"].get<int>(), 1);
  EXPECT_EQ(cpu["default"], true);  // lavapipe is never the default; no discrete GPU here
  if (!lavapipe_installed()) {
    EXPECT_TRUE(j.contains("vulkan_note")) << r.out;
    return;
  }
  bool found = false;
  for (const json& d : j["devices"])
    if (d["backend"] == "vulkan" && d["name"].get<std::string>().rfind("llvmpipe", 0) == 0) {
      found = true;
      EXPECT_EQ(d["type"], "cpu");
      EXPECT_GT(d["subgroup_size"].get<int>(), 0);
      EXPECT_GT(d["memory_bytes"].get<uint64_t>(), 0u);
      EXPECT_EQ(d["id"].get<std::string>().rfind("vulkan:", 0), 0u);
    }
  EXPECT_TRUE(found) << "lavapipe is installed but not listed:\n" << r.out;
  // The text form names it too.
  auto text = swarm::testing::run_swarm("devices");
  EXPECT_NE(text.out.find("llvmpipe"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("(default)"), std::string::npos) << text.out;
}

std::string shipped_model() { return std::string(SWARM_SOURCE_DIR) + "/models/kjv-target-Q8_0.gguf"; }

// --device on the commands that load a model: the CPU by name, or by default
// here (no discrete GPU), and a name that is no device refused naming the flag
// and the forms it takes, before anything loads.
TEST(DevicesTest, CommandsRunOnTheDeviceNamedOrTheDefault) {
  const std::string m = shipped_model();
  auto cpu = swarm::testing::run_swarm("generate -m " + m + " -p 'In the beginning' -n 4 --temp 0 --device cpu");
  auto dflt = swarm::testing::run_swarm("generate -m " + m + " -p 'In the beginning' -n 4 --temp 0");
  ASSERT_EQ(cpu.code, 0) << cpu.out;
  ASSERT_EQ(dflt.code, 0) << dflt.out;
  const std::string text = cpu.out.substr(0, cpu.out.find("prompt:"));
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(dflt.out.substr(0, dflt.out.find("prompt:")), text);
  auto bench = swarm::testing::run_swarm("bench -m " + m + " -p 8 -n 4 -r 1 --json --device cpu");
  ASSERT_EQ(bench.code, 0) << bench.out;
  EXPECT_NE(bench.out.find("\"device\":\"cpu\""), std::string::npos) << bench.out;
  for (const std::string& cmd :
       {"generate -m " + m + " -p x -n 1", "logits -m " + m + " --tokens 1,2", "bench -m " + m,
        "serve -m " + m + " --listen 127.0.0.1:0", "node -m " + m + " --listen 127.0.0.1:0"}) {
    auto bad = swarm::testing::run_swarm(cmd + " --device gpu0");
    EXPECT_NE(bad.code, 0) << cmd << ": " << bad.out;
    EXPECT_NE(bad.out.find("device 'gpu0' is not one of: cpu, vulkan, vulkan:N"), std::string::npos)
        << cmd << ": " << bad.out;
  }
}

}  // namespace
