#version 450
#extension GL_GOOGLE_include_directive : require
// Greedy sampling: out[t] = the index of the largest of row t's `cols` values,
// the first one where several are equal (as std::max_element). One workgroup per
// row; max and "first" do not depend on the order of comparisons, so the result
// is exact. NaN never wins.
#define WG_SIZE 64
#include "reduce.glsl"
layout(local_size_x = WG_SIZE) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Out { uint o[]; };
layout(push_constant) uniform Params {
  uint n;
  uint cols;
} pc;

void main() {
  const uint slot = reduce_slot();
  const uint base = gl_WorkGroupID.x * pc.cols;
  float v = uintBitsToFloat(0xff800000u);  // -inf
  uint idx = 0xffffffffu;
  for (uint i = slot; i < pc.cols; i += WG_SIZE) better(v, idx, x[base + i], i);
  tree_argmax(v, idx, slot, WG_SIZE);
  if (slot == 0u) o[gl_WorkGroupID.x] = idx == 0xffffffffu ? 0u : idx;
}
