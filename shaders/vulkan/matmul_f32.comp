#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for F32 weights.
#include "matmul_common.glsl"

float dequant(uint row, uint i) { return uintBitsToFloat(w[(row >> 2) + i]); }
#include "matmul_main.glsl"
