#version 450
// Rotary position embedding in place, one invocation per rotated pair, from a
// table of cos and sin worked out on the host (rope_table() in engine/ops.h:
// positions, per-dimension inverse frequencies with any llama3 or linear
// scaling, in double), so the rotation is the CPU's rope() bit for bit:
//   v[a] = x0 * cs - x1 * sn;  v[b] = x0 * sn + x1 * cs
// neox pairs (i, i + half) (qwen2), else adjacent pairs (2i, 2i + 1) (llama).
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Table { float tab[]; };  // cs [n][half], then sn [n][half]
layout(push_constant) uniform Params {
  uint n;
  uint n_heads;
  uint head_dim;
  uint half_dim;  // rope_dim / 2
  uint neox;
} pc;

void main() {
  const uint id = gl_GlobalInvocationID.y * (gl_NumWorkGroups.x * 64u) + gl_GlobalInvocationID.x;
  const uint per_token = pc.n_heads * pc.half_dim;
  if (id >= pc.n * per_token) return;
  const uint t = id / per_token;
  const uint h = (id % per_token) / pc.half_dim;
  const uint i = id % pc.half_dim;
  const uint base = (t * pc.n_heads + h) * pc.head_dim;
  const uint a = base + (pc.neox != 0u ? i : 2u * i);
  const uint b = base + (pc.neox != 0u ? i + pc.half_dim : 2u * i + 1u);
  const float cs = tab[t * pc.half_dim + i];
  const float sn = tab[(pc.n + t) * pc.half_dim + i];
  const float x0 = x[a], x1 = x[b];
  precise float p0 = x0 * cs, p1 = x1 * sn, p2 = x0 * sn, p3 = x1 * cs;
  precise float ya = p0 - p1;
  precise float yb = p2 + p3;
  x[a] = ya;
  x[b] = yb;
}
