#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q5_K weights: as Q4_K plus a fifth bit, {fp16 d, dmin;
// scales[12]; qh[32]; qs[128]} (176 bytes); element l of chunk c takes bit 2c
// (low nibble) or 2c+1 (high nibble) of qh[l % 32].
#define BLOCK 256
#include "matmul_common.glsl"

// As Q4_K's lanes, with the fifth bit j of qh[l + 16 (k % 2)].
void lane_values(uint row, uint b, uint lane, out float v[16]) {
  const uint blk = row + b * 176u;
  const float d = rdf16(blk), dmin = rdf16(blk + 2u);
  const uint qh[2] = uint[2](rd8(blk + 16u + lane), rd8(blk + 32u + lane));
  for (uint j = 0u; j < 8u; ++j) {
    uint sc, m;
    scale_min_k4(blk + 4u, j, sc, m);
    precise float d1 = d * float(sc);
    precise float m1 = dmin * float(m);
    for (uint h = 0u; h < 2u; ++h) {
      const uint byte = rd8(blk + 48u + 32u * (j >> 1) + lane + 16u * h);
      const uint q = ((j & 1u) != 0u ? (byte >> 4) : (byte & 15u)) + (((qh[h] >> j) & 1u) << 4);
      precise float y = d1 * float(q) - m1;
      v[2u * j + h] = y;
    }
  }
}
#include "matmul_main.glsl"
