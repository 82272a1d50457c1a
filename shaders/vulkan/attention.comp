#version 450
#extension GL_GOOGLE_include_directive : require
// Causal attention of query head h of token t = t0 + y (workgroup (h, y)) over
// the KV cache in a device buffer: token t sits at position start + t and sees
// positions [0, start + t]. Grouped-query: head h reads kv head h / (n_head / n_head_kv).
// The operations are attend_head()'s canonical ones (engine/matmul.h):
//   s_p = (tree16 of a_l, a_l = fma(q[i], k_p[i], a_l) for i = l mod 16) * scale
//   m = max s_p;  e_p = exp_canonical(s_p - m);  sum = e_0 + e_1 + ... in order
//   w_p = e_p * (1 / sum);  out[d] = fma(w_p, v_p[d], out[d]) for p in order
// so a token's result depends only on its query and the cache, never on the
// batch, or on which dispatch (t0) computed it. Scores go to `scores`
// ([y * n_head][start + n] floats: the dispatch's tokens only), e_p in place.
#define WG_SIZE 64
#include "reduce.glsl"
#include "exp.glsl"
layout(local_size_x = WG_SIZE) in;

layout(std430, binding = 0) readonly buffer Q { float q[]; };      // [n][n_head][head_dim]
layout(std430, binding = 1) readonly buffer KV { float kv[]; };    // k_offset + p * stride + kvh * head_dim + i
layout(std430, binding = 2) buffer Scores { float sc[]; };
layout(std430, binding = 3) writeonly buffer Out { float o[]; };   // as q
layout(push_constant) uniform Params {
  uint n;
  uint t0;  // this dispatch's first token: a long batch takes several, which share `scores`
  uint start;
  uint n_head;
  uint n_head_kv;
  uint head_dim;
  uint stride;    // floats from one position's K (or V) to the next's
  uint k_offset;  // floats to this layer's K of position 0, kv head 0
  uint v_offset;  // and V
  float scale;
} pc;

shared float inv_sum;

void main() {
  const uint slot = reduce_slot();
  const uint lane = slot & 15u;
  const uint group = slot >> 4;  // four groups of 16 lanes, one position each
  const uint h = gl_WorkGroupID.x;
  const uint t = pc.t0 + gl_WorkGroupID.y;
  const uint kvh = h / (pc.n_head / pc.n_head_kv);
  const uint len = pc.start + t + 1u;
  const uint qb = (t * pc.n_head + h) * pc.head_dim;
  const uint sb = (gl_WorkGroupID.y * pc.n_head + h) * (pc.start + pc.n);
  const uint kb = pc.k_offset + kvh * pc.head_dim;
  const uint vb = pc.v_offset + kvh * pc.head_dim;

  // Scores, four positions at a time (every invocation reaches every tree).
  for (uint p0 = 0u; p0 < len; p0 += 4u) {
    const uint p = p0 + group;
    precise float a = 0.0;
    if (p < len)
      for (uint i = lane; i < pc.head_dim; i += 16u) a = fma(q[qb + i], kv[kb + p * pc.stride + i], a);
    a = tree_sum(a, slot, 16u);
    precise float s = a * pc.scale;
    if (p < len && lane == 0u) sc[sb + p] = s;
  }
  memoryBarrierBuffer();
  barrier();

  float m = uintBitsToFloat(0xff800000u);
  for (uint p = slot; p < len; p += WG_SIZE) m = max(m, sc[sb + p]);
  m = tree_max(m, slot, WG_SIZE);
  for (uint p = slot; p < len; p += WG_SIZE) {
    precise float d = sc[sb + p] - m;
    sc[sb + p] = exp_canonical(d);
  }
  memoryBarrierBuffer();
  barrier();

  if (slot == 0u) {
    precise float sum = 0.0;
    for (uint p = 0u; p < len; ++p) sum = sum + sc[sb + p];
    inv_sum = 1.0 / sum;
  }
  barrier();

  const float inv = inv_sum;
  for (uint d = slot; d < pc.head_dim; d += WG_SIZE) {
    precise float acc = 0.0;
    for (uint p = 0u; p < len; ++p) {
      precise float wp = sc[sb + p] * inv;
      acc = fma(wp, kv[vb + p * pc.stride + d], acc);
    }
    o[qb + d] = acc;
  }
}
