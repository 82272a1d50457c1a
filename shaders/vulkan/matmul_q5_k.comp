#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q5_K weights: as Q4_K plus a fifth bit, {fp16 d, dmin;
// scales[12]; qh[32]; qs[128]} (176 bytes); element l of chunk c takes bit 2c
// (low nibble) or 2c+1 (high nibble) of qh[l % 32].
#include "matmul_common.glsl"

float dequant(uint row, uint i) {
  const uint blk = row + (i >> 8) * 176u;
  const uint e = i & 255u, c = e >> 6, l = e & 63u;
  const uint hi = l >> 5;
  const uint sub = 2u * c + hi;
  uint sc, m;
  scale_min_k4(blk + 4u, sub, sc, m);
  const uint byte = rd8(blk + 48u + 32u * c + (l & 31u));
  const uint q = (hi != 0u ? (byte >> 4) : (byte & 15u)) + (((rd8(blk + 16u + (l & 31u)) >> sub) & 1u) << 4);
  precise float d1 = rdf16(blk) * float(sc);
  precise float m1 = rdf16(blk + 2u) * float(m);
  precise float v = d1 * float(q) - m1;
  return v;
}
#include "matmul_main.glsl"
