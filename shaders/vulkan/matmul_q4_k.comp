#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q4_K weights: super-blocks of 256, {fp16 d, dmin; scales[12];
// qs[128]} (144 bytes). Chunk c of 64 elements: sub-block 2c in the low nibbles
// of qs[32c .. 32c+32), sub-block 2c+1 in the high ones. y = d*sc*q - dmin*m.
#define BLOCK 256
#include "matmul_common.glsl"

// Lane l takes elements l + 16k, k < 16: element e = l + 16k is in sub-block
// j = k / 2, at byte 32 (j / 2) + l + 16 (k % 2) of qs, high nibble for odd j.
void lane_values(uint row, uint b, uint lane, out float v[16]) {
  const uint blk = row + b * 144u;
  const float d = rdf16(blk), dmin = rdf16(blk + 2u);
  for (uint j = 0u; j < 8u; ++j) {
    uint sc, m;
    scale_min_k4(blk + 4u, j, sc, m);
    precise float d1 = d * float(sc);
    precise float m1 = dmin * float(m);
    for (uint h = 0u; h < 2u; ++h) {
      const uint byte = rd8(blk + 16u + 32u * (j >> 1) + lane + 16u * h);
      const uint q = (j & 1u) != 0u ? (byte >> 4) : (byte & 15u);
      precise float y = d1 * float(q) - m1;
      v[2u * j + h] = y;
    }
  }
}
#include "matmul_main.glsl"
