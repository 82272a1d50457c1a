#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q6_K weights: super-blocks of 256, {ql[128]; qh[64];
// int8 scales[16]; fp16 d} (210 bytes). Two halves of 128; in a half, quarter
// k of 32 takes its low 4 bits from ql[l + 32 (k & 1)] (low nibble for k < 2),
// its top 2 from bits 2k of qh[l], and scale sc[l / 16 + 2k]; q is biased by 32.
#define BLOCK 256
#include "matmul_common.glsl"

// Lane l takes elements e = l + 16k, k < 16: half k / 8, quarter (k / 2) % 4,
// l' = l + 16 (k % 2) within the quarter, scale group l' / 16 = k % 2.
void lane_values(uint row, uint b, uint lane, out float v[16]) {
  const uint blk = row + b * 210u;
  const float d = rdf16(blk + 208u);
  for (uint k = 0u; k < 16u; ++k) {
    const uint h = k >> 3, qq = (k >> 1) & 3u, l = lane + 16u * (k & 1u);
    const uint lo_byte = rd8(blk + 64u * h + l + 32u * (qq & 1u));
    const uint lo = qq >= 2u ? (lo_byte >> 4) : (lo_byte & 15u);
    const uint top = (rd8(blk + 128u + 32u * h + l) >> (2u * qq)) & 3u;
    const int q = int(lo | (top << 4)) - 32;
    const int sc = rd8s(blk + 192u + 8u * h + (k & 1u) + 2u * qq);
    precise float ds = d * float(sc);
    precise float y = ds * float(q);
    v[k] = y;
  }
}
#include "matmul_main.glsl"
