#include "engine/pooling.h"

#include <cmath>

namespace swarm {

std::vector<float> mean_pool_normalized(const float* rows, int64_t n, int d) {
  std::vector<double> sum(static_cast<size_t>(d), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < d; ++j) sum[j] += rows[r * d + j];
  double norm = 0;
  for (int j = 0; j < d; ++j) {
    sum[j] /= static_cast<double>(n > 0 ? n : 1);
    norm += sum[j] * sum[j];
  }
  norm = std::sqrt(norm);
  std::vector<float> out(static_cast<size_t>(d));
  for (int j = 0; j < d; ++j) out[j] = static_cast<float>(norm > 0 ? sum[j] / norm : 0.0);
  return out;
}

}  // namespace swarm
