// The Vulkan compute shaders (shaders/vulkan/*.comp) as SPIR-V words, compiled by
// glslc at build time and embedded in the binary (cmake/vulkan_shaders.cmake), so
// a node needs no shader files beside it.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <cstdint>
#include <span>
#include <string_view>

namespace swarm::vk {

// The words of shader `name` ("matmul_q4_k"): its subgroup variant (reductions
// by subgroup shuffles; only for devices that have them) or its plain one
// (shared memory only). Empty if there is no such shader.
std::span<const uint32_t> find_spirv(std::string_view name, bool subgroup);

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
