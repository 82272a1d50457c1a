#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q8_0 weights: blocks of 32, {fp16 d; int8 qs[32]} (34 bytes).
#define BLOCK 32
#include "matmul_common.glsl"

// Lane l takes elements l and l + 16.
void lane_values(uint row, uint b, uint lane, out float v[2]) {
  const uint blk = row + b * 34u;
  const float d = rdf16(blk);
  precise float v0 = float(rd8s(blk + 2u + lane)) * d;
  precise float v1 = float(rd8s(blk + 18u + lane)) * d;
  v[0] = v0;
  v[1] = v1;
}
#include "matmul_main.glsl"
