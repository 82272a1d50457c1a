#include "routing/coverage_bar.h"

#include <algorithm>

namespace swarm {

std::string coverage_bar(int n_layer, const std::vector<std::pair<int, int>>& ranges, int width) {
  if (n_layer <= 0 || width <= 0) return "";
  std::vector<bool> served(static_cast<size_t>(n_layer), false);
  for (const auto& [first, last] : ranges)
    for (int l = std::max(first, 0); l < std::min(last, n_layer); ++l) served[static_cast<size_t>(l)] = true;
  const int cells = std::min(n_layer, width);
  std::string bar;
  for (int c = 0; c < cells; ++c) {
    const int from = c * n_layer / cells, to = (c + 1) * n_layer / cells;
    const int n = static_cast<int>(std::count(served.begin() + from, served.begin() + to, true));
    bar += n == to - from ? '#' : n == 0 ? '.' : '+';
  }
  return bar;
}

std::string layer_bar(int n_layer, int first, int last, int width) {
  return coverage_bar(n_layer, {{first, last}}, width);
}

}  // namespace swarm
