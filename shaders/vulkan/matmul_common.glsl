// What every dequantising matrix kernel (matmul_<type>.comp) shares: buffers,
// parameters and byte readers. The includer defines BLOCK (elements per block,
// a multiple of 16) before including this file, then
//   void lane_values(uint row, uint b, uint lane, out float v[BLOCK / 16])
// giving v[k] = element b * BLOCK + lane + 16 k of the row starting at byte
// `row` (0 past the row's end), and includes matmul_main.glsl. One call per
// block lets a lane decode a block's scales once for all its elements.
//
// Weights are read as 32-bit words and bytes picked out of them, so blocks of any
// size and alignment (Q4_0's 18 bytes) need no 8- or 16-bit storage feature.
// Dequantization spells out the same operations, in the same order, as
// dequantize_row() (engine/quants.cc); `precise` keeps a compiler from fusing a
// multiply and a subtract that the CPU rounds separately.
#define WG_SIZE 64
#include "reduce.glsl"

layout(local_size_x = WG_SIZE) in;
// Tokens per workgroup: weights are dequantised once and used for this many rows
// of x. Only speed depends on it; each output's operations do not.
layout(constant_id = 0) const uint TILE = 8;

layout(std430, binding = 0) readonly buffer Weights { uint w[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Params {
  uint rows;       // output features in this part of the matrix
  uint cols;       // input features
  uint n_tokens;
  uint row_bytes;  // bytes per weight row: row_size(type, cols)
  uint row0;       // this part's first row: where its outputs go in a y row
  uint y_rows;     // floats per y row: the whole matrix's rows
} pc;

uint rd8(uint off) { return (w[off >> 2] >> ((off & 3u) << 3)) & 0xFFu; }
int rd8s(uint off) { return int(rd8(off) << 24) >> 24; }
uint rd16(uint off) { return (w[off >> 2] >> ((off & 2u) << 3)) & 0xFFFFu; }  // off even
// fp16 to float32 by bits, exact for every input: unpackHalf2x16 may flush
// subnormal halves to zero, and small K-quant scales are subnormal.
float half_bits_to_float(uint h) {
  const uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1Fu) return uintBitsToFloat(sign | 0x7F800000u | (m << 13));  // inf, NaN
  if (e != 0u) return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
  const float v = float(m) * uintBitsToFloat(0x33800000u);  // m * 2^-24: exact, and normal
  return sign != 0u ? -v : v;
}
float rdf16(uint off) { return half_bits_to_float(rd16(off)); }

// Q4_K and Q5_K: sub-block j's 6-bit scale and min (get_scale_min_k4 in quants.cc).
void scale_min_k4(uint scales, uint j, out uint sc, out uint m) {
  if (j < 4u) {
    sc = rd8(scales + j) & 63u;
    m = rd8(scales + j + 4u) & 63u;
  } else {
    sc = (rd8(scales + j + 4u) & 0xFu) | ((rd8(scales + j - 4u) >> 6) << 4);
    m = (rd8(scales + j + 4u) >> 4) | ((rd8(scales + j) >> 6) << 4);
  }
}
