#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q4_K weights: super-blocks of 256, {fp16 d, dmin; scales[12];
// qs[128]} (144 bytes). Chunk c of 64 elements: sub-block 2c in the low nibbles
// of qs[32c .. 32c+32), sub-block 2c+1 in the high ones. y = d*sc*q - dmin*m.
#include "matmul_common.glsl"

float dequant(uint row, uint i) {
  const uint blk = row + (i >> 8) * 144u;
  const uint e = i & 255u, c = e >> 6, l = e & 63u;
  const uint hi = l >> 5;
  uint sc, m;
  scale_min_k4(blk + 4u, 2u * c + hi, sc, m);
  const uint byte = rd8(blk + 16u + 32u * c + (l & 31u));
  const uint q = hi != 0u ? (byte >> 4) : (byte & 15u);
  precise float d1 = rdf16(blk) * float(sc);
  precise float m1 = rdf16(blk + 2u) * float(m);
  precise float v = d1 * float(q) - m1;
  return v;
}
#include "matmul_main.glsl"
