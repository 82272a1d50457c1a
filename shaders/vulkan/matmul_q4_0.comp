#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q4_0 weights: blocks of 32, {fp16 d; qs[16]}, element j in the
// low nibble of qs[j], j + 16 in the high nibble (18 bytes).
#include "matmul_common.glsl"

float dequant(uint row, uint i) {
  const uint blk = row + (i >> 5) * 18u;
  const uint j = i & 31u;
  const uint byte = rd8(blk + 2u + (j & 15u));
  const uint q = j < 16u ? (byte & 15u) : (byte >> 4);
  precise float v = float(int(q) - 8) * rdf16(blk);
  return v;
}
#include "matmul_main.glsl"
