#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for F32 weights.
#define BLOCK 16
#include "matmul_common.glsl"

void lane_values(uint row, uint b, uint lane, out float v[1]) {
  const uint i = b * 16u + lane;
  v[0] = i < pc.cols ? uintBitsToFloat(w[(row >> 2) + i]) : 0.0;
}
#include "matmul_main.glsl"
