#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for BF16 weights (the top half of a float32: exact).
#include "matmul_common.glsl"

float dequant(uint row, uint i) { return uintBitsToFloat(rd16(row + 2u * i) << 16); }
#include "matmul_main.glsl"
