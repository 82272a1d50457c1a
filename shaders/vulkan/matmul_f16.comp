#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for F16 weights (widened to float32: exact).
#include "matmul_common.glsl"

float dequant(uint row, uint i) { return rdf16(row + 2u * i); }
#include "matmul_main.glsl"
