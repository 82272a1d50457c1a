#version 450
#extension GL_GOOGLE_include_directive : require
// out[t] = x[t] * (1 / sqrt(mean(x[t]^2) + eps)) * w, one workgroup per row.
// Invocation j sums x[i]^2 for i = j mod 64 in order (fma), then the fixed tree
// of reduce.glsl: the same operations whatever else is in the batch. (The CPU
// sums in double, so the two agree within float rounding, not bit for bit.)
#define WG_SIZE 64
#include "reduce.glsl"
layout(local_size_x = WG_SIZE) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) writeonly buffer Out { float o[]; };
layout(push_constant) uniform Params {
  uint n;
  uint dim;
  float eps;
} pc;

void main() {
  const uint slot = reduce_slot();
  const uint base = gl_WorkGroupID.x * pc.dim;
  precise float s = 0.0;
  for (uint i = slot; i < pc.dim; i += WG_SIZE) s = fma(x[base + i], x[base + i], s);
  s = tree_sum(s, slot, WG_SIZE);
  precise float mean = s / float(pc.dim) + pc.eps;
  const float scale = 1.0 / sqrt(mean);
  for (uint i = slot; i < pc.dim; i += WG_SIZE) {
    precise float v = x[base + i] * scale * w[i];
    o[base + i] = v;
  }
}
