#version 450
#extension GL_GOOGLE_include_directive : require
// y = W x for Q6_K weights: super-blocks of 256, {ql[128]; qh[64];
// int8 scales[16]; fp16 d} (210 bytes). Two halves of 128; in a half, quarter
// k of 32 takes its low 4 bits from ql[l + 32 (k & 1)] (low nibble for k < 2),
// its top 2 from bits 2k of qh[l], and scale sc[l / 16 + 2k]; q is biased by 32.
#include "matmul_common.glsl"

float dequant(uint row, uint i) {
  const uint blk = row + (i >> 8) * 210u;
  const uint e = i & 255u, h = e >> 7, k = (e >> 5) & 3u, l = e & 31u;
  const uint lo_byte = rd8(blk + 64u * h + l + 32u * (k & 1u));
  const uint lo = k >= 2u ? (lo_byte >> 4) : (lo_byte & 15u);
  const uint top = (rd8(blk + 128u + 32u * h + l) >> (2u * k)) & 3u;
  const int q = int(lo | (top << 4)) - 32;
  const int sc = rd8s(blk + 192u + 8u * h + (l >> 4) + 2u * k);
  precise float ds = rdf16(blk + 208u) * float(sc);
  precise float v = ds * float(q);
  return v;
}
#include "matmul_main.glsl"
