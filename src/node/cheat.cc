#include "node/cheat.h"

#include <algorithm>
#include <cmath>

namespace swarm::node {

Status validate(const CheatOptions& o, int layers_served) {
  if (!o.mode.empty() && o.mode != "noise" && o.mode != "skip-layer" && o.mode != "replay" &&
      o.mode != "token" && o.mode != "none")
    return Status::InvalidArgument("--cheat " + o.mode + ": expected noise, skip-layer, replay, token or none");
  if (!(o.rate > 0 && o.rate <= 1))
    return Status::InvalidArgument("--cheat-rate " + std::to_string(o.rate) + " is not in (0, 1]");
  if (!(o.speed_factor >= 1 && std::isfinite(o.speed_factor)))
    return Status::InvalidArgument("--cheat-speed " + std::to_string(o.speed_factor) + " is not >= 1");
  if (o.mode == "skip-layer" && layers_served < 2)
    return Status::InvalidArgument("--cheat skip-layer needs a range of at least 2 layers");
  return Status::Ok();
}

Cheater::Cheater(CheatOptions o) : o_(std::move(o)), rng_(o_.seed) {}

bool Cheater::cheat_on_batch(bool audit_like) {
  if (!lies_about_compute() || (o_.unaudited_only && audit_like)) return false;
  return std::uniform_real_distribution<double>(0, 1)(rng_) < o_.rate;
}

void Cheater::alter(float* rows, int64_t n, int d, std::vector<float>* previous) {
  const size_t size = static_cast<size_t>(n) * d;
  if (o_.mode == "noise") {
    // About one part in ten thousand: far below what changes most sampled
    // tokens, far above the last bit an exact comparison sees.
    std::uniform_real_distribution<float> u(-1e-4f, 1e-4f);
    for (size_t i = 0; i < size; ++i) rows[i] += rows[i] * u(rng_) + u(rng_) * 1e-3f;
  } else if (o_.mode == "replay" && !previous->empty()) {
    std::vector<float> honest(rows, rows + size);
    const size_t prev_rows = previous->size() / d;
    for (int64_t r = 0; r < n; ++r) {
      const size_t from = std::min<size_t>(static_cast<size_t>(r), prev_rows - 1);
      std::copy_n(previous->data() + from * d, d, rows + r * d);
    }
    *previous = std::move(honest);
    return;
  }
  if (o_.mode == "replay") previous->assign(rows, rows + size);
}

}  // namespace swarm::node
