// swarm devices [--json]
// What this machine can compute on: the CPU, and every device its Vulkan
// drivers report (GPUs of any make, and software devices such as Mesa's
// lavapipe), with memory, subgroup support and cooperative matrices, marking
// the one a command would use by default: the first discrete GPU, else the CPU
// (engine/compute_devices.h). Without a Vulkan driver it says why.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "engine/compute_devices.h"

namespace swarm::cli {

void register_devices(CLI::App& app) {
  auto json_out = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("devices", "List the CPU and GPUs this machine can compute on");
  cmd->add_flag("--json", *json_out, "One JSON object instead of text");
  cmd->callback([json_out] {
    const DeviceList list = list_compute_devices();
    const ComputeDevice& chosen = default_device(list.devices);
    if (*json_out) {
      nlohmann::json devices = nlohmann::json::array();
      for (const ComputeDevice& d : list.devices) {
        nlohmann::json j = {{"id", d.id()},
                            {"backend", d.backend},
                            {"name", d.name},
                            {"type", d.type},
                            {"memory_bytes", d.memory_bytes},
                            {"default", &d == &chosen}};
        if (d.backend == "cpu") {
          j["threads"] = d.threads;
        } else {
          j["api_version"] = d.api_version;
          j["driver"] = d.driver;
          j["subgroup_size"] = d.subgroup_size;
          j["subgroup_arithmetic"] = d.subgroup_arithmetic;
          j["cooperative_matrix"] = d.cooperative_matrix;
        }
        devices.push_back(std::move(j));
      }
      nlohmann::json out = {{"devices", devices}};
      if (!list.vulkan_note.empty()) out["vulkan_note"] = list.vulkan_note;
      std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return;
    }
    for (const ComputeDevice& d : list.devices) {
      std::printf("%-10s %s%s\n", d.id().c_str(), d.name.c_str(), &d == &chosen ? "  (default)" : "");
      if (d.backend == "cpu") {
        std::printf("           %d threads, %.1f GiB memory\n", d.threads,
                    static_cast<double>(d.memory_bytes) / (1ull << 30));
      } else {
        const std::string driver = d.driver.empty() ? "" : ", " + d.driver;
        std::printf("           %s, %.1f GiB device memory, Vulkan %s%s\n", d.type.c_str(),
                    static_cast<double>(d.memory_bytes) / (1ull << 30), d.api_version.c_str(),
                    driver.c_str());
        std::printf("           subgroups of %u%s, cooperative matrices: %s\n", d.subgroup_size,
                    d.subgroup_arithmetic ? " (arithmetic)" : "", d.cooperative_matrix ? "yes" : "no");
      }
    }
    if (!list.vulkan_note.empty()) std::printf("no Vulkan device: %s\n", list.vulkan_note.c_str());
  });
}

}  // namespace swarm::cli
