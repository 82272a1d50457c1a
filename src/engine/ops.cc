#include "engine/ops.h"

#include <cmath>

#include "engine/matmul.h"
#include "engine/quants.h"

namespace swarm {

void embedding_rows(const WeightMatrix& table, const int32_t* tokens, int64_t n, float* out) {
  const size_t row_bytes = row_size(table.type, table.cols);
  const uint8_t* data = static_cast<const uint8_t*>(table.data);
  for (int64_t i = 0; i < n; ++i)
    dequantize_row(table.type, data + row_bytes * tokens[i], out + i * table.cols, table.cols);
}

void rms_norm(const float* x, const float* w, int64_t n, int dim, float eps, float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * dim;
    float* yr = out + t * dim;
    // Four chains of double sums (i mod 4), then (s0 + s1) + (s2 + s3): one chain
    // of 2048 dependent adds was most of a layer's serial time in prefill.
    double s[4] = {0, 0, 0, 0};
    int i = 0;
    for (; i + 4 <= dim; i += 4)
      for (int j = 0; j < 4; ++j) s[j] += static_cast<double>(xr[i + j]) * xr[i + j];
    for (; i < dim; ++i) s[i % 4] += static_cast<double>(xr[i]) * xr[i];
    const double ss = (s[0] + s[1]) + (s[2] + s[3]);
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    for (i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

RopeTable rope_table(int64_t n, const int32_t* positions, int rope_dim,
                     const std::vector<double>& inv_freq, double position_scale) {
  RopeTable r;
  r.half = rope_dim / 2;
  r.cs.resize(static_cast<size_t>(n) * r.half);
  r.sn.resize(static_cast<size_t>(n) * r.half);
  for (int64_t t = 0; t < n; ++t) {
    const double p = positions[t] * position_scale;
    for (int i = 0; i < r.half; ++i) {
      const double theta = p * inv_freq[i];
      r.cs[t * r.half + i] = static_cast<float>(std::cos(theta));
      r.sn[t * r.half + i] = static_cast<float>(std::sin(theta));
    }
  }
  return r;
}

void rope(float* x, int64_t n, int n_heads, int head_dim, const RopeTable& table, bool neox) {
  const int half = table.half;
  for (int64_t t = 0; t < n; ++t) {
    const float* cs = table.cs.data() + t * half;
    const float* sn = table.sn.data() + t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const int a = neox ? i : 2 * i;
        const int b = neox ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void attention(const float* q, int64_t n, int start, const CpuKvStorage& cache, int layer, int n_head,
               int n_head_kv, int head_dim, float* out, ThreadPool& pool) {
  const int group = n_head / n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // One task per (token, head); each is computed the same way wherever it runs.
  pool.parallel_for_balanced(n * n_head, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    if (scores.size() < static_cast<size_t>(start + n)) scores.resize(start + n);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / n_head;
      const int h = static_cast<int>(task % n_head);
      const int kvh = h / group;
      const float* qh = q + (t * n_head + h) * head_dim;
      const int len = start + static_cast<int>(t) + 1;
      attend_head(qh, cache.k(layer, 0) + kvh * head_dim, cache.v(layer, 0) + kvh * head_dim,
                  cache.position_stride(), len, head_dim, scale, scores.data(),
                  out + (t * n_head + h) * head_dim);
    }
  });
}

}  // namespace swarm
