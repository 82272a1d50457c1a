#version 450
// dst = src, 16 bytes per invocation: the device's copy bandwidth, the roofline
// the matrix kernels are measured against (bench/vulkan_bench.cc).
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Src { uvec4 s[]; };
layout(std430, binding = 1) writeonly buffer Dst { uvec4 d[]; };
layout(push_constant) uniform Params { uint count; } pc;  // uvec4s

void main() {
  const uint i = gl_GlobalInvocationID.y * (gl_NumWorkGroups.x * 64u) + gl_GlobalInvocationID.x;
  if (i < pc.count) d[i] = s[i];
}
