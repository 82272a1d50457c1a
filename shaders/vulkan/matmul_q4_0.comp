#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q4_0 weights: blocks of 32, {fp16 d; qs[16]}, element j in the
// low nibble of qs[j], j + 16 in the high nibble (18 bytes).
#define BLOCK 32
#include "matmul_common.glsl"

// Lane l takes elements l and l + 16: the two nibbles of qs[l].
void lane_values(uint row, uint b, uint lane, out float v[2]) {
  const uint blk = row + b * 18u;
  const float d = rdf16(blk);
  const uint byte = rd8(blk + 2u + lane);
  precise float v0 = float(int(byte & 15u) - 8) * d;
  precise float v1 = float(int(byte >> 4) - 8) * d;
  v[0] = v0;
  v[1] = v1;
}
#include "matmul_main.glsl"
