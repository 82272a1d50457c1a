#version 450
#extension GL_GOOGLE_include_directive : require
// out[i] = gate[i] / (1 + exp_canonical(-gate[i])) * up[i], element-wise, in the
// order of the CPU's silu_mul_canonical. out may be gate.
#include "exp.glsl"
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Gate { float g[]; };
layout(std430, binding = 1) readonly buffer Up { float u[]; };
layout(std430, binding = 2) writeonly buffer Out { float o[]; };
layout(push_constant) uniform Params { uint count; } pc;

void main() {
  const uint i = gl_GlobalInvocationID.y * (gl_NumWorkGroups.x * 64u) + gl_GlobalInvocationID.x;
  if (i >= pc.count) return;
  const float gv = g[i];
  precise float den = 1.0 + exp_canonical(-gv);
  precise float v = gv / den * u[i];
  o[i] = v;
}
