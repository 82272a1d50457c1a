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

}  // namespace
