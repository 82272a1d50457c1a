// The device list (engine/compute_devices.h): the CPU is always first, and a
// command's default is the first discrete GPU, else the CPU, never a software
// Vulkan device.
#include "engine/compute_devices.h"

#include <gtest/gtest.h>

namespace swarm {
namespace {

ComputeDevice vulkan(int index, const char* type) {
  ComputeDevice d;
  d.backend = "vulkan";
  d.index = index;
  d.type = type;
  return d;
}

TEST(ComputeDevicesTest, TheDefaultIsTheFirstDiscreteGpuElseTheCpu) {
  ComputeDevice cpu;
  cpu.backend = "cpu";
  cpu.type = "cpu";
  EXPECT_EQ(default_device({cpu}).id(), "cpu");
  // lavapipe (a "cpu" type Vulkan device) and an integrated GPU: still the CPU.
  EXPECT_EQ(default_device({cpu, vulkan(0, "cpu"), vulkan(1, "integrated")}).id(), "cpu");
  EXPECT_EQ(default_device({cpu, vulkan(0, "integrated"), vulkan(1, "discrete"), vulkan(2, "discrete")})
                .id(),
            "vulkan:1");
}

TEST(ComputeDevicesTest, TheCpuIsListedFirstWithItsThreadsAndMemory) {
  const DeviceList list = list_compute_devices();
  ASSERT_FALSE(list.devices.empty());
  EXPECT_EQ(list.devices.front().id(), "cpu");
  EXPECT_GE(list.devices.front().threads, 1);
  EXPECT_GT(list.devices.front().memory_bytes, 0u);
  EXPECT_FALSE(list.devices.front().name.empty());
  // Either Vulkan devices, or a note saying why there are none.
  EXPECT_TRUE(list.devices.size() > 1 || !list.vulkan_note.empty());
}

}  // namespace
}  // namespace swarm
