#version 450
// x[i] = x[i] + y[i % period], element-wise: the residual connection (period =
// count) and a bias added to every row (period = the row's length, qwen2's
// q, k and v projections).
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(push_constant) uniform Params {
  uint count;
  uint period;
} pc;

void main() {
  const uint i = gl_GlobalInvocationID.y * (gl_NumWorkGroups.x * 64u) + gl_GlobalInvocationID.x;
  if (i >= pc.count) return;
  precise float v = x[i] + y[i % pc.period];
  x[i] = v;
}
