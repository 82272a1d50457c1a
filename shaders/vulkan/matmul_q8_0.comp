#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q8_0 weights: blocks of 32, {fp16 d; int8 qs[32]} (34 bytes).
#include "matmul_common.glsl"

float dequant(uint row, uint i) {
  const uint blk = row + (i >> 5) * 34u;
  precise float v = float(rd8s(blk + 2u + (i & 31u))) * rdf16(blk);
  return v;
}
#include "matmul_main.glsl"
