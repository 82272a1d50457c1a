// y[t * y_rows + row0 + r] = sum_i W[r][i] * x[t * cols + i] for the rows r of
// one part of a matrix (a matrix larger than one buffer comes in parts), each
// output by the CPU's
// canonical sequence for float weights (engine/matmul_internal.h): sixteen
// accumulators, a[i % 16] = fma(w[i], x[i], a[i % 16]) for i in order, then the
// tree of reduce.glsl. Sixteen lanes hold the sixteen accumulators of one row; a
// workgroup computes WG_SIZE / 16 rows for TILE tokens.
void main() {
  const uint slot = reduce_slot();
  const uint lane = slot & 15u;
  const uint r = gl_WorkGroupID.x * (WG_SIZE / 16u) + (slot >> 4);
  const uint t0 = gl_WorkGroupID.y * TILE;
  const uint nt = min(TILE, pc.n_tokens - t0);
  const bool live = r < pc.rows;
  precise float acc[TILE];
  for (uint t = 0u; t < TILE; ++t) acc[t] = 0.0;
  if (live) {
    const uint row = r * pc.row_bytes;
    const uint nb = (pc.cols + BLOCK - 1u) / BLOCK;
    for (uint b = 0u; b < nb; ++b) {
      float v[BLOCK / 16];
      lane_values(row, b, lane, v);
      for (uint k = 0u; k < BLOCK / 16; ++k) {
        const uint i = b * BLOCK + lane + 16u * k;  // this lane's elements, in order
        if (i < pc.cols)
          for (uint t = 0u; t < nt; ++t) acc[t] = fma(v[k], x[(t0 + t) * pc.cols + i], acc[t]);
      }
    }
  }
  for (uint t = 0u; t < nt; ++t) {
    const float s = tree_sum(acc[t], slot, 16u);
    if (live && lane == 0u) y[(t0 + t) * pc.y_rows + pc.row0 + r] = s;
  }
}
